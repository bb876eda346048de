/*
 * Measure an index the way the gate needs it: exact ground truth (unless
 * the eval file gives it) and the timed k-NN queries share one REPEATABLE
 * READ snapshot on the owner's session, one statement in flight at a time so
 * that hours of other maintenance work on the loop are never blocked.
 *
 * Ground truth costs the most.  Run as Q exact queries it is Q sequential
 * scans of the table; so when the eval query is a plain k-NN query the
 * table is read once instead (a binary COPY in the same snapshot) and every
 * query's exact top-k is computed here as the rows stream by: the loop
 * decodes rows into one block while a background thread compares the other
 * with every query, so client traffic on the loop never waits behind it.
 *
 * On a partitioned table the run also splits its recall by partition: one
 * lookup of the true neighbours' tableoid in the same snapshot, no eval
 * query run again (routing/partitions.h, part_recall_add).
 */
#include "proxy/control/eval.h"
#include "protocol/copybin.h"
#include "protocol/pgproto.h"
#include "protocol/topk.h"
#include "protocol/vecfmt.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/runtime.h"
#include "proxy/runtime/worker.h"
#include "routing/gate.h"
#include "routing/knn_filter.h"
#include "routing/knn_query.h"
#include "routing/partitions.h"
#include "routing/rebuild_sql.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eval_set_load(struct eval_set *set, const char *path, char *err, size_t errlen)
{
	memset(set, 0, sizeof(*set));
	FILE *fp = fopen(path, "r");
	if (!fp) {
		snprintf(err, errlen, "cannot open eval_file %s", path);
		return -1;
	}
	char line[65536];
	size_t cap = 0;
	unsigned lineno = 0;
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		if (set->n == cap) {
			cap = cap ? cap * 2 : 64;
			struct eval_query *n = realloc(set->queries, cap * sizeof(*n));
			if (!n)
				break;
			set->queries = n;
		}
		struct eval_query *q = &set->queries[set->n++];
		memset(q, 0, sizeof(*q));
		char *bar = strchr(line, '|');
		if (bar) {
			*bar = 0;
			for (char *tok = strtok(bar + 1, ", "); tok; tok = strtok(NULL, ", ")) {
				int64_t *t = realloc(q->truth, (q->n_truth + 1) * sizeof(*t));
				if (!t)
					break;
				q->truth = t;
				q->truth[q->n_truth++] = strtoll(tok, NULL, 10);
			}
			q->truth_from_file = q->n_truth > 0;
		}
		q->line = lineno;
		/* "; value" fields: the further parameters */
		for (char *semi = strchr(line, ';'); semi && q->n_params < EVAL_MAX_PARAMS; semi = strchr(semi + 1, ';')) {
			*semi = 0;
			char *v = semi + 1, *end = v + strcspn(v, ";");
			while (*v == ' ' || *v == '\t')
				v++;
			while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
				end--;
			char **np = realloc(q->params, (q->n_params + 1) * sizeof(*np));
			if (!np)
				break;
			q->params = np;
			q->params[q->n_params++] = strndup(v, (size_t)(end - v));
		}
		size_t n = strlen(line);
		while (n && line[n - 1] == ' ')
			line[--n] = 0;
		q->vector = strdup(line);
	}
	fclose(fp);
	if (!set->n) {
		snprintf(err, errlen, "eval_file %s holds no queries", path);
		eval_set_free(set);
		return -1;
	}
	return 0;
}

static void query_free(struct eval_query *q)
{
	free(q->vector);
	free(q->truth);
	free(q->ties);
	for (size_t j = 0; j < q->n_params; j++)
		free(q->params[j]);
	free(q->params);
}

int eval_set_check_params(const struct eval_set *set, const struct vg_managed_index *mi, char *err, size_t errlen)
{
	int max = sql_max_param(mi->eval_query, strlen(mi->eval_query));
	size_t want = max > 2 ? (size_t)max - 2 : 0;
	if (max > EVAL_MAX_PARAMS) {
		snprintf(err, errlen, "eval_query uses $%d; an eval query takes at most $%d", max, EVAL_MAX_PARAMS);
		return -1;
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct eval_query *q = &set->queries[i];
		if (q->n_params == want)
			continue;
		if (q->from_traffic)
			snprintf(err, errlen, "eval_query takes $3..$%d, which a traffic sample does not give", max);
		else if (!want)
			snprintf(err, errlen, "eval_file %s line %u gives %zu parameter values after the vector, eval_query "
			         "takes none beyond $1 and $2", mi->eval_file, q->line, q->n_params);
		else
			snprintf(err, errlen, "eval_file %s line %u gives %zu parameter values after the vector (\"VECTOR ; "
			         "v3 ; ...\"), eval_query takes %zu ($3..$%d)", mi->eval_file, q->line, q->n_params, want, max);
		return -1;
	}
	return 0;
}

void eval_set_free(struct eval_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		query_free(&set->queries[i]);
	free(set->queries);
	memset(set, 0, sizeof(*set));
}

int eval_set_copy_untruthed(struct eval_set *dst, const struct eval_set *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!src->n)
		return 0;
	dst->queries = calloc(src->n, sizeof(*dst->queries));
	if (!dst->queries)
		return -1;
	for (size_t i = 0; i < src->n; i++) {
		const struct eval_query *a = &src->queries[i];
		struct eval_query *b = &dst->queries[i];
		dst->n = i + 1;
		b->line = a->line;
		b->from_traffic = a->from_traffic;
		if (!(b->vector = strdup(a->vector)))
			goto oom;
		if (a->n_params && !(b->params = calloc(a->n_params, sizeof(char *))))
			goto oom;
		for (size_t j = 0; j < a->n_params; j++) {
			if (!(b->params[j] = strdup(a->params[j])))
				goto oom;
			b->n_params = j + 1;
		}
	}
	return 0;
oom:
	eval_set_free(dst);
	return -1;
}

int eval_set_add_traffic(struct eval_set *set, const char *vector)
{
	struct eval_query *n = realloc(set->queries, (set->n + 1) * sizeof(*n));
	if (!n)
		return -1;
	set->queries = n;
	struct eval_query *q = &set->queries[set->n];
	memset(q, 0, sizeof(*q));
	if (!(q->vector = strdup(vector)))
		return -1;
	q->from_traffic = true;
	set->n++;
	return 0;
}

void eval_set_drop_traffic(struct eval_set *set)
{
	size_t kept = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (set->queries[i].from_traffic) {
			query_free(&set->queries[i]);
			continue;
		}
		set->queries[kept++] = set->queries[i];
	}
	set->n = kept;
}

size_t eval_set_count(const struct eval_set *set, bool from_traffic)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		n += set->queries[i].from_traffic == from_traffic;
	return n;
}

int eval_set_take_samples(struct eval_set *set, const struct vg_managed_index *mi, const PGresult *res,
                          const char *error)
{
	eval_set_drop_traffic(set);
	int rows = error ? 0 : PQntuples(res);
	if (mi->eval_source == VG_EVAL_TRAFFIC || rows >= mi->traffic_min_samples)
		for (int r = 0; r < rows; r++)
			if (eval_set_add_traffic(set, PQgetvalue(res, r, 0)) < 0)
				break;
	return rows;
}

static void run_next(struct eval_run *run);
static void scan_free(struct eval_run *run);
static void scan_let_copy_go(struct eval_run *run);

/* The run ends here, once: success or the first failure. */
static void finish(struct eval_run *run, const struct eval_outcome *out, const char *error, bool transient)
{
	if (run->finished)
		return;
	run->finished = true;
	free(run->lat_ms);
	run->lat_ms = NULL;
	scan_let_copy_go(run);
	scan_free(run);
	run->done(run->arg, out, error, transient);
}

static void send_query(struct eval_run *run, const char *sql, int nparams, const char *const *params,
                       pg_result_cb cb)
{
	if (run->finished)
		return;
	if (!run->s || pg_session_query(run->s, sql, nparams, params, cb, run) < 0)
		finish(run, NULL, "maintenance connection unavailable", true);
}

/* $1 the vector, $2 k, then the query's own values: the parameters of
 * every statement that runs the eval query; returns how many */
static int query_params(const struct eval_query *q, const char *kbuf, const char **out)
{
	out[0] = q->vector;
	out[1] = kbuf;
	for (size_t j = 0; j < q->n_params && j + 2 < EVAL_MAX_PARAMS; j++)
		out[j + 2] = q->params[j];
	return 2 + (int)(q->n_params < EVAL_MAX_PARAMS - 2 ? q->n_params : EVAL_MAX_PARAMS - 2);
}

static void ids_of(const PGresult *res, int64_t *out, size_t *n, size_t max)
{
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++)
		out[(*n)++] = strtoll(PQgetvalue(res, r, 0), NULL, 10);
}

static void query_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	double now = now_sec();
	if (run->finished)
		return;
	if (error) {
		char m[600];
		snprintf(m, sizeof(m), "eval query failed: %s", error);
		finish(run, NULL, m, pg_result_transient(res));
		return;
	}
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	size_t k = mi ? (size_t)mi->k : 10;
	struct eval_query *q = &run->set->queries[run->i];
	if (run->truth_pass) {
		free(q->truth);
		q->truth = calloc(k + 1, sizeof(int64_t));
		if (q->truth)
			ids_of(res, q->truth, &q->n_truth, k);
		if (q->truth && vg_log_min_level <= VG_LOG_DEBUG) {
			char line[1800];
			size_t o = 0;
			for (size_t j = 0; j < q->n_truth && o < sizeof(line) - 32; j++)
				o += (size_t)snprintf(line + o, sizeof(line) - o, " %lld", (long long)q->truth[j]);
			log_debug("eval truth %s q%zu (per query):%s", run->index_name, run->i, o ? line : "");
		}
	} else {
		int64_t got[1024];
		size_t n;
		ids_of(res, got, &n, k < 1024 ? k : 1024);
		run->lat_ms[run->i] = (now - run->sent) * 1000.0;
		if (run->got && run->got_k == k) {
			memcpy(run->got + run->i * k, got, n * sizeof(*got));
			run->n_got[run->i] = n;
		}
		double r = recall_at_k_ties(got, n, q->truth, q->n_truth, q->ties, q->n_ties, k);
		run->recall_sum += r;
		if (q->from_traffic)
			run->recall_sum_traffic += r;
	}
	run->i++;
	run->steps_done++;
	run_next(run);
}

static void explain_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	char m[700];
	if (error) {
		snprintf(m, sizeof(m), "EXPLAIN of the eval query failed: %s", error);
		finish(run, NULL, m, pg_result_transient(res)); /* a server restarting under it is worth a retry */
		return;
	}
	const char *plan = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
	const char *p = strstr(plan, "\"Index Name\": \"");
	run->plan_index[0] = 0;
	if (p) {
		p += 15;
		snprintf(run->plan_index, sizeof(run->plan_index), "%.*s", (int)strcspn(p, "\""), p);
	}
	/* anywhere in the plan: a partitioned table's plan scans one index per
	 * partition (an Append), the expected one among them */
	char want[200];
	snprintf(want, sizeof(want), "\"Index Name\": \"%s\"", run->expect_index);
	if (run->expect_index[0] && !strstr(plan, want)) {
		send_query(run, "ROLLBACK", 0, NULL, NULL);
		snprintf(m, sizeof(m), "verify: EXPLAIN shows the eval query served by %s, not the new index %s; cannot "
		         "measure it%s",
		         run->plan_index[0] ? run->plan_index : "a sequential scan", run->expect_index, run->expect_hint);
		finish(run, NULL, m, false);
		return;
	}
	run_next(run);
}

static void prepare_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	if (error) {
		char m[700];
		snprintf(m, sizeof(m), "PREPARE of the eval query failed: %s", error);
		finish(run, NULL, m, pg_result_transient(res));
	}
}

/* The cached plan held for the whole run: the statistics of this
 * transaction count every scan of both indexes. */
static void scans_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	char m[2000];
	if (error || PQntuples(res) != 1) {
		snprintf(m, sizeof(m), "cannot count the eval's index scans: %s", error ? error : "no row");
		finish(run, NULL, m, pg_result_transient(res));
		return;
	}
	/* the counters hold whatever the session has not reported yet, so only
	 * the difference across the timed queries is theirs */
	long long used = atoll(PQgetvalue(res, 0, 0)) - run->scans_before[0];
	long long avoided = atoll(PQgetvalue(res, 0, 1)) - run->scans_before[1];
	if ((avoided > 0 || used < (long long)run->set->n) && run->hint[0]) {
		send_query(run, "ROLLBACK", 0, NULL, NULL);
		snprintf(m, sizeof(m), "the plan hint did not hold: %lld of %zu hinted queries scanned %s, %lld scanned %s "
		         "(is pg_hint_plan loaded, with pg_hint_plan.enable_hint on for this role?)",
		         used, run->set->n, run->scans_on, avoided, run->no_scans_on);
		finish(run, NULL, m, false);
		return;
	}
	if (avoided > 0 || used < (long long)run->set->n) {
		send_query(run, "ROLLBACK", 0, NULL, NULL);
		snprintf(m, sizeof(m), "the eval's cached plan did not hold: %lld of %zu queries scanned %s, %lld scanned %s "
		         "(the plan was re-made without the hide, e.g. after a concurrent ANALYZE or DDL on the table); "
		         "measuring again", used, run->set->n, run->scans_on, avoided, run->no_scans_on);
		finish(run, NULL, m, true);
		return;
	}
	run->scans_checked = true;
	run_next(run);
}

static void scans_before_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	if (error || PQntuples(res) != 1) {
		char m[600];
		snprintf(m, sizeof(m), "cannot count the eval's index scans: %s", error ? error : "no row");
		finish(run, NULL, m, pg_result_transient(res));
		return;
	}
	run->scans_before[0] = atoll(PQgetvalue(res, 0, 0));
	run->scans_before[1] = atoll(PQgetvalue(res, 0, 1));
}

#define SQL_SCAN_COUNTS "SELECT pg_stat_get_xact_numscans($1::regclass), pg_stat_get_xact_numscans($2::regclass)"

#define EVAL_STMT "vecgate_eval"

/* The generic plan is made under EXPLAIN (after plan_setup_sql) and cached
 * in the prepared statement; EXPLAIN EXECUTE takes literals only. */
/* The text the run measures: the configured eval query, or the one the
 * owner gave (one partition's). */
static const char *eval_text(const struct eval_run *run, const struct vg_managed_index *mi)
{
	return run->query ? run->query : mi->eval_query;
}

static void plant_generic_plan(struct eval_run *run, const struct vg_managed_index *mi, const char *kbuf)
{
	if (run->scans_on[0] && run->no_scans_on[0]) {
		const char *params[] = {run->scans_on, run->no_scans_on};
		send_query(run, SQL_SCAN_COUNTS, 2, params, scans_before_result);
	}
	if (run->plan_setup_sql[0])
		send_query(run, run->plan_setup_sql, 0, NULL, NULL);
	send_query(run, "SET LOCAL plan_cache_mode = force_generic_plan", 0, NULL, NULL);
	const char *params[EVAL_MAX_PARAMS];
	int np = query_params(&run->set->queries[0], kbuf, params);
	size_t qlen = strlen(eval_text(run, mi)) + 64, vlen = 128;
	for (int i = 0; i < np; i++)
		vlen += 2 * strlen(params[i]) + 5;
	char *sql = malloc(qlen > vlen ? qlen : vlen), *lit = malloc(vlen);
	if (!sql || !lit) {
		free(sql);
		free(lit);
		finish(run, NULL, "out of memory", true);
		return;
	}
	snprintf(sql, qlen, "PREPARE " EVAL_STMT " AS %s", eval_text(run, mi));
	send_query(run, sql, 0, NULL, prepare_result);
	/* EXPLAIN EXECUTE takes literals: k as written, every other value quoted */
	size_t o = (size_t)snprintf(sql, vlen, "EXPLAIN (FORMAT JSON) EXECUTE " EVAL_STMT "(");
	for (int i = 0; i < np; i++) {
		if (i == 1)
			snprintf(lit, vlen, "%s", kbuf);
		else
			sql_literal(params[i], lit, vlen);
		o += (size_t)snprintf(sql + o, vlen - o, "%s%s", i ? ", " : "", lit);
	}
	snprintf(sql + o, vlen - o, ")");
	send_query(run, sql, 0, NULL, explain_result);
	free(sql);
	free(lit);
}

/* ---- ground truth by one exact scan ---- */

/* Work per block the scan's thread compares: rows x queries x dims.
 * ~32M multiply-adds is 1-3 ms on one core: the most a paused COPY waits
 * to read on, and the most scan_free waits for when a run ends mid-block. */
#define SCAN_BLOCK_WORK 32e6
#define SCAN_BLOCK_BYTES (4u << 20)        /* one row block, at most */
#define SCAN_MAX_TUPLE (4u + 16u + 8u + 4u + 4u + 4u * VECFMT_MAX_DIM) /* id, vector(16000) */
#define SCAN_MAX_FILTER_CELL 8192u /* a filter column's value (a tenant, a language), at most */

enum scan_phase {
	SCAN_STREAMING, /* COPY data flows into the filling block */
	SCAN_STALLED,   /* both blocks are taken (one full, one compared): the COPY is paused */
	SCAN_DRAINING,  /* the COPY ended: the last blocks are compared, then the results */
};

/* Double buffering: the loop decodes rows into `filling` while the scan's
 * thread compares `comparing` with every query.  Only that thread touches
 * the heaps (topk) and `comparing` between the hand-over and its done
 * callback; the loop reads the results only once the last block is done. */
struct eval_scan {
	struct eval_run *run;
	struct knn_query q;
	enum vec_type type;
	size_t dim;
	size_t *qmap;          /* topk query -> eval set index */
	size_t nq;
	struct copybin dec;
	struct topk topk;      /* its own block is one of the two */
	struct topk_block spare;
	struct topk_block *filling, *comparing; /* comparing NULL while the thread is idle */
	struct worker *worker;
	enum scan_phase phase;
	bool dec_ready, topk_ready, spare_ready;
	uint64_t rows_taken;   /* rows decoded into blocks, for progress (topk.rows_seen is the thread's) */
	double rows_total;     /* planner's estimate or a count, for progress */
	uint64_t rows_null;    /* rows with a NULL id or vector: never neighbours */
	/* a filtered eval query: the WHERE clause bound once per class of
	 * queries with the same filter values (class c: topk queries
	 * [class_start[c], class_start[c + 1])), the filter columns' types, and
	 * the rows no class took */
	struct knn_bound *bound;
	size_t n_classes;
	size_t class_start[TOPK_MAX_CLASSES + 1];
	enum knn_coltype ftypes[KNN_FILTER_TERMS];
	uint64_t rows_filtered;
	char vtype[64];        /* the probe's answers, kept while the filter columns are looked up */
	int typmod;
	double reltuples;
	double started;
	double compare_secs;   /* the thread's time in topk_compare, written by it */
	char error[400];       /* why the scan refused the stream */
};

static void scan_free(struct eval_run *run)
{
	struct eval_scan *sc = run->scan;
	if (!sc)
		return;
	/* a block still compared writes the heaps and reads its block: wait
	 * for it (one block, a few ms) before freeing either */
	worker_stop(sc->worker);
	if (sc->dec_ready)
		copybin_free(&sc->dec);
	if (sc->spare_ready)
		topk_block_free(&sc->spare);
	if (sc->topk_ready)
		topk_free(&sc->topk);
	free(sc->qmap);
	free(sc->bound);
	free(sc);
	run->scan = NULL;
}

/* The run ends while its COPY is paused for the thread: let the stream run
 * to its end on the session (scan_chunk drops it), which the session needs
 * before its next statement.  Only where the session is still alive: an
 * owner that abandons the run closes or replaces it instead. */
static void scan_let_copy_go(struct eval_run *run)
{
	if (run->scan && run->scan->phase == SCAN_STALLED && run->s) {
		run->scan->phase = SCAN_STREAMING;
		pg_session_resume_copy(run->s);
	}
}

/* The run starts over with one exact query per eval vector: a fresh
 * snapshot (the scan's statement may have aborted the transaction). */
static void open_snapshot(struct eval_run *run);
static void per_query_truth(struct eval_run *run, const char *why)
{
	snprintf(run->truth_note, sizeof(run->truth_note), "per query (%s)", why);
	log_info("eval %s: ground truth by %zu exact queries: %s", run->index_name, run->truth_total, why);
	run->method = EVAL_TRUTH_PER_QUERY;
	send_query(run, "SET LOCAL enable_indexscan = off", 0, NULL, NULL);
	send_query(run, "SET LOCAL enable_bitmapscan = off", 0, NULL, NULL);
	run_next(run);
}

/* The scan cannot serve this run: per query under `auto`, a failure when
 * the configuration asked for the scan. */
static void scan_unavailable(struct eval_run *run, const char *why, bool restart)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	scan_free(run);
	if (mi && mi->ground_truth == VG_TRUTH_EXACT_SCAN) {
		char m[600];
		snprintf(m, sizeof(m), "ground_truth: exact_scan cannot be used: %s", why);
		finish(run, NULL, m, false);
		return;
	}
	if (restart)
		open_snapshot(run); /* the failed statement aborted the transaction */
	per_query_truth(run, why);
}

/* On the scan's thread: compare a block with every query. */
static void scan_compare_job(void *arg)
{
	struct eval_scan *sc = arg;
	double t0 = now_sec();
	topk_compare(&sc->topk, sc->comparing);
	sc->compare_secs += now_sec() - t0;
}

static void scan_block_done(void *arg);

static void scan_hand_over(struct eval_scan *sc)
{
	assert(!sc->comparing && sc->filling->n > 0);
	sc->comparing = sc->filling;
	sc->filling = sc->filling == &sc->topk.block ? &sc->spare : &sc->topk.block;
	assert(sc->filling->n == 0);
	worker_submit(sc->worker, scan_compare_job, scan_block_done, sc);
}

static void scan_results(struct eval_run *run);

/* Keep the thread busy and the COPY flowing: hand over a full block (or,
 * once the COPY ended, the last part-filled one), let a stalled COPY read
 * on, and once the last block has been compared take the results. */
static void scan_pump(struct eval_run *run)
{
	struct eval_scan *sc = run->scan;
	if (!sc->comparing && sc->filling->n && (topk_block_full(sc->filling) || sc->phase == SCAN_DRAINING))
		scan_hand_over(sc);
	if (sc->phase == SCAN_STALLED && !topk_block_full(sc->filling)) {
		sc->phase = SCAN_STREAMING;
		pg_session_resume_copy(run->s);
	}
	if (sc->phase == SCAN_DRAINING && !sc->comparing)
		scan_results(run);
}

/* On the loop: the thread finished a block (it is empty again). */
static void scan_block_done(void *arg)
{
	struct eval_scan *sc = arg;
	assert(sc->comparing && sc->comparing->n == 0);
	sc->comparing = NULL;
	if (sc->run->finished)
		return; /* the run ended meanwhile (scan_free stops the thread before this could run) */
	scan_pump(sc->run);
}

/* Which classes of queries a row meets: its filter columns against each
 * class's bound WHERE clause (every class without a filter).  0 with the
 * reason in sc->error when a cell is not its type's send format. */
static uint64_t row_classes(struct eval_scan *sc, const struct copybin_field *f)
{
	const struct knn_filter *flt = &sc->q.filter;
	if (!flt->n_terms)
		return 1;
	struct knn_cell cells[KNN_FILTER_TERMS];
	for (int c = 0; c < flt->n_columns; c++) {
		if (knn_cell_decode(sc->ftypes[c], f[2 + c].p, f[2 + c].len, &cells[c]) < 0) {
			snprintf(sc->error, sizeof(sc->error), "filter column %s sent %d bytes, not its type's format",
			         flt->columns[c], f[2 + c].len);
			return 0;
		}
	}
	uint64_t classes = 0;
	for (size_t k = 0; k < sc->n_classes; k++)
		if (knn_filter_match(&sc->bound[k], cells))
			classes |= (uint64_t)1 << k;
	return classes;
}

static int scan_tuple(void *arg, int nfields, const struct copybin_field *f)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	if (nfields != 2 + sc->q.filter.n_columns) {
		snprintf(sc->error, sizeof(sc->error), "COPY sent %d columns, not %d", nfields, 2 + sc->q.filter.n_columns);
		return 1;
	}
	if (f[0].len < 0 || f[1].len < 0) {
		sc->rows_null++;
		return 0;
	}
	uint64_t classes = row_classes(sc, f);
	if (sc->error[0])
		return 1;
	if (!classes) {
		sc->rows_filtered++; /* no query's filter takes it */
		return 0;
	}
	int64_t id;
	if (vecfmt_decode_id(f[0].p, (size_t)f[0].len, &id) < 0) {
		snprintf(sc->error, sizeof(sc->error), "an id of %d bytes is not an integer", f[0].len);
		return 1;
	}
	if (topk_block_full(sc->filling)) {
		/* rows past a full block in the same chunk while the other block is
		 * still compared: wait for it here, one block at most.  PostgreSQL
		 * sends a row per CopyData message, so only a differently cut
		 * stream gets here; the chunk's end pauses the COPY otherwise. */
		worker_finish(sc->worker);
		assert(!topk_block_full(sc->filling));
	}
	size_t dim = 0;
	if (vecfmt_decode(sc->type, f[1].p, (size_t)f[1].len, topk_block_slot(sc->filling), sc->dim, &dim) < 0 ||
	    dim != sc->dim) {
		int sent = f[1].len >= 2 ? pg_be16s(f[1].p) : -1;
		snprintf(sc->error, sizeof(sc->error),
		         "row %lld has %d dimensions, the eval vectors %zu (the server would refuse to compare them)",
		         (long long)id, sent, sc->dim);
		return 1;
	}
	sc->rows_taken++;
	if (topk_block_commit_classes(sc->filling, id, classes) && !sc->comparing)
		scan_hand_over(sc);
	return 0;
}

static enum pg_copy_flow scan_chunk(void *arg, const char *data, size_t len)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	if (run->finished || !sc || sc->error[0])
		return PG_COPY_MORE;
	assert(sc->phase == SCAN_STREAMING);
	enum copybin_status st = copybin_feed(&sc->dec, (const uint8_t *)data, len, scan_tuple, run);
	if (st < 0) {
		if (!sc->error[0])
			snprintf(sc->error, sizeof(sc->error), "%s", copybin_strerror(st));
		pg_session_cancel_copy(run->s); /* the result callback reports it */
		return PG_COPY_MORE;
	}
	if (topk_block_full(sc->filling)) {
		/* both blocks taken: read on when the thread is done with one */
		assert(sc->comparing);
		sc->phase = SCAN_STALLED;
		return PG_COPY_PAUSE;
	}
	return PG_COPY_MORE;
}

static void scan_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	run->copy_in_flight = false;
	if (run->finished || !sc)
		return;
	char m[900];
	if (sc->error[0]) {
		snprintf(m, sizeof(m), "exact scan of %s: %s", sc->q.table, sc->error);
		finish(run, NULL, m, false);
		return;
	}
	if (error) {
		if (pg_result_transient(res)) {
			snprintf(m, sizeof(m), "exact scan failed: %s", error);
			finish(run, NULL, m, true);
		} else {
			snprintf(m, sizeof(m), "the exact scan failed (%s)", error);
			scan_unavailable(run, m, true);
		}
		return;
	}
	enum copybin_status st = copybin_finish(&sc->dec);
	if (st != COPYBIN_DONE) {
		snprintf(m, sizeof(m), "exact scan of %s: %s", sc->q.table, copybin_strerror(st));
		finish(run, NULL, m, false);
		return;
	}
	sc->phase = SCAN_DRAINING;
	scan_pump(run);
}

/* Every row compared, the thread idle: the truth of every query. */
static void scan_results(struct eval_run *run)
{
	struct eval_scan *sc = run->scan;
	assert(sc->phase == SCAN_DRAINING && !sc->comparing && sc->filling->n == 0);
	assert(sc->topk.rows_seen == sc->rows_taken);
	size_t k = sc->topk.k;
	struct topk_entry *best = calloc(k, sizeof(*best)), *ties = calloc(k ? k : 1, sizeof(*ties));
	if (!best || !ties) {
		free(best);
		free(ties);
		finish(run, NULL, "out of memory", true);
		return;
	}
	uint64_t dropped = 0;
	for (size_t i = 0; i < sc->nq; i++) {
		struct eval_query *q = &run->set->queries[sc->qmap[i]];
		size_t n = topk_result(&sc->topk, i, best), nt = topk_ties(&sc->topk, i, ties);
		dropped += sc->topk.ties_dropped[i];
		free(q->truth);
		free(q->ties);
		q->truth = calloc(n + 1, sizeof(int64_t));
		q->ties = calloc(nt + 1, sizeof(int64_t));
		q->n_truth = q->n_ties = 0;
		if (!q->truth || !q->ties)
			continue;
		for (size_t j = 0; j < n; j++)
			q->truth[q->n_truth++] = best[j].id;
		for (size_t j = 0; j < nt; j++)
			q->ties[q->n_ties++] = ties[j].id;
		if (vg_log_min_level <= VG_LOG_DEBUG) {
			char line[1800] = ""; /* a filter may leave a query no row at all */
			size_t o = 0;
			for (size_t j = 0; j < n && o < sizeof(line) - 64; j++)
				o += (size_t)snprintf(line + o, sizeof(line) - o, " %lld=%.9g", (long long)best[j].id,
				                      vdist_value(sc->topk.metric, best[j].key));
			for (size_t j = 0; j < nt && o < sizeof(line) - 64; j++)
				o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%lld", j ? " " : " | ties ",
				                      (long long)ties[j].id);
			log_debug("eval truth %s q%zu (scan):%s", run->index_name, sc->qmap[i], line);
		}
	}
	free(best);
	free(ties);
	double secs = now_sec() - sc->started;
	double flops = 2.0 * (double)sc->topk.pairs * (double)sc->dim;
	uint64_t rows = sc->topk.rows_seen + sc->rows_null + sc->rows_filtered;
	char filtered[160] = "";
	if (sc->q.filter.n_terms)
		snprintf(filtered, sizeof(filtered), ", the WHERE clause applied to each row for %zu distinct filter value%s "
		         "(%llu rows no query's filter took)", sc->n_classes, sc->n_classes == 1 ? "" : "s",
		         (unsigned long long)sc->rows_filtered);
	/* GFLOP/s over the whole scan (what a bigger table costs), then the
	 * thread's share: near 100% the kernels bound the scan, well below it
	 * the server's COPY or the decoding on the loop do */
	snprintf(run->truth_note, sizeof(run->truth_note), "one exact scan of %llu rows in %.1f s%s",
	         (unsigned long long)rows, secs, sc->q.filter.n_terms ? ", filter applied per row" : "");
	log_info("eval %s: ground truth by one exact scan of %s: %llu rows (%llu with a NULL id or vector skipped%s), "
	         "%zu queries x %zu dims %s k=%zu, %.1f MB read, %.2f s, %.1f GFLOP/s (%s kernels, on a thread busy %.0f%% "
	         "of the scan), %.1f MB held%s",
	         run->index_name, sc->q.table, (unsigned long long)rows,
	         (unsigned long long)sc->rows_null, filtered, sc->nq, sc->dim, vdist_operator(sc->topk.metric), k,
	         (double)sc->dec.bytes / 1e6, secs, secs > 0 ? flops / secs / 1e9 : 0, vdist_isa(),
	         secs > 0 ? 100.0 * sc->compare_secs / secs : 0,
	         (double)(topk_memory(&sc->topk) + topk_block_memory(&sc->spare) + sc->dec.max_tuple) / 1e6,
	         dropped ? "; some ties beyond k were not kept" : "");
	scan_free(run);
	run->truth_pass = false;
	run->i = 0;
	run_next(run);
}

static void count_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	if (run->finished || !run->scan)
		return;
	if (!error && PQntuples(res) == 1)
		run->scan->rows_total = atof(PQgetvalue(res, 0, 0));
}

/* $1 relation -> each column's name, type oid (a domain's base type), type
 * name, and whether its collation is deterministic (the filter's columns
 * are picked from them) */
#define SQL_FILTER_COLUMNS                                                                                 \
	"SELECT a.attname::text, coalesce(nullif(t.typbasetype, 0), a.atttypid)::oid::text, "                \
	"format_type(a.atttypid, a.atttypmod), coalesce(co.collisdeterministic, true) "                      \
	"FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "                                          \
	"LEFT JOIN pg_collation co ON co.oid = a.attcollation "                                              \
	"WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"

static void filter_probe_result(void *arg, PGresult *res, const char *error);
static void scan_begin(struct eval_run *run);
static void filter_key(const struct knn_filter *f, const struct eval_query *q, char *out, size_t outlen);

/* The catalog agreed on id and vector: the filter's columns next, if any,
 * then the scan. */
static void probe_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	if (run->finished || !sc)
		return;
	char why[400];
	if (error || PQntuples(res) != 1) {
		if (error && pg_result_transient(res)) {
			char m[600];
			snprintf(m, sizeof(m), "eval catalog lookup failed: %s", error);
			finish(run, NULL, m, true);
			return;
		}
		snprintf(why, sizeof(why), "catalog lookup failed: %s", error ? error : "no row");
		scan_unavailable(run, why, true);
		return;
	}
	bool found = !PQgetisnull(res, 0, 0) && PQgetvalue(res, 0, 0)[0] == 't';
	int id_type = PQgetisnull(res, 0, 1) ? 0 : atoi(PQgetvalue(res, 0, 1));
	const char *vtype = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
	const char *send_fn = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	int typmod = PQgetisnull(res, 0, 4) ? -1 : atoi(PQgetvalue(res, 0, 4));
	double reltuples = PQgetisnull(res, 0, 5) ? -1 : atof(PQgetvalue(res, 0, 5));
	if (knn_probe_check(&sc->q, found, id_type, vtype, send_fn, &sc->type, why, sizeof(why)) < 0) {
		scan_unavailable(run, why, false);
		return;
	}
	snprintf(sc->vtype, sizeof(sc->vtype), "%s", vtype);
	sc->typmod = typmod;
	sc->reltuples = reltuples;
	if (sc->q.filter.n_terms) {
		/* the filter columns' types next, in the same snapshot */
		char rel[420];
		knn_relation(&sc->q, rel, sizeof(rel));
		const char *params[] = {rel};
		send_query(run, SQL_FILTER_COLUMNS, 1, params, filter_probe_result);
		return;
	}
	scan_begin(run);
}

/* The filter columns' types: bind the WHERE clause once per class of
 * queries, or leave the scan with the reason. */
static void filter_probe_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	if (run->finished || !sc)
		return;
	char why[400];
	if (error) {
		snprintf(why, sizeof(why), "catalog lookup of the filter columns failed: %s", error);
		scan_unavailable(run, why, true);
		return;
	}
	const struct knn_filter *f = &sc->q.filter;
	for (int c = 0; c < f->n_columns; c++) {
		int r = 0;
		while (r < PQntuples(res) && strcmp(PQgetvalue(res, r, 0), f->columns[c]))
			r++;
		if (r == PQntuples(res)) {
			snprintf(why, sizeof(why), "no filter column %s in the table", f->columns[c]);
			scan_unavailable(run, why, false);
			return;
		}
		if (knn_coltype_of(f->columns[c], (unsigned)strtoul(PQgetvalue(res, r, 1), NULL, 10), PQgetvalue(res, r, 2),
		                   !strcmp(PQgetvalue(res, r, 3), "t"), &sc->ftypes[c], why, sizeof(why)) < 0) {
			scan_unavailable(run, why, false);
			return;
		}
	}
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	char kbuf[16];
	snprintf(kbuf, sizeof(kbuf), "%d", mi ? mi->k : 10);
	sc->bound = calloc(sc->n_classes, sizeof(*sc->bound));
	if (!sc->bound) {
		finish(run, NULL, "out of memory", true);
		return;
	}
	for (size_t k = 0; k < sc->n_classes; k++) {
		/* any query of the class stands for all of it: same filter values */
		const char *params[EVAL_MAX_PARAMS + 1] = {NULL};
		const struct eval_query *q = &run->set->queries[sc->qmap[sc->class_start[k]]];
		query_params(q, kbuf, params + 1); /* params[n] is $n */
		if (knn_filter_bind(f, sc->ftypes, params, 2 + 1 + (int)q->n_params, &sc->bound[k], why, sizeof(why)) < 0) {
			scan_unavailable(run, why, false);
			return;
		}
		char key[200];
		filter_key(f, q, key, sizeof(key));
		log_debug("eval %s: filter class %zu: queries %zu..%zu, %s", run->index_name, k, sc->class_start[k],
		          sc->class_start[k + 1] - 1, key);
	}
	scan_begin(run);
}

/* Catalog and filter agreed: parse the eval vectors as the column's type,
 * set up the heaps and the decoder, start the COPY. */
static void scan_begin(struct eval_run *run)
{
	struct eval_scan *sc = run->scan;
	const char *vtype = sc->vtype;
	int typmod = sc->typmod;
	double reltuples = sc->reltuples;
	char why[400];
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	size_t k = mi ? (size_t)mi->k : 10;
	/* the eval vectors as the server will read them */
	float *qv = NULL;
	for (size_t i = 0; i < sc->nq; i++) {
		const char *text = run->set->queries[sc->qmap[i]].vector;
		float tmp[VECFMT_MAX_DIM];
		size_t dim;
		if (vecfmt_parse_text(sc->type, text, tmp, VECFMT_MAX_DIM, &dim) < 0) {
			snprintf(why, sizeof(why), "eval vector %zu is not a %s literal vecgate can read", sc->qmap[i] + 1,
			         vtype);
			free(qv);
			scan_unavailable(run, why, false);
			return;
		}
		if (!qv) {
			sc->dim = dim;
			qv = malloc(sc->nq * dim * sizeof(float));
			if (!qv) {
				finish(run, NULL, "out of memory", true);
				return;
			}
		}
		if (dim != sc->dim || (typmod > 0 && (size_t)typmod != dim) ||
		    (sc->q.cast_dims > 0 && (size_t)sc->q.cast_dims != dim)) {
			snprintf(why, sizeof(why), "eval vector %zu has %zu dimensions, not %zu", sc->qmap[i] + 1, dim,
			         typmod > 0 ? (size_t)typmod : sc->q.cast_dims > 0 ? (size_t)sc->q.cast_dims : sc->dim);
			free(qv);
			scan_unavailable(run, why, false);
			return;
		}
		memcpy(qv + i * dim, tmp, dim * sizeof(float));
	}
	size_t rows = topk_block_rows(sc->dim, sc->nq, SCAN_BLOCK_BYTES, SCAN_BLOCK_WORK);
	int rc = topk_init(&sc->topk, sc->q.metric, sc->dim, qv, sc->nq, k, k, rows);
	free(qv);
	if (rc < 0) {
		finish(run, NULL, "out of memory for the exact scan", true);
		return;
	}
	sc->topk_ready = true;
	if (sc->n_classes > 1 && topk_set_classes(&sc->topk, sc->class_start, sc->n_classes) < 0) {
		finish(run, NULL, "out of memory for the exact scan", true);
		return;
	}
	if (topk_block_init(&sc->spare, &sc->topk) < 0) {
		finish(run, NULL, "out of memory for the exact scan", true);
		return;
	}
	sc->spare_ready = true;
	sc->filling = &sc->topk.block;
	if (!(sc->worker = worker_start(vg.base))) {
		finish(run, NULL, "cannot start the exact scan's thread", true);
		return;
	}
	if (copybin_init(&sc->dec, SCAN_MAX_TUPLE + (size_t)sc->q.filter.n_columns * (4 + SCAN_MAX_FILTER_CELL),
	                 2 + sc->q.filter.n_columns) < 0) {
		finish(run, NULL, "out of memory for the exact scan", true);
		return;
	}
	sc->dec_ready = true;
	char copy[1200];
	if (knn_copy_sql(&sc->q, copy, sizeof(copy)) < 0) {
		scan_unavailable(run, "names too long", false);
		return;
	}
	sc->rows_total = reltuples;
	if (reltuples < 0) {
		/* never analyzed: count in the same snapshot, for progress */
		char rel[420], sql[600];
		knn_relation(&sc->q, rel, sizeof(rel));
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", rel);
		send_query(run, sql, 0, NULL, count_result);
		if (run->finished)
			return; /* the session was gone: finish() freed the scan */
	}
	run->method = EVAL_TRUTH_SCAN;
	sc->started = now_sec();
	log_debug("eval %s: exact scan: %s (%zu queries, %zu rows per block, two blocks, %.1f MB held)",
	          run->index_name, copy, sc->nq, rows,
	          (double)(topk_memory(&sc->topk) + topk_block_memory(&sc->spare) + SCAN_MAX_TUPLE) / 1e6);
	if (run->finished)
		return;
	if (!run->s || pg_session_copy_out(run->s, copy, scan_chunk, scan_result, run) < 0) {
		finish(run, NULL, "maintenance connection unavailable", true);
		return;
	}
	run->copy_in_flight = true;
}

/* The values of the parameters a filter uses, as one key: queries with the
 * same key share their filter (one class of the scan). */
static void filter_key(const struct knn_filter *f, const struct eval_query *q, char *out, size_t outlen)
{
	size_t o = 0;
	out[0] = 0;
	for (int i = 0; i < f->n_values; i++) {
		int n = f->values[i].param;
		if (f->values[i].kind == KNN_V_PARAM && n >= 3 && (size_t)(n - 3) < q->n_params)
			o += (size_t)snprintf(out + o, o < outlen ? outlen - o : 0, "%d=%s\x1f", n, q->params[n - 3]);
	}
}

static const struct eval_set *sort_set; /* qsort's context: the loop is single-threaded */
static const struct knn_filter *sort_filter;

static int by_filter_key(const void *a, const void *b)
{
	char ka[2048], kb[2048];
	filter_key(sort_filter, &sort_set->queries[*(const size_t *)a], ka, sizeof(ka));
	filter_key(sort_filter, &sort_set->queries[*(const size_t *)b], kb, sizeof(kb));
	int c = strcmp(ka, kb);
	return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/* Order the scan's queries by their filter values and cut them into
 * classes, one binding of the WHERE clause each. */
static int group_by_filter(struct eval_run *run, struct eval_scan *sc, char *why, size_t whylen)
{
	sort_set = run->set;
	sort_filter = &sc->q.filter;
	qsort(sc->qmap, sc->nq, sizeof(*sc->qmap), by_filter_key);
	size_t n = 0;
	char prev[2048] = "", key[2048];
	for (size_t i = 0; i < sc->nq; i++) {
		filter_key(&sc->q.filter, &run->set->queries[sc->qmap[i]], key, sizeof(key));
		if (i > 0 && !strcmp(key, prev))
			continue;
		if (n == TOPK_MAX_CLASSES) {
			snprintf(why, whylen, "the eval queries give more than %d distinct filter values; one pass applies "
			         "at most %d", TOPK_MAX_CLASSES, TOPK_MAX_CLASSES);
			return -1;
		}
		sc->class_start[n++] = i;
		snprintf(prev, sizeof(prev), "%s", key);
	}
	sc->class_start[n] = sc->nq;
	sc->n_classes = n;
	return 0;
}

/* Ground truth for the queries the eval file does not give: the exact scan
 * when the query and the configuration allow it, else per query. */
static void start_truth(struct eval_run *run, const struct vg_managed_index *mi)
{
	if (!run->truth_total) {
		run->method = EVAL_TRUTH_PER_QUERY; /* nothing to compute: straight to the timed queries */
		snprintf(run->truth_note, sizeof(run->truth_note), "from the eval file");
		run->truth_pass = false;
		run_next(run);
		return;
	}
	if (mi->ground_truth == VG_TRUTH_PER_QUERY) {
		per_query_truth(run, "ground_truth: per_query");
		return;
	}
	char why[300];
	struct eval_scan *sc = calloc(1, sizeof(*sc));
	if (!sc) {
		finish(run, NULL, "out of memory", true);
		return;
	}
	run->scan = sc;
	sc->run = run;
	if (knn_query_parse(eval_text(run, mi), &sc->q, why, sizeof(why)) < 0) {
		char m[400];
		snprintf(m, sizeof(m), "eval_query is not a plain k-NN query: %s", why);
		scan_unavailable(run, m, false);
		return;
	}
	const char *want_schema = run->query ? run->query_schema : mi->schema;
	const char *want_table = run->query ? run->query_table : mi->table;
	if (strcmp(sc->q.table, want_table) != 0 || (sc->q.schema[0] && strcmp(sc->q.schema, want_schema) != 0)) {
		char m[700];
		snprintf(m, sizeof(m), "eval_query reads %.128s%s%.128s, not the managed table %.128s.%.128s", sc->q.schema,
		         sc->q.schema[0] ? "." : "", sc->q.table, want_schema, want_table);
		scan_unavailable(run, m, false);
		return;
	}
	sc->qmap = calloc(run->truth_total, sizeof(size_t));
	if (!sc->qmap) {
		finish(run, NULL, "out of memory", true);
		return;
	}
	for (size_t i = 0; i < run->set->n; i++)
		if (!run->set->queries[i].truth_from_file)
			sc->qmap[sc->nq++] = i;
	if (sc->q.filter.n_terms && group_by_filter(run, sc, why, sizeof(why)) < 0) {
		scan_unavailable(run, why, false);
		return;
	}
	char rel[420];
	knn_relation(&sc->q, rel, sizeof(rel));
	const char *params[] = {rel, sc->q.id_column, sc->q.vector_column};
	send_query(run, KNN_PROBE_SQL, 3, params, probe_result);
}

/* ---- each partition's share of the recall ---- */

static int by_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* $1 the true neighbours' ids as an int8[] -> id, the schema and name of
 * the partition holding the row (tableoid, in the eval's snapshot) */
static int leaves_sql(const struct vg_managed_index *mi, char *out, size_t outlen, char *why, size_t whylen)
{
	struct knn_query *q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (knn_query_parse(mi->eval_query, q, why, whylen) < 0) {
		free(q);
		return -1;
	}
	char rel[420], id[2 * SQL_NAME_MAX + 3];
	knn_relation(q, rel, sizeof(rel));
	size_t o = 0;
	id[o++] = '"';
	for (const char *c = q->id_column; *c && o < sizeof(id) - 3; c++) {
		if (*c == '"')
			id[o++] = '"';
		id[o++] = *c;
	}
	id[o++] = '"';
	id[o] = 0;
	free(q);
	int n = snprintf(out, outlen,
	                 "SELECT t.%s::int8, n.nspname::text, c.relname::text FROM %s t JOIN pg_class c ON c.oid = "
	                 "t.tableoid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.%s = ANY($1::int8[])",
	                 id, rel, id);
	if (n < 0 || (size_t)n >= outlen) {
		snprintf(why, whylen, "names too long");
		return -1;
	}
	return 0;
}

struct leaf_of {
	int64_t id;
	int leaf;
};

static int leaf_by_id(const void *a, const void *b)
{
	return by_id(&((const struct leaf_of *)a)->id, &((const struct leaf_of *)b)->id);
}

static void leaves_result(void *arg, PGresult *res, const char *error)
{
	struct eval_run *run = arg;
	if (run->finished)
		return;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	size_t k = mi ? (size_t)mi->k : 0;
	int rows = error ? 0 : PQntuples(res);
	struct leaf_of *map = calloc(rows ? (size_t)rows : 1, sizeof(*map));
	int *parts = calloc(k ? k : 1, sizeof(int));
	free(run->leaves);
	run->leaves = calloc(rows ? (size_t)rows : 1, sizeof(*run->leaves));
	run->n_leaves = 0;
	if (error || !map || !parts || !run->leaves || run->got_k != k) {
		snprintf(run->leaves_note, sizeof(run->leaves_note), "cannot tell the neighbours' partitions: %s",
		         error ? error : "out of memory");
		/* the run's result stands, only the split is missing; the
		 * savepoint keeps the transaction usable for the teardown that
		 * follows (a hypopg hide is per session, not rolled back) */
		if (error)
			send_query(run, "ROLLBACK TO SAVEPOINT vecgate_leaves", 0, NULL, NULL);
		free(run->leaves);
		run->leaves = NULL;
		free(map);
		free(parts);
		run_next(run);
		return;
	}
	for (int r = 0; r < rows; r++) {
		const char *schema = PQgetvalue(res, r, 1), *name = PQgetvalue(res, r, 2);
		int l = 0;
		while (l < run->n_leaves && (strcmp(run->leaves[l].schema, schema) || strcmp(run->leaves[l].name, name)))
			l++;
		if (l == run->n_leaves) {
			snprintf(run->leaves[l].schema, sizeof(run->leaves[l].schema), "%s", schema);
			snprintf(run->leaves[l].name, sizeof(run->leaves[l].name), "%s", name);
			run->n_leaves++;
		}
		map[r].id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
		map[r].leaf = l;
	}
	qsort(map, (size_t)rows, sizeof(*map), leaf_by_id);
	double *hits = calloc((size_t)run->n_leaves + 1, sizeof(double)), *want = calloc((size_t)run->n_leaves + 1, sizeof(double));
	if (hits && want) {
		for (size_t i = 0; i < run->set->n; i++) {
			const struct eval_query *q = &run->set->queries[i];
			size_t w = q->n_truth < k ? q->n_truth : k;
			for (size_t j = 0; j < w; j++) {
				struct leaf_of key = {q->truth[j], 0};
				const struct leaf_of *f = rows ? bsearch(&key, map, (size_t)rows, sizeof(*map), leaf_by_id) : NULL;
				parts[j] = f ? f->leaf : -1; /* an eval file's id no row has: counted in no partition */
			}
			part_recall_add(run->got + i * k, run->n_got[i], q->truth, q->n_truth, q->ties, q->n_ties, k, parts,
			                run->n_leaves, hits, want);
		}
		for (int l = 0; l < run->n_leaves; l++) {
			run->leaves[l].hits = hits[l];
			run->leaves[l].want = want[l];
		}
	}
	log_info("eval %s: the true neighbours' partitions: %zu ids in %d partitions, looked up in %.1f ms",
	         run->index_name, run->leaves_ids, run->n_leaves, (now_sec() - run->leaves_sent) * 1000);
	free(hits);
	free(want);
	free(map);
	free(parts);
	run_next(run);
}

/* The partitions of the true neighbours: one statement over their ids. */
static void look_up_leaves(struct eval_run *run, const struct vg_managed_index *mi)
{
	char sql[1400], why[200];
	size_t k = (size_t)mi->k, n = 0;
	for (size_t i = 0; i < run->set->n; i++)
		n += run->set->queries[i].n_truth < k ? run->set->queries[i].n_truth : k;
	int64_t *ids = calloc(n ? n : 1, sizeof(*ids));
	char *arr = malloc(n * 21 + 3);
	if (!ids || !arr || leaves_sql(mi, sql, sizeof(sql), why, sizeof(why)) < 0) {
		snprintf(run->leaves_note, sizeof(run->leaves_note), "cannot tell the neighbours' partitions: %s",
		         ids && arr ? why : "out of memory");
		free(ids);
		free(arr);
		run_next(run);
		return;
	}
	n = 0;
	for (size_t i = 0; i < run->set->n; i++)
		for (size_t j = 0; j < run->set->queries[i].n_truth && j < k; j++)
			ids[n++] = run->set->queries[i].truth[j];
	qsort(ids, n, sizeof(*ids), by_id);
	size_t o = 0, distinct = 0;
	arr[o++] = '{';
	for (size_t i = 0; i < n; i++)
		if (!i || ids[i] != ids[i - 1]) {
			o += (size_t)sprintf(arr + o, "%s%lld", o > 1 ? "," : "", (long long)ids[i]);
			distinct++;
		}
	arr[o++] = '}';
	arr[o] = 0;
	const char *params[] = {arr};
	run->leaves_ids = distinct;
	run->leaves_sent = now_sec();
	send_query(run, "SAVEPOINT vecgate_leaves", 0, NULL, NULL);
	send_query(run, sql, 1, params, leaves_result);
	free(ids);
	free(arr);
}

/* The text of the timed queries: the eval query, behind the run's hint. */
static const char *timed_query(struct eval_run *run, const struct vg_managed_index *mi)
{
	const char *text = eval_text(run, mi);
	if (!run->hint[0])
		return text;
	size_t n = strlen(run->hint) + strlen(text) + 1;
	free(run->timed_sql);
	run->timed_sql = malloc(n);
	if (!run->timed_sql)
		return text;
	snprintf(run->timed_sql, n, "%s%s", run->hint, text);
	return run->timed_sql;
}

static void run_next(struct eval_run *run)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, run->index_name);
	struct eval_set *set = run->set;
	if (!mi) {
		char m[300];
		snprintf(m, sizeof(m), "managed index %s vanished from the configuration", run->index_name);
		finish(run, NULL, m, false);
		return;
	}
	char kbuf[16];
	snprintf(kbuf, sizeof(kbuf), "%d", mi->k);
	if (run->truth_pass) {
		while (run->i < set->n && set->queries[run->i].truth_from_file)
			run->i++; /* ground truth given in the file */
		if (run->i < set->n) {
			const char *params[EVAL_MAX_PARAMS];
			int np = query_params(&set->queries[run->i], kbuf, params);
			send_query(run, eval_text(run, mi), np, params, query_result);
			return;
		}
		/* exact pass done: back to index scans, same snapshot */
		run->truth_pass = false;
		run->i = 0;
		send_query(run, "SET LOCAL enable_indexscan = on", 0, NULL, NULL);
		send_query(run, "SET LOCAL enable_bitmapscan = on", 0, NULL, NULL);
	}
	if (!run->prepared) {
		run->prepared = true;
		for (size_t i = 0; i < mi->n_search_settings; i++) {
			char sql[512];
			const char *names[] = {mi->search_settings[i].name};
			const char *values[] = {mi->search_settings[i].value};
			if (sql_session_settings(names, values, 1, sql, sizeof(sql)) == 0)
				send_query(run, sql, 0, NULL, NULL);
		}
		if (run->generic_plan) {
			plant_generic_plan(run, mi, kbuf);
			return;
		}
		if (run->scans_on[0] && run->no_scans_on[0]) {
			/* a hinted run: its scans are counted from here */
			const char *params[] = {run->scans_on, run->no_scans_on};
			send_query(run, SQL_SCAN_COUNTS, 2, params, scans_before_result);
		}
		if (run->expect_index[0]) {
			char sql[10240];
			snprintf(sql, sizeof(sql), "%sEXPLAIN (FORMAT JSON) %s", run->hint, eval_text(run, mi));
			const char *params[EVAL_MAX_PARAMS];
			int np = query_params(&set->queries[0], kbuf, params);
			send_query(run, sql, np, params, explain_result);
			return;
		}
	}
	if (run->i < set->n) {
		const char *params[EVAL_MAX_PARAMS];
		int np = query_params(&set->queries[run->i], kbuf, params);
		run->sent = now_sec();
		if (run->generic_plan) {
			if (!run->finished && (!run->s || pg_session_execute(run->s, EVAL_STMT, np, params, query_result, run) < 0))
				finish(run, NULL, "maintenance connection unavailable", true);
		} else {
			send_query(run, timed_query(run, mi), np, params, query_result);
		}
		return;
	}
	if (run->scans_on[0] && run->no_scans_on[0] && !run->scans_checked) {
		const char *params[] = {run->scans_on, run->no_scans_on};
		send_query(run, SQL_SCAN_COUNTS, 2, params, scans_result);
		return;
	}
	if (run->per_partition && !run->leaves_looked) {
		run->leaves_looked = true;
		look_up_leaves(run, mi);
		return;
	}
	size_t n_traffic = eval_set_count(set, true), n_file = set->n - n_traffic;
	struct eval_outcome out = {
		.recall = run->recall_sum / (double)set->n,
		.recall_file = n_file ? (run->recall_sum - run->recall_sum_traffic) / (double)n_file : NAN,
		.recall_traffic = n_traffic ? run->recall_sum_traffic / (double)n_traffic : NAN,
		.n_file = n_file,
		.n_traffic = n_traffic,
		.p50_ms = percentile(run->lat_ms, set->n, 50),
		.p95_ms = percentile(run->lat_ms, set->n, 95),
		.plan_index = run->plan_index,
		.truth = run->truth_note,
		.leaves = run->leaves,
		.n_leaves = run->leaves ? run->n_leaves : 0,
		.leaves_note = run->leaves_note,
	};
	if (run->plan_teardown_sql[0])
		send_query(run, run->plan_teardown_sql, 0, NULL, NULL);
	send_query(run, "ROLLBACK", 0, NULL, NULL);
	if (run->generic_plan)
		send_query(run, "DEALLOCATE ALL", 0, NULL, NULL);
	/* the eval's index scans reach pg_stat_user_indexes now, not up to 10 s
	 * later, so that a watch (or an operator) counting the scans of traffic
	 * does not see them arrive afterwards (PostgreSQL 15+) */
	PGconn *conn = run->s ? pg_session_conn(run->s) : NULL;
	if (conn && PQserverVersion(conn) >= 150000)
		send_query(run, "SELECT pg_stat_force_next_flush()", 0, NULL, NULL);
	finish(run, &out, NULL, false);
}

void eval_run_start(struct eval_run *run, struct pg_session *s, const struct vg_managed_index *mi,
                    struct eval_set *set, const struct eval_opts *opts, eval_done_cb done, void *arg)
{
	eval_run_release(run);
	memset(run, 0, sizeof(*run));
	run->s = s;
	snprintf(run->index_name, sizeof(run->index_name), "%s", mi->name);
	run->set = set;
	if (opts) {
		snprintf(run->setup_sql, sizeof(run->setup_sql), "%s", opts->setup_sql ? opts->setup_sql : "");
		snprintf(run->expect_index, sizeof(run->expect_index), "%s", opts->expect_index ? opts->expect_index : "");
		snprintf(run->expect_hint, sizeof(run->expect_hint), "%s", opts->expect_hint ? opts->expect_hint : "");
		run->generic_plan = opts->generic_plan;
		snprintf(run->plan_setup_sql, sizeof(run->plan_setup_sql), "%s", opts->plan_setup_sql ? opts->plan_setup_sql : "");
		snprintf(run->plan_teardown_sql, sizeof(run->plan_teardown_sql), "%s",
		         opts->plan_teardown_sql ? opts->plan_teardown_sql : "");
		snprintf(run->scans_on, sizeof(run->scans_on), "%s", opts->scans_on ? opts->scans_on : "");
		snprintf(run->no_scans_on, sizeof(run->no_scans_on), "%s", opts->no_scans_on ? opts->no_scans_on : "");
		snprintf(run->hint, sizeof(run->hint), "%s", opts->hint ? opts->hint : "");
		run->per_partition = opts->per_partition;
		if (opts->query) {
			run->query = strdup(opts->query);
			snprintf(run->query_schema, sizeof(run->query_schema), "%s", opts->query_schema ? opts->query_schema : "");
			snprintf(run->query_table, sizeof(run->query_table), "%s", opts->query_table ? opts->query_table : "");
		}
	}
	run->done = done;
	run->arg = arg;
	if (opts && opts->query && !run->query) {
		finish(run, NULL, "out of memory", true); /* never the whole table's eval in a partition's place */
		return;
	}
	run->truth_pass = true;
	run->started = now_sec();
	for (size_t i = 0; i < set->n; i++) {
		struct eval_query *q = &set->queries[i];
		run->truth_total += !q->truth_from_file;
		if (!q->truth_from_file) {
			free(q->ties); /* whatever computes the truth this time says which ties count */
			q->ties = NULL;
			q->n_ties = 0;
		}
	}
	run->lat_ms = calloc(set->n ? set->n : 1, sizeof(double));
	if (run->per_partition) {
		run->got_k = (size_t)mi->k;
		run->got = calloc((set->n ? set->n : 1) * run->got_k, sizeof(*run->got));
		run->n_got = calloc(set->n ? set->n : 1, sizeof(*run->n_got));
		if (!run->got || !run->n_got) {
			free(run->got);
			free(run->n_got);
			run->got = NULL;
			run->n_got = NULL;
			snprintf(run->leaves_note, sizeof(run->leaves_note), "out of memory for the per-partition recall");
			run->per_partition = false;
		}
	}
	open_snapshot(run);
	start_truth(run, mi);
}

static void open_snapshot(struct eval_run *run)
{
	send_query(run, "ROLLBACK", 0, NULL, NULL); /* a transaction a failed attempt left open */
	if (run->generic_plan) {
		/* a failed attempt's statement and hides (hypopg's are per session, not transactional) */
		send_query(run, "DEALLOCATE ALL", 0, NULL, NULL);
		if (run->plan_teardown_sql[0])
			send_query(run, run->plan_teardown_sql, 0, NULL, NULL);
	}
	send_query(run, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, NULL);
	if (run->setup_sql[0])
		send_query(run, run->setup_sql, 0, NULL, NULL);
}

void eval_run_release(struct eval_run *run)
{
	free(run->lat_ms);
	run->lat_ms = NULL;
	free(run->timed_sql);
	run->timed_sql = NULL;
	free(run->query);
	run->query = NULL;
	free(run->got);
	run->got = NULL;
	free(run->n_got);
	run->n_got = NULL;
	free(run->leaves);
	run->leaves = NULL;
	run->n_leaves = 0;
	scan_free(run);
}

bool eval_run_abandon(struct eval_run *run)
{
	if (!run->set || run->finished)
		return false;
	run->finished = true; /* no callback; whatever still answers is ignored */
	free(run->lat_ms);
	run->lat_ms = NULL;
	scan_free(run);
	log_info("eval %s: abandoned%s", run->index_name, run->copy_in_flight ? " during its exact scan" : "");
	return true;
}

bool eval_run_progress(const struct eval_run *run, struct eval_progress *out)
{
	if (!run->set || run->finished || !run->lat_ms)
		return false;
	double elapsed = now_sec() - run->started;
	const struct eval_scan *sc = run->scan;
	if (run->truth_pass && sc && sc->topk_ready) {
		/* the scan: rows against the planner's estimate (or a count) */
		out->pass = "ground truth scan";
		out->unit = "rows";
		out->done = (size_t)(sc->rows_taken + sc->rows_null + sc->rows_filtered);
		out->total = sc->rows_total > (double)out->done ? (size_t)sc->rows_total : out->done;
		elapsed = now_sec() - sc->started;
	} else {
		out->pass = run->truth_pass ? "ground truth" : "timed queries";
		out->unit = "queries";
		out->total = (run->method == EVAL_TRUTH_PER_QUERY ? run->truth_total : 0) + run->set->n;
		out->done = run->steps_done < out->total ? run->steps_done : out->total;
		if (run->method == EVAL_TRUTH_SCAN)
			elapsed = now_sec() - run->started; /* the timed pass's own pace is not known apart */
	}
	out->percent = out->total ? 100.0 * (double)out->done / (double)out->total : 0;
	out->eta_s = out->done ? elapsed * (double)(out->total - out->done) / (double)out->done : NAN;
	return true;
}
