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
#include "routing/knn_query.h"
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
	while (fgets(line, sizeof(line), fp)) {
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

void eval_set_free(struct eval_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->queries[i].vector);
		free(set->queries[i].truth);
		free(set->queries[i].ties);
	}
	free(set->queries);
	memset(set, 0, sizeof(*set));
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
			free(set->queries[i].vector);
			free(set->queries[i].truth);
			free(set->queries[i].ties);
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
	if (run->expect_index[0] && strcmp(run->plan_index, run->expect_index) != 0) {
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
static void plant_generic_plan(struct eval_run *run, const struct vg_managed_index *mi, const char *kbuf)
{
	if (run->scans_on[0] && run->no_scans_on[0]) {
		const char *params[] = {run->scans_on, run->no_scans_on};
		send_query(run, SQL_SCAN_COUNTS, 2, params, scans_before_result);
	}
	if (run->plan_setup_sql[0])
		send_query(run, run->plan_setup_sql, 0, NULL, NULL);
	send_query(run, "SET LOCAL plan_cache_mode = force_generic_plan", 0, NULL, NULL);
	size_t qlen = strlen(mi->eval_query) + 64;
	const char *v = run->set->queries[0].vector;
	size_t vlen = 2 * strlen(v) + 3;
	char *sql = malloc(qlen > vlen + 128 ? qlen : vlen + 128), *lit = malloc(vlen);
	if (!sql || !lit) {
		free(sql);
		free(lit);
		finish(run, NULL, "out of memory", true);
		return;
	}
	snprintf(sql, qlen, "PREPARE " EVAL_STMT " AS %s", mi->eval_query);
	send_query(run, sql, 0, NULL, prepare_result);
	sql_literal(v, lit, vlen);
	snprintf(sql, vlen + 128, "EXPLAIN (FORMAT JSON) EXECUTE " EVAL_STMT "(%s, %s)", lit, kbuf);
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

static int scan_tuple(void *arg, int nfields, const struct copybin_field *f)
{
	struct eval_run *run = arg;
	struct eval_scan *sc = run->scan;
	if (nfields != 2) {
		snprintf(sc->error, sizeof(sc->error), "COPY sent %d columns, not 2", nfields);
		return 1;
	}
	if (f[0].len < 0 || f[1].len < 0) {
		sc->rows_null++;
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
	if (topk_block_commit(sc->filling, id) && !sc->comparing)
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
			char line[1800];
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
	double flops = 2.0 * (double)sc->topk.rows_seen * (double)sc->nq * (double)sc->dim;
	/* GFLOP/s over the whole scan (what a bigger table costs), then the
	 * thread's share: near 100% the kernels bound the scan, well below it
	 * the server's COPY or the decoding on the loop do */
	snprintf(run->truth_note, sizeof(run->truth_note), "one exact scan of %llu rows in %.1f s",
	         (unsigned long long)(sc->topk.rows_seen + sc->rows_null), secs);
	log_info("eval %s: ground truth by one exact scan of %s: %llu rows (%llu with a NULL id or vector skipped), "
	         "%zu queries x %zu dims %s k=%zu, %.1f MB read, %.2f s, %.1f GFLOP/s (%s kernels, on a thread busy %.0f%% "
	         "of the scan), %.1f MB held%s",
	         run->index_name, sc->q.table, (unsigned long long)(sc->topk.rows_seen + sc->rows_null),
	         (unsigned long long)sc->rows_null, sc->nq, sc->dim, vdist_operator(sc->topk.metric), k,
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

/* The catalog agreed: parse the eval vectors as the column's type, set up
 * the heaps and the decoder, start the COPY. */
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
	if (copybin_init(&sc->dec, SCAN_MAX_TUPLE, 2) < 0) {
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
	if (knn_query_parse(mi->eval_query, &sc->q, why, sizeof(why)) < 0) {
		char m[400];
		snprintf(m, sizeof(m), "eval_query is not a plain k-NN query: %s", why);
		scan_unavailable(run, m, false);
		return;
	}
	if (strcmp(sc->q.table, mi->table) != 0 || (sc->q.schema[0] && strcmp(sc->q.schema, mi->schema) != 0)) {
		snprintf(why, sizeof(why), "eval_query reads %s%s%s, not the managed table %s.%s", sc->q.schema,
		         sc->q.schema[0] ? "." : "", sc->q.table, mi->schema, mi->table);
		scan_unavailable(run, why, false);
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
	char rel[420];
	knn_relation(&sc->q, rel, sizeof(rel));
	const char *params[] = {rel, sc->q.id_column, sc->q.vector_column};
	send_query(run, KNN_PROBE_SQL, 3, params, probe_result);
}

/* The text of the timed queries: the eval query, behind the run's hint. */
static const char *timed_query(struct eval_run *run, const struct vg_managed_index *mi)
{
	if (!run->hint[0])
		return mi->eval_query;
	size_t n = strlen(run->hint) + strlen(mi->eval_query) + 1;
	free(run->timed_sql);
	run->timed_sql = malloc(n);
	if (!run->timed_sql)
		return mi->eval_query;
	snprintf(run->timed_sql, n, "%s%s", run->hint, mi->eval_query);
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
			const char *params[] = {set->queries[run->i].vector, kbuf};
			send_query(run, mi->eval_query, 2, params, query_result);
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
			snprintf(sql, sizeof(sql), "%sEXPLAIN (FORMAT JSON) %s", run->hint, mi->eval_query);
			const char *params[] = {set->queries[0].vector, kbuf};
			send_query(run, sql, 2, params, explain_result);
			return;
		}
	}
	if (run->i < set->n) {
		const char *params[] = {set->queries[run->i].vector, kbuf};
		run->sent = now_sec();
		if (run->generic_plan) {
			if (!run->finished && (!run->s || pg_session_execute(run->s, EVAL_STMT, 2, params, query_result, run) < 0))
				finish(run, NULL, "maintenance connection unavailable", true);
		} else {
			send_query(run, timed_query(run, mi), 2, params, query_result);
		}
		return;
	}
	if (run->scans_on[0] && run->no_scans_on[0] && !run->scans_checked) {
		const char *params[] = {run->scans_on, run->no_scans_on};
		send_query(run, SQL_SCAN_COUNTS, 2, params, scans_result);
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
	}
	run->done = done;
	run->arg = arg;
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
		out->done = (size_t)(sc->rows_taken + sc->rows_null);
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
