/*
 * The build plan's model (build_plan.h): curve fits over trial builds, the
 * ETA of a build in flight, and the verdict against the operator's limits.
 * No I/O: proxy/control/plan.c measures, this decides.
 */
#include "routing/build_plan.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bp_fit(enum bp_model model, const double *n, const double *t, int k, struct bp_fit *out)
{
	memset(out, 0, sizeof(*out));
	out->model = model;
	if (k < 2 || k > BP_MAX_TRIALS)
		return -1;
	double x[BP_MAX_TRIALS], y[BP_MAX_TRIALS], sx = 0, sy = 0;
	for (int i = 0; i < k; i++) {
		if (model == BP_POWER && (n[i] <= 0 || t[i] <= 0))
			return -1;
		x[i] = model == BP_POWER ? log(n[i]) : n[i];
		y[i] = model == BP_POWER ? log(t[i]) : t[i];
		sx += x[i];
		sy += y[i];
	}
	double xbar = sx / k, ybar = sy / k, sxx = 0, sxy = 0, syy = 0;
	for (int i = 0; i < k; i++) {
		sxx += (x[i] - xbar) * (x[i] - xbar);
		sxy += (x[i] - xbar) * (y[i] - ybar);
		syy += (y[i] - ybar) * (y[i] - ybar);
	}
	if (sxx <= 0)
		return -1;
	double slope = sxy / sxx, icept = ybar - slope * xbar, sse = 0;
	for (int i = 0; i < k; i++) {
		double r = y[i] - (icept + slope * x[i]);
		sse += r * r;
	}
	out->k = k;
	out->a = model == BP_POWER ? exp(icept) : icept;
	out->b = slope;
	out->r2 = syy > 0 ? 1 - sse / syy : 1;
	out->sigma = k > 2 ? sqrt(sse / (k - 2)) : 0;
	out->xbar = xbar;
	out->sxx = sxx;
	return 0;
}

double bp_predict(const struct bp_fit *f, double n, double *lo, double *hi)
{
	assert(f->k >= 2);
	double x = f->model == BP_POWER ? log(n) : n;
	double y = f->model == BP_POWER ? log(f->a) + f->b * x : f->a + f->b * x;
	/* the standard error of one new observation at x: far outside the
	 * sampled sizes the slope's doubt dominates */
	double se = f->sigma * sqrt(1 + 1.0 / f->k + (x - f->xbar) * (x - f->xbar) / f->sxx);
	double v = f->model == BP_POWER ? exp(y) : y;
	if (f->k == 2 || se <= 0) {
		/* two points fit any curve exactly: the spread is not measured */
		if (lo)
			*lo = v * 0.75;
		if (hi)
			*hi = v * 1.25;
		return v;
	}
	if (lo)
		*lo = f->model == BP_POWER ? exp(y - se) : y - se;
	if (hi)
		*hi = f->model == BP_POWER ? exp(y + se) : y + se;
	return v;
}

int bp_sample_sizes(double total, double fraction, double min_rows, int count, double *out)
{
	assert(count > 0 && count <= BP_MAX_TRIALS);
	double top = floor(total * fraction);
	if (top < min_rows)
		top = min_rows;
	if (top > total)
		top = total;
	int k = 0;
	for (int i = count - 1; i >= 0; i--) {
		double n = floor(top / pow(2, i));
		if (n < min_rows)
			n = fmin(min_rows, total);
		if (k && n <= out[k - 1])
			continue; /* a small table: fewer, distinct sizes */
		out[k++] = n;
	}
	return k;
}

int bp_graph_memory(const double *kb, const double *tuples, int k, double *per_tuple, double *fixed)
{
	int best = -1, m = 0;
	double n[BP_MAX_TRIALS], bytes[BP_MAX_TRIALS];
	for (int i = 0; i < k; i++) {
		if (!(tuples[i] > 0 && kb[i] > 0))
			continue;
		if (best < 0 || kb[i] > kb[best])
			best = i;
		if (m < BP_MAX_TRIALS) {
			n[m] = tuples[i];
			bytes[m++] = kb[i] * 1024;
		}
	}
	if (best < 0)
		return -1;
	*per_tuple = kb[best] * 1024 / tuples[best];
	*fixed = 0;
	struct bp_fit line;
	if (m >= 2 && bp_fit(BP_LINEAR, n, bytes, m, &line) == 0 && line.b > 0 && line.a >= 0) {
		*per_tuple = line.b;
		*fixed = line.a;
	}
	return 0;
}

long bp_trial_mwm_kb(long mwm_kb, double n, double total, long floor_kb)
{
	double kb = total > 0 ? (double)mwm_kb * n / total : (double)mwm_kb;
	return kb < floor_kb ? floor_kb : (long)ceil(kb);
}

bool bp_parse_cliff_notice(const char *msg, long long *tuples)
{
	static const char key[] = "no longer fits into maintenance_work_mem after ";
	const char *p = msg ? strstr(msg, key) : NULL;
	if (!p || !strstr(msg, "graph"))
		return false;
	char *end;
	long long v = strtoll(p + sizeof(key) - 1, &end, 10);
	if (end == p + sizeof(key) - 1 || v < 0)
		return false;
	*tuples = v;
	return true;
}

const char *bp_notice_advice(const char *msg)
{
	if (!msg)
		return NULL;
	if (strstr(msg, "no longer fits into maintenance_work_mem"))
		return "the rest of the graph is built on disk, several times slower per tuple: cancel and raise "
		       "maintenance_work_mem in the index's maintenance settings (vecgatectl rebuild plan NAME says what "
		       "would fit), or let it run; the ETA follows the slower rate";
	if (strstr(msg, "memory required is"))
		return "raise maintenance_work_mem in the index's maintenance settings to the figure given";
	if (strstr(msg, "little data") || strstr(msg, "low recall"))
		return "the index was built with too few rows for its lists: build it after loading the data, or use fewer "
		       "lists";
	return NULL;
}

double bp_ivfflat_sort_bytes(int dims, double rows)
{
	return rows * (8 + 4.0 * dims + 32);
}

double bp_ivfflat_kmeans_bytes(int lists, int dims, double rows)
{
	/* the sample array is sized for max(50 x lists, 10000) vectors whatever
	 * the rows; the bounds are per sampled row, the distances per pair of
	 * centers (ElkanKmeans' own total, which it checks) */
	double cap = fmax((double)lists * 50, 10000), samples = fmin(cap, rows);
	double item = 8 + 4.0 * dims; /* a vector's varlena header and floats */
	return cap * item + 2 * (double)lists * item + 4.0 * lists + 4 * samples + 4 * samples * lists + 4 * samples +
	       4.0 * lists + 4.0 * lists * lists + 4.0 * lists;
}

int bp_parallel_workers(double heap_pages, int max_workers, long mwm_kb, double min_scan_pages, int reloption)
{
	int w;
	if (reloption >= 0) {
		w = reloption;
	} else {
		double threshold = fmax(min_scan_pages, 1);
		if (heap_pages < min_scan_pages)
			return 0;
		w = 1;
		while (heap_pages >= threshold * 3) {
			w++;
			threshold *= 3;
		}
	}
	if (w > max_workers)
		w = max_workers;
	while (w > 0 && mwm_kb / (w + 1) < 32768)
		w--;
	return w;
}

double bp_eta(const struct bp_eta_in *in)
{
	double p = in->total > 0 ? in->done / in->total : 0;
	if (p > 1)
		p = 1;
	double b = in->exponent > 0 && isfinite(in->exponent) ? in->exponent : 1;
	bool have_pred = isfinite(in->predicted_s) && in->predicted_s > 0;
	if (in->cliff_tuples > 0 && in->done > in->cliff_tuples && in->elapsed_s > in->cliff_elapsed_s + 1) {
		/* past the cliff: the disk rate, measured since, carries the rest */
		double rate = (in->done - in->cliff_tuples) / (in->elapsed_s - in->cliff_elapsed_s);
		return rate > 0 ? (in->total - in->done) / rate : NAN;
	}
	if (p <= 0)
		return have_pred ? fmax(0, in->predicted_s - in->elapsed_s) : NAN;
	/* the whole build as the progress so far says, on the fitted curve */
	double from_progress = in->elapsed_s / pow(p, b);
	if (p < 0.01 && !have_pred)
		return NAN; /* too early to tell */
	/* early on the plan knows better, later the progress does */
	double whole = have_pred ? (1 - p) * in->predicted_s + p * from_progress : from_progress;
	return fmax(0, whole - in->elapsed_s);
}

void bp_bytes_str(double bytes, char *out, size_t len)
{
	if (!isfinite(bytes))
		snprintf(out, len, "?");
	else if (bytes >= 1024.0 * 1024 * 1024)
		snprintf(out, len, "%.2f GB", bytes / (1024.0 * 1024 * 1024));
	else if (bytes >= 1024.0 * 1024)
		snprintf(out, len, "%.1f MB", bytes / (1024.0 * 1024));
	else
		snprintf(out, len, "%.0f kB", bytes / 1024.0);
}

bool bp_refuse(const struct bp_limits *l, char *why, size_t len)
{
	return bp_check(l, why, len) != BP_OVER_NONE;
}

const char *bp_over_setting(enum bp_over o)
{
	switch (o) {
	case BP_OVER_MEMORY:
		return "maintenance_work_mem";
	case BP_OVER_DISK:
		return "free_space_bytes";
	case BP_OVER_WINDOW:
		return "max_build_seconds";
	case BP_OVER_NONE:
		break;
	}
	return NULL;
}

enum bp_over bp_check(const struct bp_limits *l, char *why, size_t len)
{
	char a[32], b[32];
	if (l->cliff && isfinite(l->peak_bytes)) {
		bp_bytes_str(l->peak_bytes, a, sizeof(a));
		bp_bytes_str(l->mwm_bytes, b, sizeof(b));
		snprintf(why, len, "the build needs about %s in memory (the HNSW graph, or IVFFlat's k-means), "
		         "maintenance_work_mem is %s: it would go on disk (HNSW, several times slower) or fail (IVFFlat); "
		         "raise maintenance_work_mem in the index's maintenance_settings to at least %s (or set plan: off to "
		         "build anyway)", a, b, a);
		return BP_OVER_MEMORY;
	}
	if (isfinite(l->free_bytes) && isfinite(l->need_bytes) && l->need_bytes > l->free_bytes) {
		bp_bytes_str(l->need_bytes, a, sizeof(a));
		bp_bytes_str(l->free_bytes, b, sizeof(b));
		snprintf(why, len, "the build needs about %s of disk, %s is free: free space (or correct free_space_bytes / "
		         "free_space_query if the figure is wrong)", a, b);
		return BP_OVER_DISK;
	}
	if (l->max_build_s > 0 && isfinite(l->predicted_s) && l->predicted_s > l->max_build_s) {
		snprintf(why, len, "the build is predicted to take %.0f s, over max_build_seconds (%.0f s): raise "
		         "max_build_seconds, or give the build more maintenance_work_mem / parallel workers", l->predicted_s,
		         l->max_build_s);
		return BP_OVER_WINDOW;
	}
	if (why && len)
		why[0] = 0;
	return BP_OVER_NONE;
}

/* ---- the phase model ---- */

#define BP_MAX_WINDOWS 48

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int bp_fit_rate(const struct bp_sample *s, int k, double lo, double hi, struct bp_rate *out)
{
	memset(out, 0, sizeof(*out));
	/* the samples in range, in order */
	int first = -1, last = -1;
	for (int i = 0; i < k; i++)
		if (s[i].n >= lo && s[i].n <= hi) {
			if (first < 0)
				first = i;
			last = i;
		}
	if (first < 0 || last <= first || s[last].n <= s[first].n || s[last].t <= s[first].t)
		return -1;
	/* windows of at least 1/40 of the range: a poll that saw few new
	 * tuples says more about the timer than the build */
	double minw = (s[last].n - s[first].n) / 40.0;
	/* at most 40 windows of 1/40 each (and one short last one) */
	double x[BP_MAX_WINDOWS], y[BP_MAX_WINDOWS];
	int m = 0;
	for (int i = first, j; i < last && m < BP_MAX_WINDOWS; i = j) {
		for (j = i + 1; j < last && s[j].n - s[i].n < minw; j++)
			;
		double dn = s[j].n - s[i].n, dt = s[j].t - s[i].t;
		if (dn <= 0 || dt <= 0)
			continue;
		x[m] = log(fmax((s[i].n + s[j].n) / 2, 1));
		y[m] = log(dt / dn);
		m++;
	}
	double mean_c = (s[last].t - s[first].t) / (s[last].n - s[first].n);
	double mid = fmax((s[first].n + s[last].n) / 2, 1);
	out->k = m;
	out->ok = true;
	if (m < 3) {
		/* too few points for a slope: the mean rate, flat */
		out->a = mean_c;
		out->d = 0;
		return 0;
	}
	double sx = 0, sy = 0;
	for (int i = 0; i < m; i++) {
		sx += x[i];
		sy += y[i];
	}
	double xbar = sx / m, ybar = sy / m, sxx = 0, sxy = 0;
	for (int i = 0; i < m; i++) {
		sxx += (x[i] - xbar) * (x[i] - xbar);
		sxy += (x[i] - xbar) * (y[i] - ybar);
	}
	/* d: the median of the slopes between every two windows (Theil-Sen):
	 * a burst of load on a shared server slows a few windows, which pulls
	 * a least-squares slope anywhere but moves the median little */
	double slopes[BP_MAX_WINDOWS * (BP_MAX_WINDOWS - 1) / 2];
	int ns = 0;
	for (int i = 0; i < m; i++)
		for (int j = i + 1; j < m; j++)
			if (fabs(x[j] - x[i]) > 0.05)
				slopes[ns++] = (y[j] - y[i]) / (x[j] - x[i]);
	double d = sxx > 0 ? sxy / sxx : 0, sse = 0;
	if (ns > 0) {
		qsort(slopes, (size_t)ns, sizeof(double), cmp_double);
		d = ns % 2 ? slopes[ns / 2] : (slopes[ns / 2 - 1] + slopes[ns / 2]) / 2;
	}
	if (d < 0)
		d = 0;
	if (d > 1)
		d = 1;
	for (int i = 0; i < m; i++) {
		double r = y[i] - (ybar + d * (x[i] - xbar));
		sse += r * r;
	}
	out->d = d;
	out->se_d = sxx > 0 ? sqrt(sse / (m - 2) / sxx) : 0;
	/* anchor the level on the time the range really took, not on the mean
	 * of log rates (which the noisy windows pull down): the integral over
	 * the range equals the measured seconds */
	out->a = 1;
	double unit = bp_rate_seconds(out, s[first].n, s[last].n);
	out->a = unit > 0 ? (s[last].t - s[first].t) / unit : mean_c / pow(mid, d);
	return 0;
}

void bp_rate_shrink(struct bp_rate *r, double d0, double spread, double from, double to)
{
	if (!r->ok)
		return;
	double spent = bp_rate_seconds(r, from, to);
	double vm = r->se_d * r->se_d + spread * spread, vp = BP_D_PRIOR_SD * BP_D_PRIOR_SD;
	double d = (r->d / vm + d0 / vp) / (1 / vm + 1 / vp);
	r->d = fmin(1, fmax(0, d));
	r->se_d = sqrt(1 / (1 / vm + 1 / vp));
	r->a = 1;
	double unit = bp_rate_seconds(r, from, to);
	r->a = unit > 0 ? spent / unit : 0;
}

double bp_rate_seconds(const struct bp_rate *r, double from, double to)
{
	if (!r->ok || to <= from)
		return 0;
	double e = 1 + r->d;
	return r->a / e * (pow(fmax(to, 0), e) - pow(fmax(from, 0), e));
}

double bp_rate_seconds_shifted(const struct bp_rate *r, double from, double to, double d_shift, double pivot)
{
	struct bp_rate q = *r;
	q.d = fmax(0, r->d + d_shift);
	/* the same per-insert cost at the pivot, a steeper or flatter slope */
	q.a = r->a * pow(fmax(pivot, 1), r->d - q.d);
	return bp_rate_seconds(&q, from, to);
}

static double hnsw_seconds(const struct bp_hnsw_model *m, double shift)
{
	double n = m->rows, c = m->cliff > 0 && m->cliff < n ? m->cliff : n;
	double t = bp_rate_seconds_shifted(&m->mem, 0, c, shift * m->mem.se_d, m->mem_pivot);
	t += m->flush_per_tuple * n;
	if (c >= n)
		return t;
	t += m->cliff_flush_per_tuple * c;
	if (m->disk.ok)
		return t + bp_rate_seconds_shifted(&m->disk, c, n, shift * m->disk.se_d, m->disk_pivot);
	/* no trial went on disk: the in-memory cost, times what on-disk
	 * inserts cost relative to it */
	return t + m->disk_factor * bp_rate_seconds_shifted(&m->mem, c, n, shift * m->mem.se_d, m->mem_pivot);
}

double bp_hnsw_predict(const struct bp_hnsw_model *m, double *lo, double *hi)
{
	double v = hnsw_seconds(m, 0);
	/* one standard error of each slope, carried from what the fits saw
	 * to the full table; never narrower than +-10% (the server's load
	 * moves every figure by that much between plan and build) */
	if (lo)
		*lo = fmin(hnsw_seconds(m, -1), v * 0.9);
	if (hi)
		*hi = fmax(hnsw_seconds(m, 1), v * 1.1);
	return v;
}

double bp_ivfflat_samples(int lists, double rows)
{
	double want = fmax((double)lists * 50, 10000);
	return fmin(want, rows);
}

enum bp_phase bp_phase_of(const char *name)
{
	if (!name)
		return BP_PH_OTHER;
	/* CONCURRENTLY's waits first: "waiting for writers before build" */
	if (strstr(name, "waiting"))
		return BP_PH_WAIT;
	if (strstr(name, "k-means"))
		return BP_PH_KMEANS;
	if (strstr(name, "assigning"))
		return BP_PH_ASSIGN;
	if (strstr(name, "loading"))
		return BP_PH_LOAD;
	if (strstr(name, "validation"))
		return BP_PH_VALIDATE;
	return BP_PH_OTHER;
}

/* the phase sample i is in, loading done counting as what follows it */
static int phase_at(const struct bp_sample *s, const unsigned char *phase, int i, double tuples)
{
	int a = phase[i] < BP_PH_N ? phase[i] : BP_PH_OTHER;
	if (a == BP_PH_LOAD && tuples > 0 && s[i].n >= tuples)
		return BP_PH_OTHER;
	return a;
}

void bp_phase_seconds(const struct bp_sample *s, const unsigned char *phase, int k, double end, double tuples,
                      double out[BP_PH_N])
{
	for (int i = 0; i < BP_PH_N; i++)
		out[i] = 0;
	if (k <= 0) {
		out[BP_PH_OTHER] = fmax(0, end);
		return;
	}
	out[phase_at(s, phase, 0, tuples)] += fmax(0, s[0].t);
	for (int i = 0; i < k; i++) {
		int a = phase_at(s, phase, i, tuples);
		if (i + 1 == k) {
			double dt = fmax(0, end - s[i].t);
			if (a == BP_PH_LOAD && tuples > 0 && s[i].n > 0 && out[BP_PH_LOAD] > 0) {
				/* the last poll saw loading under way: the rest of it at the
				 * rate so far, then the statement's end */
				double left = fmin(dt, (tuples - s[i].n) * out[BP_PH_LOAD] / s[i].n);
				out[BP_PH_LOAD] += left;
				out[BP_PH_OTHER] += dt - left;
			} else {
				out[a] += dt;
			}
			continue;
		}
		double dt = fmax(0, s[i + 1].t - s[i].t);
		int b = phase_at(s, phase, i + 1, tuples);
		if (b != a) {
			/* the change came somewhere between the two polls */
			out[a] += dt / 2;
			out[b] += dt / 2;
		} else {
			out[a] += dt;
		}
	}
}

void bp_ivfflat_trials(int lists, double rows, double max_rows, struct bp_ivf_sizes *out)
{
	double nk = bp_ivfflat_samples(lists, rows), rho = nk / fmax(lists, 1), pairs = nk * lists;
	double cap = fmin(floor(max_rows), rows);
	double r = fmax(floor(nk / BP_IVF_SCALE), BP_IVF_MIN_ROWS);
	r = fmin(fmax(fmin(r, cap), 2.0 * lists), rows);
	out->main_rows = r;
	if (r >= nk) {
		/* the main trial samples what the build does: its k-means is the build's */
		out->kmeans_rows = 0;
		out->kmeans_lists = 0;
		return;
	}
	double want = fmin(fmax(pairs / (BP_IVF_SCALE * BP_IVF_SCALE), BP_IVF_MIN_PAIRS), pairs);
	/* pairs = n x lists with n = rho x lists */
	long lk = lround(sqrt(want / rho));
	if (lk < 1)
		lk = 1;
	double n = fmin(round(rho * (double)lk), cap);
	if (n < rho * (double)lk) {
		lk = lround(n / rho);
		if (lk < 1)
			lk = 1;
	}
	out->kmeans_rows = n;
	out->kmeans_lists = (int)lk;
	/* close enough: both trials on the same rows, one copy fewer */
	if (fabs(n - r) <= 0.25 * r)
		out->main_rows = n;
}

double bp_ivfflat_predict(const struct bp_ivf_model *m, struct bp_ivf_parts *parts, double *lo, double *hi)
{
	struct bp_ivf_parts q;
	memset(&q, 0, sizeof(q));
	const struct bp_ivf_trial *k = m->kmeans.rows > 0 ? &m->kmeans : &m->main, *t = &m->main;
	/* the k-means trial's phase: its sample read block by block, then its
	 * k-means; one pair's cost from both */
	double nk_trial = bp_ivfflat_samples(k->lists, k->rows);
	double units = nk_trial * k->lists + BP_IVF_BLOCK_PAIRS * fmin(k->pages, nk_trial);
	q.pair_s = units > 0 ? k->phase_s[BP_PH_KMEANS] / units : 0;
	double nk = bp_ivfflat_samples(m->lists, m->rows);
	q.kmeans_s = q.pair_s * nk * m->lists;
	q.sample_s = q.pair_s * BP_IVF_BLOCK_PAIRS * fmin(m->pages, nk);
	/* the rest per row, at the build's own lists */
	double per = t->rows > 0 ? m->rows / t->rows : 0;
	q.assign_s = t->phase_s[BP_PH_ASSIGN] * per;
	q.load_s = t->phase_s[BP_PH_LOAD] * per;
	/* initializing, and what the polls could not name: as is (the trials
	 * run without CONCURRENTLY: no waits, no validation) */
	q.fixed_s = t->phase_s[BP_PH_OTHER];
	double km = q.kmeans_s + q.sample_s, rest = q.assign_s + q.load_s + q.fixed_s;
	if (parts)
		*parts = q;
	if (lo)
		*lo = 0.7 * km + 0.85 * rest;
	if (hi)
		*hi = 1.5 * km + 1.15 * rest;
	return km + rest;
}

int bp_hnsw_workers(double heap_pages, int max_workers, long mwm_kb, double min_scan_pages, int reloption)
{
	if (bp_parallel_workers(heap_pages, max_workers, mwm_kb, min_scan_pages, reloption) == 0)
		return 0;
	return reloption >= 0 && reloption < max_workers ? reloption : max_workers;
}
