/*
 * Rebuild coordinator: the runbook of DESIGN.md as a job that cannot be
 * skipped.  Each state's step is a short chain of SQL on the job's
 * maintenance session; results feed job_next() (routing/rebuild_job.c),
 * whose action says what cleanup or rollback happens on the way.  The build
 * runs on its own session while a second one polls
 * pg_stat_progress_create_index, so progress, cancel and the admin API stay
 * responsive for the hours a build can take.
 */
#include "proxy/rebuild.h"
#include "proxy/routes.h"
#include "proxy/pgasync.h"
#include "proxy/vecgate.h"
#include "routing/gate.h"
#include "routing/indexdef.h"
#include "routing/rebuild_sql.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eval_query {
	char *vector;
	int64_t *truth;
	size_t n_truth;
	bool truth_from_file; /* else recomputed exactly in every eval run */
};

struct history_entry {
	double at;
	enum job_state from, to;
	enum job_event event;
	char message[240];
};

enum eval_purpose { EVAL_BASELINE, EVAL_VERIFY, EVAL_WATCH, EVAL_DRIFT };

struct rebuild_job {
	struct rebuild_job *next;
	int id;
	char *index_name;
	enum job_state state;
	int attempts;
	char message[1024];
	double created, updated, state_since; /* monotonic seconds */
	double wall_created;                  /* epoch seconds */

	char *schema, *table, *live, *fresh, *retired, *live_def;
	bool superuser;
	enum swap_mode mode;
	long long live_size;

	struct eval_query *queries;
	size_t n_queries;
	double base_recall, base_p50, base_p95, new_recall, new_p50, new_p95;
	bool have_base, have_new;
	double swap_ms;
	int swap_tries;
	bool approved;

	/* traffic through vecgate on the index's database: before = job start to
	 * build start (the old index, reads not yet moved by the route policy),
	 * after = swap to the end of watch */
	struct traffic_stats t_pre_start, t_pre_end, t_swap;
	bool have_pre_end;
	double pre_err_rate, pre_mean_ms, post_err_rate, post_mean_ms;
	uint64_t post_requests;
	bool have_watch;

	char phase[128];
	long long blocks_done, blocks_total, tuples_done, tuples_total;
	double percent, eta_s, build_started;

	struct pg_session *maint, *poll;
	struct event *timer, *poll_timer;
	int build_pid;
	bool building;

	int pf_stage; /* enum preflight_stage: which preflight check runs */

	/* the eval run in progress */
	enum eval_purpose purpose;
	size_t eval_i;
	bool eval_truth_pass;
	bool eval_prepared;
	double eval_sent;
	double *lat_ms;
	double recall_sum;
	char explain_index[128];

	struct history_entry hist[64];
	int n_hist;

	/* durable state: a session that holds the index's advisory lock */
	struct pg_session *state_s;
	long long db_id;
	bool persistent;
	bool resuming;
	enum job_state resume_to;

	bool drift; /* not a rebuild: one eval run of the recall-drift monitor */
};

static struct rebuild_job *jobs;
static int next_job_id;

static void run_step(struct rebuild_job *job);
static void drift_measured(struct rebuild_job *job, double recall);
static void drift_failed(struct rebuild_job *job, const char *why);
static void drift_rebase(const char *index_name, double recall);
static void drift_clear_proposal(const char *index_name);
static void drift_tick(evutil_socket_t fd, short what, void *arg);
static void job_event(struct rebuild_job *job, enum job_event ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static const struct vg_managed_index *job_index(const struct rebuild_job *job)
{
	return config_find_index(vg.cfg, job->index_name);
}

/* ---- sessions ---- */

static struct pg_session *open_session(struct rebuild_job *job, pg_state_cb on_connect, pg_state_cb on_lost,
                                       const char *role)
{
	const struct vg_managed_index *mi = job_index(job);
	if (!mi)
		return NULL;
	const struct vg_backend *be = config_find_backend(vg.cfg, mi->backend);
	if (!be)
		return NULL;
	char port[16], appname[128];
	snprintf(port, sizeof(port), "%d", be->port);
	snprintf(appname, sizeof(appname), "vecgate %s %s", role, mi->name);
	const char *kw[] = {"host", "port", "dbname", "user", "password", "application_name", NULL};
	const char *val[] = {be->host, port, mi->database, mi->user ? mi->user : "postgres",
	                     mi->password ? mi->password : "", appname, NULL};
	return pg_session_connect(vg.base, kw, val, vg.cfg->timeouts.server_connect, on_connect, on_lost, job);
}

static void stop_polling(struct rebuild_job *job)
{
	if (job->poll_timer)
		event_del(job->poll_timer);
	pg_session_close(job->poll);
	job->poll = NULL;
	job->building = false;
}

static void close_sessions(struct rebuild_job *job)
{
	stop_polling(job);
	pg_session_close(job->maint);
	job->maint = NULL;
}

static void maint_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	/* the session frees itself after this call: forget it first */
	job->maint = NULL;
	stop_polling(job);
	job_event(job, JEV_TRANSIENT, "maintenance connection lost: %s", error ? error : "?");
}

static void cleanup_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	job->maint = NULL;
	log_warn("rebuild %d: cleanup connection failed: %s", job->id, error ? error : "?");
}

static void close_when_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	(void)error;
	pg_session_close(job->maint);
	job->maint = NULL;
}

/* statement_timeout 0 so hours of build are fine; then the operator's settings */
static void apply_settings(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	pg_session_query(job->maint, "SET statement_timeout = 0", 0, NULL, NULL, NULL);
	for (size_t i = 0; mi && i < mi->n_maintenance; i++) {
		char sql[512];
		const char *names[] = {mi->maintenance[i].name};
		const char *values[] = {mi->maintenance[i].value};
		if (sql_session_settings(names, values, 1, sql, sizeof(sql)) == 0)
			pg_session_query(job->maint, sql, 0, NULL, NULL, NULL);
	}
}

/* ---- helpers ---- */

static bool transient_sqlstate(const PGresult *res)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!st)
		return true; /* no result at all: the connection went away */
	return !strncmp(st, "08", 2) || !strncmp(st, "53", 2) || !strncmp(st, "57", 2) || !strncmp(st, "40", 2) ||
	       !strcmp(st, "55P03") || !strcmp(st, "55006");
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

static void schedule(struct rebuild_job *job, double seconds)
{
	struct timeval tv = {(long)seconds, (long)((seconds - (long)seconds) * 1e6)};
	evtimer_add(job->timer, &tv);
}

static void query(struct rebuild_job *job, const char *sql, int nparams, const char *const *params, pg_result_cb cb)
{
	if (!job->maint || pg_session_query(job->maint, sql, nparams, params, cb, job) < 0)
		job_event(job, JEV_TRANSIENT, "maintenance connection unavailable");
}

/* ---- eval file ---- */

static int load_eval(struct rebuild_job *job, const char *path, char *err, size_t errlen)
{
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
		if (job->n_queries == cap) {
			cap = cap ? cap * 2 : 64;
			struct eval_query *n = realloc(job->queries, cap * sizeof(*n));
			if (!n)
				break;
			job->queries = n;
		}
		struct eval_query *q = &job->queries[job->n_queries++];
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
	if (!job->n_queries) {
		snprintf(err, errlen, "eval_file %s holds no queries", path);
		return -1;
	}
	return 0;
}

/* ---- eval runs: exact ground truth (if missing), then timed k-NN ---- */

static void eval_next(struct rebuild_job *job);

static void eval_finish(struct rebuild_job *job)
{
	double p50 = percentile(job->lat_ms, job->n_queries, 50);
	double p95 = percentile(job->lat_ms, job->n_queries, 95);
	double recall = job->recall_sum / (double)job->n_queries;
	free(job->lat_ms);
	job->lat_ms = NULL;
	query(job, "ROLLBACK", 0, NULL, NULL);
	const struct vg_managed_index *mi = job_index(job);
	switch (job->purpose) {
	case EVAL_BASELINE:
		job->base_recall = recall;
		job->base_p50 = p50;
		job->base_p95 = p95;
		job->have_base = true;
		job_event(job, JEV_STEP_OK, "baseline: recall@%d %.4f, p50 %.2f ms, p95 %.2f ms", mi ? mi->k : 0, recall,
		          p50, p95);
		return;
	case EVAL_VERIFY: {
		job->new_recall = recall;
		job->new_p50 = p50;
		job->new_p95 = p95;
		job->have_new = true;
		struct gate_input in = {job->base_recall, job->base_p95, recall, p95, mi ? mi->recall_tolerance : 0,
		                        mi ? mi->latency_tolerance : 0};
		struct gate_result gr;
		gate_evaluate(&in, &gr);
		if (gr.pass)
			job_event(job, JEV_STEP_OK, "gate passed: %s (plan used %s)", gr.reason, job->explain_index);
		else
			job_event(job, JEV_GATE_FAILED, "gate refused the new index: %s; the live index is untouched",
			          gr.reason);
		return;
	}
	case EVAL_DRIFT:
		drift_measured(job, recall);
		return;
	case EVAL_WATCH: {
		struct gate_input in = {job->base_recall, job->base_p95, recall, p95, mi ? mi->recall_tolerance : 0,
		                        mi ? 2 * mi->latency_tolerance + 1 : 1};
		struct gate_result gr;
		gate_evaluate(&in, &gr);
		/* what applications saw through vecgate, before and after the swap */
		struct traffic_stats now;
		pools_traffic(mi ? mi->database : "", &now);
		uint64_t pre_n = job->t_pre_end.requests - job->t_pre_start.requests;
		uint64_t post_n = now.requests - job->t_swap.requests;
		uint64_t pre_e = job->t_pre_end.errors - job->t_pre_start.errors, post_e = now.errors - job->t_swap.errors;
		job->pre_err_rate = pre_n ? (double)pre_e / (double)pre_n : 0;
		job->post_err_rate = post_n ? (double)post_e / (double)post_n : 0;
		job->pre_mean_ms =
			pre_n ? (job->t_pre_end.latency_sum - job->t_pre_start.latency_sum) * 1000 / (double)pre_n : NAN;
		job->post_mean_ms = post_n ? (now.latency_sum - job->t_swap.latency_sum) * 1000 / (double)post_n : NAN;
		job->post_requests = post_n;
		job->have_watch = true;
		double max_rise = mi ? mi->watch_error_rate_increase : 0.01;
		bool errors_up = post_n >= 10 && job->post_err_rate > job->pre_err_rate + max_rise;
		bool slower = pre_n >= 20 && post_n >= 20 && mi &&
		              job->post_mean_ms > job->pre_mean_ms * (1 + 2 * mi->latency_tolerance) + 1.0;
		char traffic[300];
		snprintf(traffic, sizeof(traffic),
		         "through vecgate %llu requests, error rate %.2f%% (before %.2f%%), mean %.2f ms (before %.2f ms)",
		         (unsigned long long)post_n, job->post_err_rate * 100, job->pre_err_rate * 100, job->post_mean_ms,
		         job->pre_mean_ms);
		if (job->mode == SWAP_RENAME || (gr.pass && !errors_up && !slower))
			job_event(job, JEV_STEP_OK, "watch: %s; eval recall %.4f, p95 %.2f ms", traffic, recall, p95);
		else
			job_event(job, JEV_DEGRADED, "watch: degraded after the swap (%s): rolling back",
			          errors_up ? traffic : slower ? traffic : gr.reason);
		return;
	}
	}
}

static void ids_of(const PGresult *res, int64_t *out, size_t *n, size_t max)
{
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++)
		out[(*n)++] = strtoll(PQgetvalue(res, r, 0), NULL, 10);
}

static void eval_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	double now = now_sec();
	if (error) {
		job_event(job, transient_sqlstate(res) ? JEV_TRANSIENT : JEV_FATAL, "eval query failed: %s", error);
		return;
	}
	const struct vg_managed_index *mi = job_index(job);
	size_t k = mi ? (size_t)mi->k : 10;
	struct eval_query *q = &job->queries[job->eval_i];
	if (job->eval_truth_pass) {
		free(q->truth);
		q->truth = calloc(k + 1, sizeof(int64_t));
		if (q->truth)
			ids_of(res, q->truth, &q->n_truth, k);
	} else {
		int64_t got[1024];
		size_t n;
		ids_of(res, got, &n, k < 1024 ? k : 1024);
		job->lat_ms[job->eval_i] = (now - job->eval_sent) * 1000.0;
		job->recall_sum += recall_at_k(got, n, q->truth, q->n_truth, k);
	}
	job->eval_i++;
	eval_next(job);
}

static void explain_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job_event(job, JEV_FATAL, "EXPLAIN of the eval query failed: %s", error);
		return;
	}
	const char *plan = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
	const char *p = strstr(plan, "\"Index Name\": \"");
	job->explain_index[0] = 0;
	if (p) {
		p += 15;
		snprintf(job->explain_index, sizeof(job->explain_index), "%.*s", (int)strcspn(p, "\""), p);
	}
	if (strcmp(job->explain_index, job->fresh) != 0) {
		query(job, "ROLLBACK", 0, NULL, NULL);
		job_event(job, JEV_FATAL,
		          "verify: EXPLAIN shows the eval query served by %s, not the new index %s; cannot measure it%s",
		          job->explain_index[0] ? job->explain_index : "a sequential scan", job->fresh,
		          job->superuser ? "" : " (without superuser vecgate cannot hide the live index from the planner)");
		return;
	}
	eval_next(job);
}

static void eval_next(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	if (!mi) {
		job_event(job, JEV_FATAL, "managed index %s vanished from the configuration", job->index_name);
		return;
	}
	char kbuf[16];
	snprintf(kbuf, sizeof(kbuf), "%d", mi->k);
	if (job->eval_truth_pass) {
		while (job->eval_i < job->n_queries && job->queries[job->eval_i].truth_from_file)
			job->eval_i++; /* ground truth given in the file */
		if (job->eval_i < job->n_queries) {
			const char *params[] = {job->queries[job->eval_i].vector, kbuf};
			query(job, mi->eval_query, 2, params, eval_result);
			return;
		}
		/* exact pass done: back to index scans, same snapshot */
		job->eval_truth_pass = false;
		job->eval_i = 0;
		query(job, "SET LOCAL enable_indexscan = on", 0, NULL, NULL);
		query(job, "SET LOCAL enable_bitmapscan = on", 0, NULL, NULL);
	}
	if (!job->eval_prepared) {
		job->eval_prepared = true;
		for (size_t i = 0; i < mi->n_search_settings; i++) {
			char sql[512];
			const char *names[] = {mi->search_settings[i].name};
			const char *values[] = {mi->search_settings[i].value};
			if (sql_session_settings(names, values, 1, sql, sizeof(sql)) == 0)
				query(job, sql, 0, NULL, NULL);
		}
		if (job->purpose == EVAL_VERIFY) {
			char sql[8192];
			snprintf(sql, sizeof(sql), "EXPLAIN (FORMAT JSON) %s", mi->eval_query);
			const char *params[] = {job->queries[0].vector, kbuf};
			query(job, sql, 2, params, explain_result);
			return;
		}
	}
	if (job->eval_i < job->n_queries) {
		const char *params[] = {job->queries[job->eval_i].vector, kbuf};
		job->eval_sent = now_sec();
		query(job, mi->eval_query, 2, params, eval_result);
		return;
	}
	eval_finish(job);
}

/* Start an eval run.  Exact ground truth (unless given in the eval file)
 * and the timed k-NN queries share one REPEATABLE READ snapshot, so rows
 * ingested meanwhile cannot make a good index look like it lost recall.
 * Verify also hides the live index from the planner inside the same
 * transaction (DESIGN fact 2), so the measured plans use the new one. */
static void eval_start(struct rebuild_job *job, enum eval_purpose purpose)
{
	job->purpose = purpose;
	job->eval_i = 0;
	job->recall_sum = 0;
	free(job->lat_ms);
	job->lat_ms = calloc(job->n_queries, sizeof(double));
	job->eval_truth_pass = true;
	job->eval_prepared = false;
	query(job, "ROLLBACK", 0, NULL, NULL); /* a transaction a failed attempt left open */
	query(job, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, NULL);
	if (purpose == EVAL_VERIFY && job->superuser) {
		char sql[1100];
		if (sql_set_index_valid(job->schema, job->live, false, sql, sizeof(sql)) == 0)
			query(job, sql, 0, NULL, NULL);
	}
	query(job, "SET LOCAL enable_indexscan = off", 0, NULL, NULL);
	query(job, "SET LOCAL enable_bitmapscan = off", 0, NULL, NULL);
	eval_next(job);
}

/* ---- steps ---- */

static void preflight_result(void *arg, PGresult *res, const char *error);
static void resume_continue(struct rebuild_job *job);

enum preflight_stage { PF_SUPER, PF_INDEX, PF_INVALID, PF_RUNNING, PF_OLD_XACTS, PF_SPACE, PF_DONE };
static void preflight_next(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	char age[32];
	switch (job->pf_stage) {
	case PF_SUPER:
		query(job, SQL_IS_SUPERUSER, 0, NULL, preflight_result);
		return;
	case PF_INDEX: {
		char q[700];
		sql_qualified(job->schema, job->live, q, sizeof(q));
		const char *params[] = {q};
		query(job, SQL_INDEX_INFO, 1, params, preflight_result);
		return;
	}
	case PF_INVALID:
	case PF_RUNNING: {
		char q[700];
		sql_qualified(job->schema, job->table, q, sizeof(q));
		const char *params[] = {q};
		query(job, job->pf_stage == PF_INVALID ? SQL_INVALID_INDEXES : SQL_BUILDS_RUNNING, 1, params,
		      preflight_result);
		return;
	}
	case PF_OLD_XACTS: {
		snprintf(age, sizeof(age), "%g", mi ? mi->max_transaction_age : 300);
		const char *params[] = {age};
		query(job, SQL_OLD_TRANSACTIONS, 1, params, preflight_result);
		return;
	}
	case PF_SPACE:
		if (mi && mi->free_space_query) {
			query(job, mi->free_space_query, 0, NULL, preflight_result);
			return;
		}
		if (mi && mi->free_space_bytes && (long long)mi->free_space_bytes < 2 * job->live_size) {
			job_event(job, JEV_FATAL,
			          "preflight: %zu bytes free, the build needs about %lld (2x the live index %s); free space "
			          "or raise free_space_bytes if the figure is wrong",
			          mi->free_space_bytes, 2 * job->live_size, job->live);
			return;
		}
		job->pf_stage = PF_DONE;
		/* fall through */
	case PF_DONE:
		job_event(job, JEV_STEP_OK, "preflight passed (swap mode %s)", job->mode == SWAP_FLIP ? "flip" : "rename");
		return;
	}
}

static void preflight_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	const struct vg_managed_index *mi = job_index(job);
	if (error) {
		job_event(job, transient_sqlstate(res) ? JEV_TRANSIENT : JEV_FATAL, "preflight query failed: %s", error);
		return;
	}
	char list[700] = "";
	size_t l = 0;
	switch (job->pf_stage) {
	case PF_SUPER:
		job->superuser = PQntuples(res) && !strcmp(PQgetvalue(res, 0, 0), "t");
		if (mi && mi->swap_mode == VG_SWAP_FLIP && !job->superuser) {
			job_event(job, JEV_FATAL, "preflight: swap_mode flip needs a superuser maintenance role (%s is not)",
			          mi->user ? mi->user : "postgres");
			return;
		}
		job->mode = (mi && mi->swap_mode == VG_SWAP_RENAME) || !job->superuser ? SWAP_RENAME : SWAP_FLIP;
		break;
	case PF_INDEX:
		if (PQntuples(res) != 1) {
			job_event(job, JEV_FATAL, "preflight: index %s.%s not found", job->schema, job->live);
			return;
		}
		set_str(&job->live_def, PQgetvalue(res, 0, 2));
		job->live_size = atoll(PQgetvalue(res, 0, 5));
		if (job->resuming) {
			resume_continue(job);
			return;
		}
		if (strcmp(PQgetvalue(res, 0, 3), "t")) {
			job_event(job, JEV_FATAL, "preflight: the live index %s is itself invalid; rebuild it by hand first",
			          job->live);
			return;
		}
		if (!job->superuser && strcmp(PQgetvalue(res, 0, 7), "t")) {
			job_event(job, JEV_FATAL, "preflight: role %s does not own %s.%s, so it cannot build or rename its "
			          "indexes; use the table owner or a superuser", mi && mi->user ? mi->user : "postgres",
			          job->schema, job->table);
			return;
		}
		if (!job->superuser && strcmp(PQgetvalue(res, 0, 6), "t")) {
			job_event(job, JEV_FATAL, "preflight: role %s may not create in schema %s (GRANT CREATE ON SCHEMA %s "
			          "TO %s)", mi && mi->user ? mi->user : "postgres", job->schema, job->schema,
			          mi && mi->user ? mi->user : "postgres");
			return;
		}
		break;
	case PF_INVALID:
		for (int r = 0; r < PQntuples(res); r++) {
			const char *name = PQgetvalue(res, r, 0);
			bool ours = !strncmp(name, job->live, strlen(job->live)) && strstr(name, "_vg");
			if (ours && mi && mi->drop_invalid) {
				char sql[800];
				sql_drop_index_concurrently(job->schema, name, sql, sizeof(sql));
				query(job, sql, 0, NULL, NULL);
				log_info("rebuild %d: dropping leftover invalid index %s", job->id, name);
				continue;
			}
			l += (size_t)snprintf(list + l, l < sizeof(list) ? sizeof(list) - l : 0, "%s%s", l ? ", " : "", name);
		}
		if (l) {
			job_event(job, JEV_FATAL,
			          "preflight: invalid indexes left on %s.%s by earlier failed builds: %s. Drop them with DROP "
			          "INDEX CONCURRENTLY (or set drop_invalid: true)",
			          job->schema, job->table, list);
			return;
		}
		break;
	case PF_RUNNING:
		if (PQntuples(res)) {
			job_event(job, JEV_FATAL,
			          "preflight: CREATE INDEX is already running on %s.%s (pid %s, %s); wait for it or cancel it",
			          job->schema, job->table, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
			return;
		}
		break;
	case PF_OLD_XACTS:
		for (int r = 0; r < PQntuples(res) && r < 8; r++)
			l += (size_t)snprintf(list + l, l < sizeof(list) ? sizeof(list) - l : 0, "%spid %s (%.0fs, %s)",
			                      l ? ", " : "", PQgetvalue(res, r, 0), atof(PQgetvalue(res, r, 1)),
			                      PQgetvalue(res, r, 2));
		if (l) {
			job_event(job, JEV_FATAL,
			          "preflight: transactions older than %.0fs would stall CREATE INDEX CONCURRENTLY (it waits "
			          "for them): %s. End them or raise max_transaction_age",
			          mi ? mi->max_transaction_age : 0, list);
			return;
		}
		break;
	case PF_SPACE: {
		long long free_bytes = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : 0;
		if (free_bytes < 2 * job->live_size) {
			job_event(job, JEV_FATAL,
			          "preflight: free_space_query reports %lld bytes free; the build needs about %lld (2x the "
			          "live index)",
			          free_bytes, 2 * job->live_size);
			return;
		}
		job->pf_stage = PF_DONE - 1;
		break;
	}
	case PF_DONE:
		return;
	}
	job->pf_stage++;
	preflight_next(job);
}

/* build: progress polling on a second session */

static void progress_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res))
		return;
	snprintf(job->phase, sizeof(job->phase), "%s", PQgetvalue(res, 0, 0));
	job->blocks_done = atoll(PQgetvalue(res, 0, 1));
	job->blocks_total = atoll(PQgetvalue(res, 0, 2));
	job->tuples_done = atoll(PQgetvalue(res, 0, 3));
	job->tuples_total = atoll(PQgetvalue(res, 0, 4));
	double f = 0;
	if (job->blocks_total > 0 && job->blocks_done <= job->blocks_total && strstr(job->phase, "building"))
		f = (double)job->blocks_done / (double)job->blocks_total;
	else if (job->tuples_total > 0)
		f = (double)job->tuples_done / (double)job->tuples_total;
	/* the phases after "building" (validation, waiting) are the last stretch */
	if (strstr(job->phase, "validation") || strstr(job->phase, "waiting for old"))
		f = 0.9 + 0.1 * f;
	else
		f *= 0.9;
	if (f > job->percent / 100)
		job->percent = f * 100;
	double elapsed = now_sec() - job->build_started;
	job->eta_s = job->percent > 1 ? elapsed * (100 - job->percent) / job->percent : NAN;
}

static void poll_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rebuild_job *job = arg;
	if (!job->building || !job->poll)
		return;
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", job->build_pid);
	const char *params[] = {pid};
	if (pg_session_idle(job->poll))
		pg_session_query(job->poll, SQL_BUILD_PROGRESS, 1, params, progress_result, job);
	struct timeval tv = {1, 0};
	evtimer_add(job->poll_timer, &tv);
}

static void poll_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	(void)error;
	job->poll = NULL; /* progress stops; the build goes on */
}

static void poll_connected(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job->poll = NULL;
		return;
	}
	poll_tick(-1, 0, job);
}

static void build_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	stop_polling(job);
	if (error) {
		job_event(job, transient_sqlstate(res) ? JEV_TRANSIENT : JEV_FATAL, "CREATE INDEX CONCURRENTLY failed: %s",
		          error);
		return;
	}
	job->percent = 100;
	job->eta_s = 0;
	snprintf(job->phase, sizeof(job->phase), "done");
	job_event(job, JEV_STEP_OK, "built %s in %.1fs", job->fresh, now_sec() - job->build_started);
}

static void start_build(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	if (!job->have_pre_end) {
		pools_traffic(mi ? mi->database : "", &job->t_pre_end);
		job->have_pre_end = true;
	}
	struct index_param ov[32];
	int n = 0;
	for (size_t i = 0; mi && i < mi->n_with && n < 32; i++, n++) {
		ov[n].name = mi->with[i].name;
		ov[n].value = mi->with[i].value;
	}
	char def[8192], err[256];
	if (indexdef_rewrite(job->live_def, job->fresh, ov, n, def, sizeof(def), err, sizeof(err)) < 0) {
		job_event(job, JEV_FATAL, "cannot derive the new definition from \"%s\": %s", job->live_def, err);
		return;
	}
	/* the new index lives in the table's schema: qualify nothing else */
	log_info("rebuild %d: %s", job->id, def);
	job->build_pid = pg_session_backend_pid(job->maint);
	job->build_started = now_sec();
	job->percent = 0;
	job->eta_s = NAN;
	snprintf(job->phase, sizeof(job->phase), "starting");
	job->building = true;
	query(job, def, 0, NULL, build_result);
	if (!job->poll_timer)
		job->poll_timer = evtimer_new(vg.base, poll_tick, job);
	job->poll = open_session(job, poll_connected, poll_lost, "progress");
}

static void swap_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job->swap_ms = (now_sec() - job->eval_sent) * 1000.0;
	if (error) {
		query(job, "ROLLBACK", 0, NULL, NULL);
		job_event(job, transient_sqlstate(res) ? JEV_TRANSIENT : JEV_FATAL,
		          "swap attempt %d did not get its locks in time (%s); retrying with backoff", job->attempts, error);
		return;
	}
	const struct vg_managed_index *mi = job_index(job);
	pools_traffic(mi ? mi->database : "", &job->t_swap);
	if (job->mode == SWAP_RENAME) {
		/* without superuser the old index must go for the planner to move */
		char sql[800];
		sql_drop_index_concurrently(job->schema, job->retired, sql, sizeof(sql));
		query(job, sql, 0, NULL, NULL);
	}
	job_event(job, JEV_STEP_OK, "swapped in %.2f ms (%s mode%s)", job->swap_ms,
	          job->mode == SWAP_FLIP ? "flip" : "rename",
	          job->mode == SWAP_FLIP ? ", old index kept for instant rollback" : "; old index dropped, no rollback");
}

static void start_swap(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	struct swap_names n = {job->schema, job->table, job->live, job->fresh, job->retired,
	                       mi ? mi->lock_timeout_ms : 50};
	char sql[4096];
	if (sql_swap(&n, job->mode, sql, sizeof(sql)) < 0) {
		job_event(job, JEV_FATAL, "swap statement too long");
		return;
	}
	job->swap_tries++;
	job->eval_sent = now_sec();
	query(job, sql, 0, NULL, swap_result);
}

static void start_verify(struct rebuild_job *job)
{
	char sql[1024], q[700];
	sql_qualified(job->schema, job->table, q, sizeof(q));
	snprintf(sql, sizeof(sql), "ANALYZE %s", q);
	query(job, "ROLLBACK", 0, NULL, NULL);
	query(job, sql, 0, NULL, NULL);
	eval_start(job, EVAL_VERIFY);
}

static void step_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rebuild_job *job = arg;
	if (job->state == JOB_WATCH) {
		eval_start(job, EVAL_WATCH);
		return;
	}
	if (job->state == JOB_RETAIN) {
		job_event(job, JEV_STEP_OK, "retention over: dropping %s", job->retired);
		return;
	}
	run_step(job);
}

static void maint_connected(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job->maint = NULL;
		job_event(job, JEV_TRANSIENT, "cannot open the maintenance connection: %s", error);
		return;
	}
	apply_settings(job);
	run_step(job);
}

static void run_step(struct rebuild_job *job)
{
	if (job_is_terminal(job->state))
		return;
	if (!job->maint) {
		job->maint = open_session(job, maint_connected, maint_lost, "rebuild");
		if (!job->maint)
			job_event(job, JEV_FATAL, "cannot start a maintenance connection (check the managed index's backend)");
		return;
	}
	if (!pg_session_connected(job->maint))
		return; /* still connecting: maint_connected runs the step */
	const struct vg_managed_index *mi = job_index(job);
	switch (job->state) {
	case JOB_PREFLIGHT:
		pools_traffic(mi ? mi->database : "", &job->t_pre_start);
		job->pf_stage = PF_SUPER;
		preflight_next(job);
		return;
	case JOB_BASELINE:
		eval_start(job, EVAL_BASELINE);
		return;
	case JOB_BUILD:
		start_build(job);
		return;
	case JOB_VERIFY:
		start_verify(job);
		return;
	case JOB_SWAP:
		if (mi && mi->approve_swap && !job->approved) {
			snprintf(job->message, sizeof(job->message),
			         "verified; waiting for approval to swap (vecgatectl approve %d)", job->id);
			return;
		}
		start_swap(job);
		return;
	case JOB_WATCH:
		schedule(job, mi ? mi->watch_seconds : 60);
		return;
	case JOB_RETAIN:
		schedule(job, job->mode == SWAP_RENAME ? 0 : (mi ? mi->retention_seconds : 86400));
		return;
	default:
		return;
	}
}

/* ---- actions on the way between states ---- */

static void drop_index_async(struct rebuild_job *job, const char *name)
{
	char sql[800];
	sql_drop_index_concurrently(job->schema, name, sql, sizeof(sql));
	if (job->maint && pg_session_connected(job->maint))
		query(job, sql, 0, NULL, NULL);
	else
		log_warn("rebuild %d: %s must be dropped by hand: %s", job->id, name, sql);
}

/* A build still running on the maintenance session is cancelled, the
 * session replaced: DROP INDEX CONCURRENTLY cannot share it. */
static void stop_running_build(struct rebuild_job *job)
{
	if (!job->building || !job->maint)
		return;
	PGconn *conn = pg_session_conn(job->maint);
	if (conn) {
		PGcancel *c = PQgetCancel(conn);
		char err[256];
		if (c) {
			PQcancel(c, err, sizeof(err));
			PQfreeCancel(c);
		}
	}
	close_sessions(job);
}

static void retry_when_clean(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	(void)error;
	const struct vg_managed_index *mi = job_index(job);
	schedule(job, job_backoff_seconds(job->attempts - 1, mi ? mi->backoff_seconds : 2, 300));
}

static void perform(struct rebuild_job *job, enum job_state from, enum job_action action)
{
	switch (action) {
	case JACT_DROP_NEW_INDEX: {
		stop_running_build(job);
		if (!job->maint)
			job->maint = open_session(job, NULL, cleanup_lost, "cleanup");
		char sql[800];
		sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
		if (job->maint) {
			pg_session_query(job->maint, "ROLLBACK", 0, NULL, NULL, NULL);
			pg_session_query(job->maint, sql, 0, NULL, NULL, NULL);
		} else {
			log_warn("rebuild %d: drop %s by hand: %s", job->id, job->fresh, sql);
		}
		break;
	}
	case JACT_ROLLBACK_SWAP: {
		if (job->mode != SWAP_FLIP)
			break;
		const struct vg_managed_index *mi = job_index(job);
		struct swap_names n = {job->schema, job->table, job->live, job->fresh, job->retired,
		                       mi ? mi->lock_timeout_ms * 10 : 500};
		char sql[4096];
		sql_rollback(&n, sql, sizeof(sql));
		if (!job->maint)
			job->maint = open_session(job, NULL, cleanup_lost, "rollback");
		if (job->maint) {
			pg_session_query(job->maint, sql, 0, NULL, NULL, NULL);
			/* the candidate, invalid again, would only cost writes: drop it */
			sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
			pg_session_query(job->maint, sql, 0, NULL, NULL, NULL);
		}
		break;
	}
	case JACT_DROP_OLD_INDEX:
		if (job->mode == SWAP_FLIP)
			drop_index_async(job, job->retired);
		break;
	case JACT_RETRY_AFTER_BACKOFF: {
		const struct vg_managed_index *mi = job_index(job);
		double delay = job_backoff_seconds(job->attempts, mi ? mi->backoff_seconds : 2, 300);
		job->attempts++;
		if (from == JOB_BUILD) {
			/* a failed concurrent build leaves an invalid index behind:
			 * drop it on a fresh session, then wait out the backoff */
			stop_running_build(job);
			pg_session_close(job->maint);
			job->maint = open_session(job, NULL, maint_lost, "rebuild");
			if (job->maint) {
				char sql[800];
				sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
				pg_session_query(job->maint, sql, 0, NULL, NULL, NULL);
				apply_settings(job);
				pg_session_query(job->maint, "SELECT 1", 0, NULL, retry_when_clean, job);
				break;
			}
		}
		schedule(job, delay);
		break;
	}
	default:
		break;
	}
}

static void fmt_or_null(char *buf, size_t len, double v, const char **out)
{
	if (isnan(v)) {
		*out = NULL;
		return;
	}
	snprintf(buf, len, "%.6f", v);
	*out = buf;
}

static void persist(struct rebuild_job *job, const char *from, const char *to, const char *event, const char *msg)
{
	if (!job->persistent || !job->db_id || !job->state_s)
		return;
	char id[24], att[16], b1[32], b2[32], b3[32], c1[32], sw[32];
	const char *p6, *p7, *p8, *p9, *p10;
	snprintf(id, sizeof(id), "%lld", job->db_id);
	snprintf(att, sizeof(att), "%d", job->attempts);
	fmt_or_null(b1, sizeof(b1), job->have_base ? job->base_recall : NAN, &p6);
	fmt_or_null(b2, sizeof(b2), job->have_base ? job->base_p50 : NAN, &p7);
	fmt_or_null(b3, sizeof(b3), job->have_base ? job->base_p95 : NAN, &p8);
	fmt_or_null(c1, sizeof(c1), job->have_new ? job->new_recall : NAN, &p9);
	fmt_or_null(sw, sizeof(sw), job->swap_tries ? job->swap_ms : NAN, &p10);
	const char *mode = job->state > JOB_PREFLIGHT ? (job->mode == SWAP_FLIP ? "flip" : "rename") : NULL;
	const char *up[] = {id, job_state_name(job->state), att, job->message, mode, p6, p7, p8, p9, p10};
	pg_session_query(job->state_s, SQL_JOB_UPDATE, 10, up, NULL, NULL);
	const char *step[] = {id, from, to, event, msg};
	pg_session_query(job->state_s, SQL_JOB_STEP, 5, step, NULL, NULL);
}

static void close_state_when_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	(void)error;
	pg_session_close(job->state_s); /* releases the advisory lock */
	job->state_s = NULL;
}

static void job_event(struct rebuild_job *job, enum job_event ev, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (job->drift) {
		drift_failed(job, msg);
		return;
	}
	const struct vg_managed_index *mi = job_index(job);
	int max = job->state == JOB_SWAP ? (mi ? mi->swap_attempts : 20) : (mi ? mi->max_attempts : 3);
	struct job_transition t = job_next(job->state, ev, job->attempts, max);
	if (t.action == JACT_REJECT) {
		log_warn("rebuild %d (%s): %s ignored in state %s: %s", job->id, job->index_name, job_event_name(ev),
		         job_state_name(job->state), msg);
		return;
	}
	enum job_state from = job->state;
	log_info("rebuild %d (%s): %s -> %s [%s]: %s", job->id, job->index_name, job_state_name(from),
	         job_state_name(t.next), job_event_name(ev), msg);
	snprintf(job->message, sizeof(job->message), "%s", msg);
	struct history_entry *h = &job->hist[job->n_hist < 64 ? job->n_hist++ : 63];
	h->at = now_sec();
	h->from = from;
	h->to = t.next;
	h->event = ev;
	snprintf(h->message, sizeof(h->message), "%.239s", msg);
	job->updated = now_sec();
	if (t.next != from) {
		job->state = t.next;
		job->attempts = 1;
		job->state_since = now_sec();
		routes_job_step(job->index_name, job->state);
		if (job->state == JOB_DONE && job->have_new)
			drift_rebase(job->index_name, job->new_recall);
	}
	persist(job, job_state_name(from), job_state_name(t.next), job_event_name(ev), msg);
	perform(job, from, t.action);
	if (t.action == JACT_RUN_STEP)
		run_step(job);
	if (job_is_terminal(job->state) && job->state_s)
		pg_session_query(job->state_s, "SELECT 1", 0, NULL, close_state_when_done, job);
	if (job_is_terminal(job->state)) {
		stop_polling(job);
		if (job->timer)
			event_del(job->timer);
		/* let queued cleanup statements finish, then the session closes */
		if (job->maint)
			pg_session_query(job->maint, "SELECT 1", 0, NULL, close_when_done, job);
	}
}

/* ---- public API ---- */

const struct rebuild_job *rebuild_latest(const char *index_name)
{
	for (struct rebuild_job *j = jobs; j; j = j->next)
		if (!strcmp(j->index_name, index_name))
			return j;
	return NULL;
}

static void job_free(struct rebuild_job *job)
{
	if (job->timer)
		event_free(job->timer);
	if (job->poll_timer)
		event_free(job->poll_timer);
	for (size_t i = 0; i < job->n_queries; i++) {
		free(job->queries[i].vector);
		free(job->queries[i].truth);
	}
	free(job->queries);
	free(job->lat_ms);
	free(job->index_name);
	free(job->schema);
	free(job->table);
	free(job->live);
	free(job->fresh);
	free(job->retired);
	free(job->live_def);
	free(job);
}

static struct rebuild_job *job_new(const struct vg_managed_index *mi, char *err, size_t errlen)
{
	struct rebuild_job *job = calloc(1, sizeof(*job));
	if (!job) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	job->id = next_job_id + 1; /* taken for good in job_register() */
	job->index_name = strdup(mi->name);
	job->schema = strdup(mi->schema);
	job->table = strdup(mi->table);
	job->live = strdup(mi->index);
	char name[64];
	snprintf(name, sizeof(name), "%.40s_vg%d", mi->index, job->id);
	job->fresh = strdup(name);
	snprintf(name, sizeof(name), "%.40s_vgold%d", mi->index, job->id);
	job->retired = strdup(name);
	job->created = job->updated = job->state_since = now_sec();
	job->base_recall = job->new_recall = NAN;
	job->eta_s = NAN;
	job->attempts = 1;
	job->state = JOB_PREFLIGHT;
	job->persistent = true;
	job->timer = evtimer_new(vg.base, step_timer, job);
	if (load_eval(job, mi->eval_file, err, errlen) < 0) {
		job_free(job);
		return NULL;
	}
	return job;
}

static void job_register(struct rebuild_job *job)
{
	job->id = ++next_job_id;
	job->next = jobs;
	jobs = job;
}

/* ---- the state session: schema, advisory lock, job row ---- */

static void state_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	job->state_s = NULL;
	log_error("rebuild %d: lost the connection holding the rebuild lock (%s); job state is no longer recorded",
	          job->id, error ? error : "?");
}

static void insert_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res)) {
		job->persistent = false;
		log_warn("rebuild %d: cannot record the job in vecgate.jobs: %s", job->id, error ? error : "no id");
	} else {
		job->db_id = atoll(PQgetvalue(res, 0, 0));
	}
	run_step(job);
}

static void lock_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res) || strcmp(PQgetvalue(res, 0, 0), "t")) {
		job_event(job, JEV_FATAL,
		          "another vecgate instance is rebuilding %s (it holds the advisory lock); follow it there", 
		          job->index_name);
		return;
	}
	if (!job->persistent) {
		run_step(job);
		return;
	}
	const char *params[] = {job->index_name, job->fresh, job->retired};
	pg_session_query(job->state_s, SQL_JOB_INSERT, 3, params, insert_done, job);
}

static void schema_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	if (error) {
		job->persistent = false;
		log_warn("rebuild %d: durable job state disabled, cannot create schema vecgate: %s", job->id, error);
	}
	const char *params[] = {job->index_name};
	pg_session_query(job->state_s, SQL_TRY_LOCK, 1, params, lock_done, job);
}

static void state_connected(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job->state_s = NULL;
		job_event(job, JEV_FATAL, "cannot connect to record the job and take the rebuild lock: %s", error);
		return;
	}
	pg_session_query(job->state_s, SQL_STATE_SCHEMA, 0, NULL, schema_done, job);
}

/* ---- recall-drift monitor ----
 * Per managed index with drift_check_seconds > 0: the eval set runs against
 * the live index on a schedule (never while a rebuild of it runs), recall@k
 * is published, and a drop of more than drift_tolerance (a fraction) below
 * the baseline (the last rebuild's measured recall, else the first check)
 * is logged, flagged in the metrics and, if configured, turned into a
 * proposed rebuild that waits for an operator. */

struct drift_state {
	char *name;
	double recall, baseline, checked_at;
	bool have_recall, have_baseline, alert, running;
	uint64_t checks, failures;
	char last_error[256];
	char proposal[400];
};
static struct drift_state *drifts;
static size_t n_drifts;
static struct event *drift_timer;

static struct drift_state *drift_find(const char *name, bool create)
{
	for (size_t i = 0; i < n_drifts; i++)
		if (!strcmp(drifts[i].name, name))
			return &drifts[i];
	if (!create)
		return NULL;
	struct drift_state *n = realloc(drifts, (n_drifts + 1) * sizeof(*n));
	if (!n)
		return NULL;
	drifts = n;
	memset(&drifts[n_drifts], 0, sizeof(*drifts));
	drifts[n_drifts].name = strdup(name);
	return &drifts[n_drifts++];
}

static void drift_run_done(struct rebuild_job *job)
{
	struct drift_state *d = drift_find(job->index_name, false);
	if (d)
		d->running = false;
	pg_session_close(job->maint); /* mid-transaction: the server rolls back */
	job->maint = NULL;
	job_free(job);
}

static void drift_measured(struct rebuild_job *job, double recall)
{
	const struct vg_managed_index *mi = job_index(job);
	struct drift_state *d = drift_find(job->index_name, true);
	if (d && mi) {
		d->recall = recall;
		d->have_recall = true;
		d->checked_at = now_sec();
		d->checks++;
		d->last_error[0] = 0;
		if (!d->have_baseline) {
			d->baseline = recall;
			d->have_baseline = true;
		}
		bool low = recall < d->baseline * (1 - mi->drift_tolerance);
		if (low && !d->alert)
			log_warn("drift: %s recall@%d %.4f is more than %.0f%% below its baseline %.4f", mi->name, mi->k, recall,
			         mi->drift_tolerance * 100, d->baseline);
		else if (!low && d->alert)
			log_info("drift: %s recall@%d back to %.4f (baseline %.4f)", mi->name, mi->k, recall, d->baseline);
		d->alert = low;
		if (low && mi->drift_propose_rebuild && !d->proposal[0]) {
			snprintf(d->proposal, sizeof(d->proposal),
			         "recall@%d fell to %.4f (baseline %.4f): approve with POST /v1/indexes/%s/rebuild or "
			         "\"vecgatectl rebuild start %s\"",
			         mi->k, recall, d->baseline, mi->name, mi->name);
			log_warn("drift: rebuild of %s proposed; it starts only when an operator starts it", mi->name);
		}
	}
	drift_run_done(job);
}

static void drift_failed(struct rebuild_job *job, const char *why)
{
	struct drift_state *d = drift_find(job->index_name, true);
	if (d) {
		d->failures++;
		d->checked_at = now_sec();
		snprintf(d->last_error, sizeof(d->last_error), "%s", why);
	}
	log_warn("drift: check of %s failed: %s", job->index_name, why);
	drift_run_done(job);
}

static void drift_rebase(const char *index_name, double recall)
{
	struct drift_state *d = drift_find(index_name, true);
	if (!d)
		return;
	d->baseline = recall;
	d->have_baseline = true;
	d->alert = false;
	d->proposal[0] = 0;
}

static void drift_clear_proposal(const char *index_name)
{
	struct drift_state *d = drift_find(index_name, false);
	if (d)
		d->proposal[0] = 0;
}

static void drift_connected(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job->maint = NULL;
		drift_failed(job, error);
		return;
	}
	eval_start(job, EVAL_DRIFT);
}

static void drift_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	job->maint = NULL;
	drift_failed(job, error ? error : "connection lost");
}

static void drift_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = now_sec();
	for (size_t i = 0; i < vg.cfg->n_indexes; i++) {
		const struct vg_managed_index *mi = &vg.cfg->indexes[i];
		if (mi->drift_check_seconds <= 0)
			continue;
		struct drift_state *d = drift_find(mi->name, true);
		const struct rebuild_job *latest = rebuild_latest(mi->name);
		if (!d || d->running || (latest && !job_is_terminal(latest->state)) ||
		    (d->checked_at > 0 && now - d->checked_at < mi->drift_check_seconds))
			continue;
		char err[256];
		struct rebuild_job *job = job_new(mi, err, sizeof(err));
		if (!job) {
			snprintf(d->last_error, sizeof(d->last_error), "%s", err);
			d->checked_at = now;
			continue;
		}
		job->drift = true;
		d->running = true;
		job->maint = open_session(job, drift_connected, drift_lost, "drift");
		if (!job->maint)
			drift_failed(job, "cannot open a connection");
	}
}

void rebuild_drift_json(struct json *j, const char *key, const char *index_name)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, index_name);
	struct drift_state *d = drift_find(index_name, false);
	json_obj_begin(j, key);
	json_bool(j, "enabled", mi && mi->drift_check_seconds > 0);
	json_num(j, "recall", d && d->have_recall ? d->recall : NAN);
	json_num(j, "baseline", d && d->have_baseline ? d->baseline : NAN);
	json_bool(j, "alert", d && d->alert);
	json_num(j, "checked_seconds_ago", d && d->checked_at > 0 ? now_sec() - d->checked_at : NAN);
	json_int(j, "checks", d ? (long long)d->checks : 0);
	json_str(j, "last_error", d && d->last_error[0] ? d->last_error : NULL);
	json_str(j, "proposed_rebuild", d && d->proposal[0] ? d->proposal : NULL);
	json_obj_end(j);
}

static void drift_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_drift_recall Recall@k of the live index, from the drift monitor.\n"
	                       "# TYPE vecgate_drift_recall gauge\n"
	                       "# HELP vecgate_drift_baseline Recall@k the drift monitor compares against.\n"
	                       "# TYPE vecgate_drift_baseline gauge\n"
	                       "# HELP vecgate_drift_alert 1 while recall is below baseline by more than drift_tolerance.\n"
	                       "# TYPE vecgate_drift_alert gauge\n");
	for (size_t i = 0; i < n_drifts; i++) {
		const struct drift_state *d = &drifts[i];
		if (d->have_recall)
			evbuffer_add_printf(b, "vecgate_drift_recall{index=\"%s\"} %.6f\n", d->name, d->recall);
		if (d->have_baseline)
			evbuffer_add_printf(b, "vecgate_drift_baseline{index=\"%s\"} %.6f\n", d->name, d->baseline);
		evbuffer_add_printf(b, "vecgate_drift_alert{index=\"%s\"} %d\n", d->name, d->alert);
	}
}

int rebuild_start(const char *index_name, char *err, size_t errlen)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, index_name);
	if (!mi) {
		snprintf(err, errlen, "no managed index named '%s' in the configuration", index_name);
		return -1;
	}
	const struct rebuild_job *prev = rebuild_latest(index_name);
	if (prev && !job_is_terminal(prev->state)) {
		snprintf(err, errlen, "job %d is already %s for %s; cancel it first or wait", prev->id,
		         job_state_name(prev->state), index_name);
		return -1;
	}
	struct rebuild_job *job = job_new(mi, err, errlen);
	if (!job)
		return -1;
	job_register(job);
	drift_clear_proposal(index_name);
	log_info("rebuild %d: starting for %s (%s.%s, %zu eval queries)", job->id, mi->name, mi->schema, mi->index,
	         job->n_queries);
	routes_job_step(job->index_name, job->state);
	job->state_s = open_session(job, state_connected, state_lost, "state");
	if (!job->state_s)
		job_event(job, JEV_FATAL, "cannot open a connection to the managed index's backend");
	return job->id;
}

/* ---- resume after a restart ---- */

static void set_state_resumed(struct rebuild_job *job, enum job_state to, const char *msg)
{
	enum job_state from = job->state;
	job->state = to;
	job->state_since = now_sec();
	job->resuming = false;
	routes_job_step(job->index_name, to);
	snprintf(job->message, sizeof(job->message), "%s", msg);
	struct history_entry *h = &job->hist[job->n_hist < 64 ? job->n_hist++ : 63];
	h->at = now_sec();
	h->from = from;
	h->to = to;
	h->event = JEV_STEP_OK;
	snprintf(h->message, sizeof(h->message), "%.239s", msg);
	persist(job, job_state_name(from), job_state_name(to), "resumed", msg);
	log_info("rebuild %d (%s): %s", job->id, job->index_name, msg);
}

static void resume_after_cleanup(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	if (error)
		log_warn("rebuild %d: cleanup on resume: %s", job->id, error);
	if (job->have_base && (job->resume_to == JOB_BUILD || job->resume_to == JOB_VERIFY)) {
		set_state_resumed(job, JOB_BUILD, "resumed after a restart: the dead build was cancelled and dropped, "
		                                  "building again");
	} else {
		set_state_resumed(job, JOB_PREFLIGHT, "resumed after a restart: starting over from preflight");
	}
	run_step(job);
}

static void resume_swap_checked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	bool swapped = !error && PQntuples(res) && !PQgetisnull(res, 0, 0);
	set_state_resumed(job, swapped ? JOB_WATCH : JOB_SWAP,
	                  swapped ? "resumed after a restart: the swap had happened, watching"
	                          : "resumed after a restart: the swap had not happened, swapping");
	run_step(job);
}

static void resume_continue(struct rebuild_job *job)
{
	char rel[700];
	switch (job->resume_to) {
	case JOB_SWAP: {
		sql_qualified(job->schema, job->retired, rel, sizeof(rel));
		const char *params[] = {rel};
		query(job, "SELECT to_regclass($1)", 1, params, resume_swap_checked);
		return;
	}
	case JOB_WATCH:
	case JOB_RETAIN:
		set_state_resumed(job, job->resume_to, "resumed after a restart");
		run_step(job);
		return;
	default: {
		/* a build vecgate started before it died may still be running:
		 * cancel it, then drop whatever it left */
		char sql[800];
		sql_qualified(job->schema, job->table, rel, sizeof(rel));
		const char *params[] = {rel};
		query(job, SQL_CANCEL_ORPHAN_BUILDS, 1, params, NULL);
		query(job, "SELECT pg_sleep(0.2)", 0, NULL, NULL);
		sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
		query(job, sql, 0, NULL, resume_after_cleanup);
		return;
	}
	}
}

static void adopt_locked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res) || strcmp(PQgetvalue(res, 0, 0), "t")) {
		log_info("rebuild: job %lld for %s is driven by another instance", job->db_id, job->index_name);
		pg_session_close(job->state_s);
		job->state_s = NULL;
		job_free(job);
		return;
	}
	job_register(job);
	job->resuming = true;
	log_info("rebuild %d: resuming job %lld for %s (was %s)", job->id, job->db_id, job->index_name,
	         job_state_name(job->resume_to));
	run_step(job); /* preflight's first checks, then resume_continue() */
}

static double opt_num(const PGresult *res, int col, bool *have)
{
	*have = !PQgetisnull(res, 0, col);
	return *have ? atof(PQgetvalue(res, 0, col)) : NAN;
}

/* No unfinished job: keep the newest finished one as a record, so the API
 * and the metrics show what happened before this process started. */
static void latest_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	pg_session_close(job->state_s);
	job->state_s = NULL;
	int st = !error && PQntuples(res) ? job_state_from_name(PQgetvalue(res, 0, 1)) : -1;
	if (st < 0 || !job_is_terminal((enum job_state)st) || rebuild_latest(job->index_name)) {
		job_free(job);
		return;
	}
	job->db_id = atoll(PQgetvalue(res, 0, 0));
	job->state = (enum job_state)st;
	job->persistent = false;
	snprintf(job->message, sizeof(job->message), "%s (recorded in vecgate.jobs before this vecgate started)",
	         PQgetvalue(res, 0, 2));
	job->mode = !strcmp(PQgetvalue(res, 0, 3), "rename") ? SWAP_RENAME : SWAP_FLIP;
	job->base_recall = opt_num(res, 4, &job->have_base);
	job->base_p50 = job->have_base ? atof(PQgetvalue(res, 0, 5)) : NAN;
	job->base_p95 = job->have_base ? atof(PQgetvalue(res, 0, 6)) : NAN;
	job->new_recall = opt_num(res, 7, &job->have_new);
	bool have_swap;
	job->swap_ms = opt_num(res, 8, &have_swap);
	job->swap_tries = have_swap;
	set_str(&job->fresh, PQgetvalue(res, 0, 9));
	set_str(&job->retired, PQgetvalue(res, 0, 10));
	job_register(job);
}

static void unfinished_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (!error && !PQntuples(res)) {
		const char *params[] = {job->index_name};
		pg_session_query(job->state_s, SQL_JOB_LATEST, 1, params, latest_result, job);
		return;
	}
	if (error) {
		pg_session_close(job->state_s);
		job->state_s = NULL;
		job_free(job);
		return;
	}
	job->db_id = atoll(PQgetvalue(res, 0, 0));
	int st = job_state_from_name(PQgetvalue(res, 0, 1));
	job->resume_to = st < 0 ? JOB_PREFLIGHT : (enum job_state)st;
	set_str(&job->fresh, PQgetvalue(res, 0, 3));
	set_str(&job->retired, PQgetvalue(res, 0, 4));
	job->mode = !strcmp(PQgetvalue(res, 0, 5), "rename") ? SWAP_RENAME : SWAP_FLIP;
	if (!PQgetisnull(res, 0, 6)) {
		job->base_recall = atof(PQgetvalue(res, 0, 6));
		job->base_p50 = atof(PQgetvalue(res, 0, 7));
		job->base_p95 = atof(PQgetvalue(res, 0, 8));
		job->have_base = true;
	}
	const char *params[] = {job->index_name};
	pg_session_query(job->state_s, SQL_TRY_LOCK, 1, params, adopt_locked, job);
}

static void probe_table(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res) || PQgetisnull(res, 0, 0)) {
		pg_session_close(job->state_s);
		job->state_s = NULL;
		job_free(job);
		return;
	}
	const char *params[] = {job->index_name};
	pg_session_query(job->state_s, SQL_JOB_UNFINISHED, 1, params, unfinished_result, job);
}

static void probe_connected(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		log_warn("rebuild: cannot look for unfinished jobs of %s: %s", job->index_name, error);
		job->state_s = NULL;
		job_free(job);
		return;
	}
	pg_session_query(job->state_s, "SELECT to_regclass('vecgate.jobs')", 0, NULL, probe_table, job);
}

static void probe_lost(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	(void)error;
	job->state_s = NULL; /* an adopted job keeps running; the lock is gone with the session */
}

void rebuild_resume_all(void)
{
	if (!drift_timer) {
		drift_timer = event_new(vg.base, -1, EV_PERSIST, drift_tick, NULL);
		struct timeval tv = {0, 250000};
		event_add(drift_timer, &tv);
	}
	for (size_t i = 0; i < vg.cfg->n_indexes; i++) {
		char err[256];
		struct rebuild_job *job = job_new(&vg.cfg->indexes[i], err, sizeof(err));
		if (!job) {
			log_warn("rebuild: cannot check %s for unfinished jobs: %s", vg.cfg->indexes[i].name, err);
			continue;
		}
		job->state_s = open_session(job, probe_connected, probe_lost, "state");
		if (!job->state_s)
			job_free(job);
	}
}

const struct rebuild_job *rebuild_find(int job_id)
{
	for (struct rebuild_job *j = jobs; j; j = j->next)
		if (j->id == job_id)
			return j;
	return NULL;
}

int rebuild_approve(int job_id, char *err, size_t errlen)
{
	struct rebuild_job *job = (struct rebuild_job *)rebuild_find(job_id);
	if (!job) {
		snprintf(err, errlen, "no job %d", job_id);
		return -1;
	}
	if (job->state != JOB_SWAP || job->approved) {
		snprintf(err, errlen, "job %d is %s: nothing waits for approval", job_id, job_state_name(job->state));
		return -1;
	}
	job->approved = true;
	log_info("rebuild %d: swap approved by operator", job->id);
	run_step(job);
	return 0;
}

int rebuild_signal(int job_id, enum job_event ev, char *err, size_t errlen)
{
	struct rebuild_job *job = (struct rebuild_job *)rebuild_find(job_id);
	if (!job) {
		snprintf(err, errlen, "no job %d", job_id);
		return -1;
	}
	if (ev == JEV_ROLLBACK && job->mode == SWAP_RENAME && job->state > JOB_SWAP) {
		snprintf(err, errlen, "job %d swapped in rename mode (no superuser): the old index was dropped, there is "
		         "no instant rollback; start a new rebuild instead", job_id);
		return -1;
	}
	struct job_transition t = job_next(job->state, ev, job->attempts, 1000);
	if (t.action == JACT_REJECT) {
		snprintf(err, errlen, "cannot %s job %d in state %s%s", ev == JEV_CANCEL ? "cancel" : "roll back", job_id,
		         job_state_name(job->state),
		         ev == JEV_CANCEL && job->state >= JOB_SWAP && !job_is_terminal(job->state)
		             ? " (after the swap, roll back instead)"
		             : "");
		return -1;
	}
	job_event(job, ev, "%s requested by operator", ev == JEV_CANCEL ? "cancel" : "rollback");
	return 0;
}

void rebuild_job_json(struct json *j, const char *key, const struct rebuild_job *job)
{
	json_obj_begin(j, key);
	json_int(j, "id", job->id);
	if (job->db_id)
		json_int(j, "db_id", job->db_id);
	else
		json_str(j, "db_id", NULL);
	json_str(j, "index", job->index_name);
	json_str(j, "state", job_state_name(job->state));
	json_bool(j, "terminal", job_is_terminal(job->state));
	json_int(j, "attempt", job->attempts);
	json_str(j, "message", job->message);
	json_str(j, "swap_mode", job->state > JOB_PREFLIGHT ? (job->mode == SWAP_FLIP ? "flip" : "rename") : NULL);
	json_str(j, "new_index", job->fresh);
	json_str(j, "retired_index", job->retired);
	json_num(j, "seconds_in_state", now_sec() - job->state_since);
	json_obj_begin(j, "progress");
	json_str(j, "phase", job->phase[0] ? job->phase : NULL);
	json_num(j, "percent", job->state > JOB_BUILD && job->state <= JOB_DONE ? 100 : job->percent);
	json_num(j, "eta_seconds", job->eta_s);
	json_int(j, "blocks_done", job->blocks_done);
	json_int(j, "blocks_total", job->blocks_total);
	json_int(j, "tuples_done", job->tuples_done);
	json_int(j, "tuples_total", job->tuples_total);
	json_obj_end(j);
	json_obj_begin(j, "baseline");
	json_num(j, "recall", job->have_base ? job->base_recall : NAN);
	json_num(j, "p50_ms", job->have_base ? job->base_p50 : NAN);
	json_num(j, "p95_ms", job->have_base ? job->base_p95 : NAN);
	json_obj_end(j);
	json_obj_begin(j, "candidate");
	json_num(j, "recall", job->have_new ? job->new_recall : NAN);
	json_num(j, "p50_ms", job->have_new ? job->new_p50 : NAN);
	json_num(j, "p95_ms", job->have_new ? job->new_p95 : NAN);
	json_obj_end(j);
	json_num(j, "swap_lock_ms", job->swap_tries ? job->swap_ms : NAN);
	json_obj_begin(j, "watch");
	json_int(j, "requests", job->have_watch ? (long long)job->post_requests : 0);
	json_num(j, "error_rate", job->have_watch ? job->post_err_rate : NAN);
	json_num(j, "error_rate_before", job->have_watch ? job->pre_err_rate : NAN);
	json_num(j, "mean_ms", job->have_watch ? job->post_mean_ms : NAN);
	json_num(j, "mean_ms_before", job->have_watch ? job->pre_mean_ms : NAN);
	json_obj_end(j);
	json_int(j, "swap_attempts", job->swap_tries);
	json_bool(j, "awaiting_approval", job->state == JOB_SWAP && !job->approved && job_index(job) &&
	                                      job_index(job)->approve_swap);
	json_arr_begin(j, "history");
	for (int i = 0; i < job->n_hist; i++) {
		const struct history_entry *h = &job->hist[i];
		json_obj_begin(j, NULL);
		json_num(j, "t", h->at - job->created);
		json_str(j, "from", job_state_name(h->from));
		json_str(j, "to", job_state_name(h->to));
		json_str(j, "event", job_event_name(h->event));
		json_str(j, "message", h->message);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

void rebuild_jobs_json(struct json *j, const char *key, const char *index_name)
{
	json_arr_begin(j, key);
	for (struct rebuild_job *job = jobs; job; job = job->next)
		if (!index_name || !strcmp(job->index_name, index_name))
			rebuild_job_json(j, NULL, job);
	json_arr_end(j);
}

void rebuild_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_rebuild_state Current state of the newest rebuild job per managed index.\n"
	                       "# TYPE vecgate_rebuild_state gauge\n");
	for (size_t i = 0; i < vg.cfg->n_indexes; i++) {
		const struct rebuild_job *job = rebuild_latest(vg.cfg->indexes[i].name);
		for (int st = 0; st < JOB_STATE_COUNT; st++)
			evbuffer_add_printf(b, "vecgate_rebuild_state{index=\"%s\",state=\"%s\"} %d\n",
			                    vg.cfg->indexes[i].name, job_state_name((enum job_state)st),
			                    job && (int)job->state == st ? 1 : 0);
	}
	evbuffer_add_printf(b, "# HELP vecgate_rebuild_progress_percent Build progress of the newest job.\n"
	                       "# TYPE vecgate_rebuild_progress_percent gauge\n"
	                       "# HELP vecgate_recall Recall@k measured by the newest job (baseline = live index before).\n"
	                       "# TYPE vecgate_recall gauge\n"
	                       "# HELP vecgate_swap_lock_milliseconds Duration of the newest job's swap transaction.\n"
	                       "# TYPE vecgate_swap_lock_milliseconds gauge\n");
	for (struct rebuild_job *job = jobs; job; job = job->next) {
		if (job != rebuild_latest(job->index_name))
			continue;
		double pct = job->state > JOB_BUILD && job->state <= JOB_DONE ? 100 : job->percent;
		evbuffer_add_printf(b, "vecgate_rebuild_progress_percent{index=\"%s\"} %.2f\n", job->index_name, pct);
		if (job->have_base)
			evbuffer_add_printf(b, "vecgate_recall{index=\"%s\",which=\"baseline\"} %.6f\n", job->index_name,
			                    job->base_recall);
		if (job->have_new)
			evbuffer_add_printf(b, "vecgate_recall{index=\"%s\",which=\"candidate\"} %.6f\n", job->index_name,
			                    job->new_recall);
		if (job->swap_tries)
			evbuffer_add_printf(b, "vecgate_swap_lock_milliseconds{index=\"%s\"} %.3f\n", job->index_name,
			                    job->swap_ms);
	}
	drift_metrics(b);
}

void rebuild_shutdown(void)
{
	if (drift_timer)
		event_free(drift_timer);
	drift_timer = NULL;
	for (size_t i = 0; i < n_drifts; i++)
		free(drifts[i].name);
	free(drifts);
	drifts = NULL;
	n_drifts = 0;
	while (jobs) {
		struct rebuild_job *job = jobs;
		jobs = job->next;
		stop_running_build(job);
		close_sessions(job);
		job_free(job);
	}
}
