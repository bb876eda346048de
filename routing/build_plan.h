/*
 * The build plan's arithmetic: what a full index build will cost, told
 * from timed trial builds on samples of the table.  Pure functions over
 * numbers the control plane measured (proxy/control/plan.c runs the
 * trials), so the model, its fit and the verdicts are unit-tested.
 *
 * The model.  Each trial copies n rows into a scratch table and builds the
 * new definition there with maintenance_work_mem scaled by n / N, so that
 * the same share of the graph fits in memory as in the full build (the
 * same "regime": all in memory, or in memory up to the same fraction and
 * on disk after it).  Within one regime an HNSW build grows as a power
 * law, t = a * n^b (each insert searches a graph that grows with n), fit
 * by least squares in log space; an IVFFlat build is k-means on a bounded
 * sample plus a linear assignment pass, t = c0 + c1 * n.  pgvector's
 * NOTICE "hnsw graph no longer fits into maintenance_work_mem after N
 * tuples" in a trial gives the graph's bytes per tuple, hence the peak
 * memory of the full build and the maintenance_work_mem that would fit it.
 */
#ifndef VG_ROUTING_BUILD_PLAN_H
#define VG_ROUTING_BUILD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#define BP_MAX_TRIALS 6

enum bp_method { BP_HNSW, BP_IVFFLAT, BP_OTHER };

enum bp_model { BP_POWER, BP_LINEAR };

struct bp_fit {
	enum bp_model model;
	int k;            /* points fit */
	double a, b;      /* power: t = a n^b; linear: t = a + b n */
	double r2;        /* coefficient of determination (in log space for the power law) */
	double sigma;     /* residual standard deviation (log space for power, seconds for linear) */
	double xbar, sxx; /* for the prediction's standard error */
};

/* Fit t(n) to k >= 2 points; -1 when the points cannot be fit (k < 2,
 * non-positive values for a power law, all n equal). */
int bp_fit(enum bp_model model, const double *n, const double *t, int k, struct bp_fit *out);
/* The fit's value at n, and a one-sigma band [lo, hi] around it (for k = 2
 * the band is the spread the fit cannot see: +-25% by convention). */
double bp_predict(const struct bp_fit *f, double n, double *lo, double *hi);

/* Sample sizes for `count` trials growing by 2x up to fraction * total,
 * each at least min_rows (and at most total); returns how many. */
int bp_sample_sizes(double total, double fraction, double min_rows, int count, double *out);
/* A trial's maintenance_work_mem (kB): the full build's, scaled by
 * n / total, never under floor_kb (PostgreSQL's minimum is 1024). */
long bp_trial_mwm_kb(long mwm_kb, double n, double total, long floor_kb);

/* "hnsw graph no longer fits into maintenance_work_mem after N tuples":
 * true with *tuples set when msg is that NOTICE. */
bool bp_parse_cliff_notice(const char *msg, long long *tuples);
/* What an operator should do about a NOTICE/WARNING of a build, or NULL. */
const char *bp_notice_advice(const char *msg);

/* IVFFlat's k-means working set (pgvector ivfkmeans.c): the build fails
 * with "memory required is ..." when maintenance_work_mem is smaller. */
double bp_ivfflat_kmeans_bytes(int lists, int dims, double rows);

/* How many parallel workers PostgreSQL plans for CREATE INDEX on a heap
 * of heap_pages (plan_create_index_workers): by size from
 * min_parallel_table_scan_size (pages), capped by
 * max_parallel_maintenance_workers, then cut until every participant
 * has 32 MB of maintenance_work_mem.  reloption < 0 when not set. */
int bp_parallel_workers(double heap_pages, int max_workers, long mwm_kb, double min_scan_pages, int reloption);

/* A build in flight: its remaining seconds from the plan's prediction and
 * the live progress (tuples done of total), following the fitted curve:
 * under t ~ n^b, the first share p of the inserts takes p^b of the time.
 * After the memory cliff (cliff_tuples > 0, done past it) the rate
 * measured since the cliff carries the rest.  NAN when nothing is known. */
struct bp_eta_in {
	double predicted_s;    /* the plan's full build, or NAN */
	double exponent;       /* the fit's b (1 for linear / unknown) */
	double elapsed_s;      /* since the build started */
	double done, total;    /* tuples (or blocks) done of total */
	double cliff_tuples;   /* where the graph stopped fitting, 0 = not (yet) */
	double cliff_elapsed_s; /* elapsed when it did */
};
double bp_eta(const struct bp_eta_in *in);

/* The plan's verdict against the limits an operator set: refused (true)
 * with the reason naming the setting that fixes it. */
struct bp_limits {
	double mwm_bytes, peak_bytes;       /* peak NAN: not measured */
	bool cliff;                         /* the graph would not fit maintenance_work_mem */
	double free_bytes, need_bytes;      /* free NAN: not known */
	double max_build_s, predicted_s;    /* max 0: no window */
};
bool bp_refuse(const struct bp_limits *l, char *why, size_t len);

/* n bytes as "12.3 MB" / "1.20 GB" (kB for small). */
void bp_bytes_str(double bytes, char *out, size_t len);

#endif
