/*
 * Measure an index the way the gate needs it: exact ground truth (unless
 * the eval file gives it) and the timed k-NN queries share one REPEATABLE
 * READ snapshot on the owner's session, one statement in flight at a time so
 * that hours of other maintenance work on the loop are never blocked.
 */
#include "proxy/control/eval.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/runtime.h"
#include "routing/gate.h"
#include "routing/rebuild_sql.h"

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

static void run_next(struct eval_run *run);

/* The run ends here, once: success or the first failure. */
static void finish(struct eval_run *run, const struct eval_outcome *out, const char *error, bool transient)
{
	if (run->finished)
		return;
	run->finished = true;
	free(run->lat_ms);
	run->lat_ms = NULL;
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
	} else {
		int64_t got[1024];
		size_t n;
		ids_of(res, got, &n, k < 1024 ? k : 1024);
		run->lat_ms[run->i] = (now - run->sent) * 1000.0;
		double r = recall_at_k(got, n, q->truth, q->n_truth, k);
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
		if (run->expect_index[0]) {
			char sql[8192];
			snprintf(sql, sizeof(sql), "EXPLAIN (FORMAT JSON) %s", mi->eval_query);
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
			send_query(run, mi->eval_query, 2, params, query_result);
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
	};
	if (run->plan_teardown_sql[0])
		send_query(run, run->plan_teardown_sql, 0, NULL, NULL);
	send_query(run, "ROLLBACK", 0, NULL, NULL);
	if (run->generic_plan)
		send_query(run, "DEALLOCATE ALL", 0, NULL, NULL);
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
	}
	run->done = done;
	run->arg = arg;
	run->truth_pass = true;
	run->started = now_sec();
	for (size_t i = 0; i < set->n; i++)
		run->truth_total += !set->queries[i].truth_from_file;
	run->lat_ms = calloc(set->n ? set->n : 1, sizeof(double));
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
	send_query(run, "SET LOCAL enable_indexscan = off", 0, NULL, NULL);
	send_query(run, "SET LOCAL enable_bitmapscan = off", 0, NULL, NULL);
	run_next(run);
}

void eval_run_release(struct eval_run *run)
{
	free(run->lat_ms);
	run->lat_ms = NULL;
}

bool eval_run_progress(const struct eval_run *run, struct eval_progress *out)
{
	if (!run->set || run->finished || !run->lat_ms)
		return false;
	out->pass = run->truth_pass ? "ground truth" : "timed queries";
	out->total = run->truth_total + run->set->n;
	out->done = run->steps_done < out->total ? run->steps_done : out->total;
	out->percent = out->total ? 100.0 * (double)out->done / (double)out->total : 0;
	double elapsed = now_sec() - run->started;
	out->eta_s = out->done ? elapsed * (double)(out->total - out->done) / (double)out->done : NAN;
	return true;
}
