/*
 * The build plan's measurements (plan.h): facts about the table and the
 * server, a random sample copied into an unlogged scratch table, a timed
 * trial build of the new definition on it (the rebuild's statement
 * without CONCURRENTLY; HNSW with the build's own maintenance_work_mem
 * and workers)
 * while a second session samples pg_stat_progress_create_index, memory
 * probes in 1 and 2 MB cancelled at pgvector's "no longer fits" NOTICE,
 * an on-disk trial in the sample's share of the build's memory when the
 * full graph will not fit (IVFFlat: a
 * trial with the build's lists and one with lists cut for k-means, polled
 * finely enough to split pgvector's phases), one timed eval query; then
 * routing/build_plan.c turns them into a prediction.  One
 * state machine: each statement's callback moves the plan on through
 * plan_next(), and every way out passes PLAN_CLEANUP, which drops the
 * scratch tables.
 */
#include "proxy/control/plan.h"
#include "proxy/control/session.h"
#include "proxy/runtime/runtime.h"
#include "routing/indexdef.h"
#include "routing/rebuild_sql.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_POLL_S 0.1 /* progress samples: ~10 a second, a few hundred per HNSW trial */
/* IVFFlat's trials last tens of milliseconds and their phases ten or
 * twenty: polled every 2 ms, so a phase's edge is known to a few ms (the
 * poll's query costs the server about 0.2 ms, on another backend) */
#define PLAN_POLL_FINE_S 0.002
/* eval queries timed on the live index: one (the eval's cost is a
 * rough figure; a second run, for a warm cache, cost a tenth of a small
 * IVFFlat plan) */
#define PLAN_EVAL_RUNS 1
#define PLAN_KEEP 4 /* finished plans kept per index: the newest is shown */

/* the replicas' replay position: their replay rate over the plan */
static const char SQL_PLAN_REPLICAS[] = "SELECT coalesce(application_name, ''), pg_wal_lsn_diff(replay_lsn, "
                                        "'0/0')::float8 FROM pg_stat_replication ORDER BY 1 LIMIT 4";

static struct build_plan *plans;
static int next_plan_id;

static void plan_next(struct build_plan *p);

const char *plan_state_name(enum plan_state s)
{
	static const char *const names[] = {"connecting", "facts", "sample", "trial", "probe",
	                                    "eval",       "cleanup", "done", "failed"};
	return (unsigned)s <= PLAN_FAILED ? names[s] : "?";
}

bool plan_running(const struct build_plan *p)
{
	return p && p->state != PLAN_DONE && p->state != PLAN_FAILED;
}

const struct build_plan *plan_latest(const char *index_name)
{
	for (struct build_plan *p = plans; p; p = p->next)
		if (!strcmp(p->index_name, index_name) && !p->abandoned)
			return p;
	return NULL;
}

int plan_eval_queries(const struct vg_managed_index *mi)
{
	int n = 0;
	if (mi->eval_file) {
		FILE *f = fopen(mi->eval_file, "r");
		char line[4096];
		while (f && fgets(line, sizeof(line), f))
			n += line[0] != '\n' && line[0] != '#';
		if (f)
			fclose(f);
	}
	if (mi->eval_source != VG_EVAL_FILE)
		n += mi->traffic_sample_size;
	return n;
}

static void poll_stop(struct build_plan *p)
{
	p->polling = false;
	if (p->poll_timer)
		evtimer_del(p->poll_timer);
}

static void plan_free(struct build_plan *p)
{
	if (p->poll_timer)
		event_free(p->poll_timer);
	if (p->ps)
		pg_session_close(p->ps);
	if (p->s)
		pg_session_close(p->s);
	free(p->index_name);
	free(p);
}

/* Older finished plans of the index go: the newest answers GET .../plan. */
static void prune(const char *index_name)
{
	int kept = 0;
	for (struct build_plan **pp = &plans; *pp;) {
		struct build_plan *p = *pp;
		if (!strcmp(p->index_name, index_name) && !plan_running(p) && ++kept > PLAN_KEEP) {
			*pp = p->next;
			plan_free(p);
			continue;
		}
		pp = &p->next;
	}
}

/* ---- the way out: every path drops the scratch tables first ---- */

/* the one place the state changes: the time spent in the old one is
 * the plan's cost by step */
static void plan_enter(struct build_plan *p, enum plan_state next)
{
	double t = now_sec();
	enum plan_state from = p->state == PLAN_PROBE ? PLAN_TRIAL : p->state;
	p->r.step_s[from] += t - p->entered;
	p->entered = t;
	p->state = next;
}

static void fail(struct build_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void finished(struct build_plan *p)
{
	p->finished = now_sec();
	p->r.cost_s = p->finished - p->started;
	p->r.cost_ratio = p->r.predicted_s > 0 ? p->r.cost_s / p->r.predicted_s : NAN;
	p->percent = 100;
	poll_stop(p);
	if (p->ps) {
		pg_session_close(p->ps);
		p->ps = NULL;
	}
	if (p->s) {
		pg_session_close(p->s);
		p->s = NULL;
	}
	const double *st = p->r.step_s;
	log_info("plan %d (%s): %s%s%s (%.2f s: connecting %.2f, facts %.2f, sample %.2f, trials %.2f, eval %.2f, "
	         "cleanup %.2f)",
	         p->id, p->index_name, plan_state_name(p->state), p->error[0] ? ": " : "", p->error, p->r.cost_s,
	         st[PLAN_CONNECTING], st[PLAN_FACTS], st[PLAN_SAMPLE], st[PLAN_TRIAL], st[PLAN_EVAL], st[PLAN_CLEANUP]);
	plan_cb cb = p->cb;
	p->cb = NULL;
	if (cb && !p->abandoned)
		cb(p->cb_arg, p);
	if (p->abandoned) {
		for (struct build_plan **pp = &plans; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		plan_free(p);
	}
}

static void cleanup_done(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	(void)res;
	p->statement_out = false;
	if (error)
		log_warn("plan %d (%s): cannot drop the scratch table vecgate.%s (%s); the next plan drops it", p->id,
		         p->index_name, p->scratch, error);
	plan_enter(p, p->error[0] ? PLAN_FAILED : PLAN_DONE);
	finished(p);
}

static void cleanup(struct build_plan *p)
{
	plan_enter(p, PLAN_CLEANUP);
	p->probing = false;
	snprintf(p->step, sizeof(p->step), "dropping the scratch tables");
	if (!p->s || !pg_session_connected(p->s)) {
		/* the session is gone with its backend: the next plan's sweep
		 * drops tables named after backends that no longer exist */
		cleanup_done(p, NULL, NULL);
		return;
	}
	char sql[400];
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS vecgate.%s, vecgate.%s", p->scratch, p->trial_table);
	p->statement_out = true;
	pg_session_query(p->s, "RESET maintenance_work_mem", 0, NULL, NULL, NULL);
	pg_session_query(p->s, sql, 0, NULL, cleanup_done, p);
}

static void fail(struct build_plan *p, const char *fmt, ...)
{
	if (p->error[0] || p->state == PLAN_CLEANUP)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->error, sizeof(p->error), fmt, ap);
	va_end(ap);
	cleanup(p);
}

/* A statement answered: false when it worked and the plan goes on. */
static bool stopped(struct build_plan *p, const char *error, const char *what)
{
	p->statement_out = false;
	if (p->abandoned && p->state != PLAN_CLEANUP) {
		fail(p, "abandoned by its owner");
		return true;
	}
	if (error) {
		fail(p, "%s: %s", what, error);
		return true;
	}
	return false;
}

static void query(struct build_plan *p, const char *sql, int n, const char *const *params, pg_result_cb cb)
{
	p->statement_out = true;
	if (pg_session_query(p->s, sql, n, params, cb, p) < 0)
		fail(p, "the plan's session is closed");
}

/* ---- session ---- */

static void on_notice(void *arg, const char *severity, const char *message, const char *detail)
{
	struct build_plan *p = arg;
	(void)detail;
	long long tuples;
	if (!bp_parse_cliff_notice(message, &tuples))
		return;
	log_info("plan %d (%s): trial %s: %s", p->id, p->index_name, severity, message);
	p->notice_cliff = tuples ? tuples : 1;
	if (!isfinite(p->notice_s))
		p->notice_s = now_sec() - p->t0; /* the in-memory phase ends, the flush starts */
	char err[256];
	if (p->probing && p->s)
		pg_session_cancel(p->s, err, sizeof(err)); /* the probe has what it came for: stop its build now */
}

/* ---- the progress poller ---- */

static void eval_aside_end(struct build_plan *p);

static void poll_tick(evutil_socket_t fd, short what, void *arg);

static void poll_arm(struct build_plan *p)
{
	double s = p->poll_s > 0 ? p->poll_s : PLAN_POLL_S;
	struct timeval tv = {0, (long)(s * 1e6)};
	if (p->poll_timer)
		evtimer_add(p->poll_timer, &tv);
}

static void poll_result(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	p->poll_out = false;
	if (!p->polling || error || !PQntuples(res) || PQgetisnull(res, 0, 0))
		return;
	if (p->n_samples == PLAN_MAX_SAMPLES) {
		/* a long trial: every other sample, so the whole build stays */
		int k = 0;
		for (int i = 0; i < p->n_samples; i += 2, k++) {
			p->samples[k] = p->samples[i];
			p->sample_phase[k] = p->sample_phase[i];
		}
		p->n_samples = k;
	}
	double n = atof(PQgetvalue(res, 0, 0));
	const char *phase = PQgetvalue(res, 0, 1);
	p->samples[p->n_samples].t = now_sec() - p->t0;
	p->samples[p->n_samples].n = n;
	enum bp_phase ph = bp_phase_of(phase);
	p->sample_phase[p->n_samples] = (unsigned char)ph;
	/* tuples count only while they are assigned or loaded; the other
	 * phases' samples (initializing, k-means, waits) carry n = -1 and mark time */
	if (ph != BP_PH_LOAD && ph != BP_PH_ASSIGN)
		p->samples[p->n_samples].n = -1;
	p->n_samples++;
}

static void poll_tick(evutil_socket_t fd, short what, void *arg)
{
	struct build_plan *p = arg;
	(void)fd;
	(void)what;
	if (!p->polling)
		return;
	if (p->ps && pg_session_connected(p->ps) && !p->poll_out && p->s) {
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", pg_session_backend_pid(p->s));
		const char *params[] = {pid};
		p->poll_out = true;
		if (pg_session_execute(p->ps, "vg_plan_poll", 1, params, poll_result, p) < 0)
			p->poll_out = false;
	}
	poll_arm(p);
}

static void poll_start(struct build_plan *p)
{
	p->n_samples = 0;
	p->notice_s = NAN;
	p->polling = true;
	if (!p->poll_timer)
		p->poll_timer = evtimer_new(vg.base, poll_tick, p);
	poll_arm(p);
}

static void ps_up(void *arg, const char *error)
{
	struct build_plan *p = arg;
	(void)error;
	/* polled every 2 ms in an IVFFlat trial: parsed and planned once, not
	 * each time beside the build it watches */
	pg_session_query(p->ps,
	                 "PREPARE vg_plan_poll(int) AS SELECT tuples_done::float8, phase FROM "
	                 "pg_stat_progress_create_index WHERE pid = $1",
	                 0, NULL, NULL, NULL);
}

static void ps_lost(void *arg, const char *error)
{
	struct build_plan *p = arg;
	/* the plan goes on without progress samples: totals only */
	log_warn("plan %d (%s): the progress session was lost (%s): the trials are timed as wholes", p->id,
	         p->index_name, error ? error : "?");
	pg_session_close(p->ps);
	p->ps = NULL;
	p->poll_out = false;
	eval_aside_end(p);
}

static void on_up(void *arg, const char *error)
{
	struct build_plan *p = arg;
	(void)error;
	pg_session_on_notice(p->s, on_notice);
	plan_enter(p, PLAN_FACTS);
	plan_next(p);
}

static void on_lost(void *arg, const char *error)
{
	struct build_plan *p = arg;
	pg_session_close(p->s);
	p->s = NULL;
	if (p->state == PLAN_CLEANUP) {
		cleanup_done(p, NULL, NULL);
		return;
	}
	if (!p->error[0])
		snprintf(p->error, sizeof(p->error), "the plan's connection was lost: %s", error ? error : "?");
	cleanup(p);
}

/* ---- facts ---- */

static double num(const PGresult *res, int col)
{
	return PQntuples(res) && !PQgetisnull(res, 0, col) ? atof(PQgetvalue(res, 0, col)) : NAN;
}

static void replicas_read(struct build_plan *p, const PGresult *res, bool at_end)
{
	double now = now_sec();
	for (int i = 0; i < PQntuples(res) && i < 4; i++) {
		double lsn = PQgetisnull(res, i, 1) ? NAN : atof(PQgetvalue(res, i, 1));
		if (!at_end) {
			snprintf(p->r.replicas[i].name, sizeof(p->r.replicas[i].name), "%s", PQgetvalue(res, i, 0));
			p->replay0[i] = lsn;
			p->r.n_replicas = i + 1;
			continue;
		}
		if (i >= p->r.n_replicas)
			break;
		struct plan_replica *r = &p->r.replicas[i];
		double moved = lsn - p->replay0[i];
		/* only a replica that had WAL to replay shows its rate */
		r->replay_bps = isfinite(moved) && moved > 0 && now > p->wall0 ? moved / (now - p->wall0) : NAN;
		r->lag_s = r->replay_bps > 0 && p->r.wal_bytes > 0 ? p->r.wal_bytes / r->replay_bps : NAN;
	}
}

static void replicas_start(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, NULL, NULL))
		return;
	if (!error)
		replicas_read(p, res, false);
	plan_enter(p, PLAN_SAMPLE);
	plan_next(p);
}

/* lists of an IVFFlat definition (pgvector's default 100) */
static int def_lists(const char *def)
{
	const char *w = strstr(def, " WITH (");
	const char *l = w ? strstr(w, "lists") : NULL;
	if (!l)
		return 100;
	l += 5;
	while (*l == ' ' || *l == '=' || *l == '\'')
		l++;
	int v = atoi(l);
	return v > 0 ? v : 100;
}

/* the orphans found: dropped before the facts' answer moves the plan on
 * (a plain SELECT: a DO block costs a new backend 15 ms of PL/pgSQL); at
 * most 20 a plan, so their names always fit the statement and a pile of
 * them goes over the next few plans instead of never */
static void sweep_found(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (error || !res || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return;
	char sql[2000];
	if ((size_t)snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", PQgetvalue(res, 0, 0)) < sizeof(sql))
		pg_session_query(p->ps ? p->ps : p->s, sql, 0, NULL, NULL, NULL);
}

static void facts_result(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, error, "reading the table's facts"))
		return;
	if (PQntuples(res) != 1) {
		fail(p, "the live index was not found");
		return;
	}
	const struct vg_managed_index *mi = config_find_index(vg.cfg, p->index_name);
	if (!mi) {
		fail(p, "managed index %s vanished from the configuration", p->index_name);
		return;
	}
	p->r.rows = num(res, 0);
	p->relpages = num(res, 1);
	p->mwm_kb = (long)num(res, 2);
	p->max_pmw = (int)num(res, 3);
	p->min_scan_pages = num(res, 4);
	p->reloption_workers = (int)num(res, 5);
	p->live_bytes = num(res, 6);
	p->dims = PQgetisnull(res, 0, 7) ? 0 : atoi(PQgetvalue(res, 0, 7));
	snprintf(p->column, sizeof(p->column), "%s", PQgetvalue(res, 0, 8));
	p->wal0 = num(res, 10);
	p->wall0 = now_sec();
	p->r.mwm_bytes = p->mwm_kb * 1024.0;
	struct index_param ov[32];
	int n = 0;
	for (size_t i = 0; i < mi->n_with && n < 32; i++, n++) {
		ov[n].name = mi->with[i].name;
		ov[n].value = mi->with[i].value;
	}
	char err[256], name[64];
	snprintf(name, sizeof(name), "%.40s_vgplan", mi->index);
	/* the shape a rebuild would build (method, opclass, expression), as
	 * configured; preflight judges it before a job builds anything */
	char opclass[300] = "";
	if (mi->opclass && mi->opclass_schema)
		sql_qualified(mi->opclass_schema, mi->opclass, opclass, sizeof(opclass));
	else if (mi->opclass)
		quote_ident(mi->opclass, opclass, sizeof(opclass));
	const struct index_shape shape = {mi->method, mi->opclass ? opclass : NULL, mi->expression};
	bool shaped = mi->method || mi->opclass || mi->expression;
	if (indexdef_rewrite_shape(PQgetvalue(res, 0, 9), name, shaped ? &shape : NULL, ov, n, p->r.definition,
	                           sizeof(p->r.definition), err, sizeof(err)) < 0) {
		fail(p, "cannot derive the new definition: %s", err);
		return;
	}
	char rel[128];
	snprintf(rel, sizeof(rel), "vecgate.%s", p->scratch);
	if (indexdef_retarget(p->r.definition, rel, p->trial_index, p->def, sizeof(p->def)) < 0) {
		fail(p, "cannot retarget the definition to the scratch table");
		return;
	}
	const char *using = strstr(p->r.definition, " USING ");
	snprintf(p->r.method, sizeof(p->r.method), "%.*s", using ? (int)strcspn(using + 7, " (") : 1,
	         using ? using + 7 : "?");
	p->lists = def_lists(p->r.definition);
	if (!(p->r.rows > 0)) {
		fail(p, "the table is empty: nothing to plan");
		return;
	}
	/* one sample, built once or twice: the progress samples of one build
	 * give the cost curve that three builds of growing size gave as three
	 * noisy totals, at a third of the rows built */
	p->n_sizes = bp_sample_sizes(p->r.rows, mi->plan_sample_fraction, mi->plan_min_rows, 1, p->sizes);
	if (!strcmp(p->r.method, "ivfflat")) {
		/* a fifth of pgvector's k-means sample (build_plan.h): the
		 * trials' k-means cost a fifth and a 25th of the build's */
		bp_ivfflat_trials(p->lists, p->r.rows, fmax(p->sizes[0], 1), &p->ivf);
		p->sizes[0] = fmax(p->ivf.main_rows, p->ivf.kmeans_rows);
		p->poll_s = PLAN_POLL_FINE_S;
	}
	p->r.max_workers = p->max_pmw;
	p->r.workers = !strcmp(p->r.method, "hnsw")
	                   ? bp_hnsw_workers(p->relpages, p->max_pmw, p->mwm_kb, p->min_scan_pages, p->reloption_workers)
	                   : bp_parallel_workers(p->relpages, p->max_pmw, p->mwm_kb, p->min_scan_pages,
	                                         p->reloption_workers);
	query(p, SQL_PLAN_REPLICAS, 0, NULL, replicas_start);
}

/* ---- sample and trials ---- */

static void trial_built(void *arg, PGresult *res, const char *error);
static void run_trial(struct build_plan *p, double rows, long mwm_kb, bool own_table);

static void sample_done(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, error, "copying the sample into the scratch table"))
		return;
	p->copy_s = now_sec() - p->t0;
	p->sample_rows = atof(PQcmdTuples(res));
	if (p->sample_rows < 2) {
		fail(p, "the sample of the table came back empty");
		return;
	}
	/* every trial builds the whole sample */
	p->n_sizes = 1;
	p->sizes[0] = p->sample_rows;
	p->cur = 0;
	plan_enter(p, PLAN_TRIAL);
	/* the trials run with the workers the full build will use: the
	 * sample is too small for PostgreSQL to plan them by size, the
	 * reloption asks for them (the 32 MB per participant rule still
	 * applies, so a trial with less memory runs with fewer) */
	char sql[300];
	snprintf(sql, sizeof(sql), "ALTER TABLE vecgate.%s SET (parallel_workers = %d)", p->scratch, p->r.workers);
	pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
	if (p->eval_out) {
		/* the trials wait for the eval query: it would slow them, and the
		 * poller needs its session */
		p->eval_wait = true;
		return;
	}
	plan_next(p);
}

/* the statement before the build answered: the clock starts now */
static void trial_ready(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	(void)res;
	if (stopped(p, error, "preparing the trial"))
		return;
	p->notice_cliff = 0;
	p->t0 = now_sec();
	poll_start(p);
	char rel[128], name[64];
	snprintf(rel, sizeof(rel), "vecgate.%s", p->own_table ? p->trial_table : p->scratch);
	snprintf(name, sizeof(name), "%s", p->trial_index);
	/* the build's definition, but not CONCURRENTLY: that waits for every
	 * transaction in the database with an older snapshot (a report of
	 * half an hour held a plan that long, in preflight), and no other
	 * session touches the scratch table.  Its validation pass, 1 to 3% of
	 * a build, is left out */
	char sql[1400];
	const char *def = p->trial_def[0] ? p->trial_def : p->r.definition;
	if (indexdef_retarget(def, rel, name, sql, sizeof(sql)) < 0 || strncmp(sql, "CREATE INDEX ", 13)) {
		fail(p, "cannot retarget the definition");
		return;
	}
	query(p, sql, 0, NULL, trial_built);
}

static void trial_sized(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, error, "measuring the trial index"))
		return;
	p->r.trials[p->cur].index_bytes = num(res, 0);
	p->r.trials[p->cur].pages = num(res, 1);
	p->cur++;
	p->r.n_trials = p->cur;
	plan_next(p);
}

/* What the progress samples of the trial just built say: the in-memory
 * and on-disk per-insert costs, the flushes, k-means' time. */
static void read_progress(struct build_plan *p, struct plan_trial *t)
{
	const struct bp_sample *s = p->samples;
	int k = p->n_samples;
	t->progress_samples = k;
	t->notice_s = t->cliff_tuples ? p->notice_s : NAN;
	t->load_end_s = t->seconds;
	t->kmeans_s = NAN;
	t->cliff_flush_s = 0;
	double top = 0;
	for (int i = 0; i < k; i++) {
		if (s[i].n > top) {
			top = s[i].n;
			t->load_end_s = s[i].t;
		}
		double next = i + 1 < k ? s[i + 1].t : t->seconds;
		if (p->sample_phase[i] == BP_PH_KMEANS)
			/* k-means ended between this sample and the next: the middle,
			 * not the next (a short build has few samples, and the rest
			 * of it is scaled by rows: a whole poll's bias there is 10x) */
			t->kmeans_s = (s[i].t + next) / 2;
	}
	t->tail_s = fmax(0, t->seconds - t->load_end_s);
	bp_phase_seconds(s, p->sample_phase, k, t->seconds, t->rows, t->phase_s);
	double cliff = t->cliff_tuples > 0 ? (double)t->cliff_tuples : t->rows;
	/* in memory: from 5% of the way in (the first inserts into a tiny
	 * graph say little about a large one) to the cliff */
	if (bp_fit_rate(s, k, 0.05 * cliff, cliff, &t->mem) < 0)
		t->mem.ok = false;
	if (t->cliff_tuples > 0 && bp_fit_rate(s, k, cliff + 1, t->rows, &t->disk) == 0 && isfinite(t->notice_s)) {
		/* the flush at the NOTICE: the time from it to the first sample on
		 * disk, less the inserts the disk rate says happened meanwhile */
		for (int i = 0; i < k; i++)
			if (s[i].n > cliff && s[i].t > t->notice_s) {
				t->cliff_flush_s = fmax(0, s[i].t - t->notice_s - bp_rate_seconds(&t->disk, cliff, s[i].n));
				break;
			}
	} else {
		t->disk.ok = false;
	}
}

static void trial_built(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	double took = now_sec() - p->t0;
	poll_stop(p);
	if (p->state == PLAN_PROBE) {
		/* the probe is cancelled at the NOTICE: that error is its success */
		p->probing = false;
		if (stopped(p, p->notice_cliff ? NULL : error, "the memory probe"))
			return;
		p->probe_cliff[p->probed++] = p->notice_cliff;
		plan_enter(p, PLAN_TRIAL);
		char sql[300];
		snprintf(sql, sizeof(sql), "DROP INDEX IF EXISTS vecgate.%s", p->trial_index);
		pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
		plan_next(p);
		return;
	}
	(void)res;
	char what[100];
	snprintf(what, sizeof(what), "trial build on %.0f rows", p->r.trials[p->cur].rows);
	const char *need = error && !p->abandoned ? strstr(error, "memory required is ") : NULL;
	if (need && !p->retried) {
		/* IVFFlat's k-means is larger than vecgate's estimate: pgvector
		 * said how much it needs; the same trial once more with that */
		long mb = atol(need + 19);
		p->retried = true;
		p->kmeans_kb = fmax(p->kmeans_kb, mb * 1024.0);
		p->r.trials[p->cur].mwm_kb = (double)(mb + 1) * 1024;
		p->r.trials[p->cur].floored = true;
		p->statement_out = false;
		char sql[200];
		snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS vecgate.%s", p->trial_table);
		pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
		double rows = p->r.trials[p->cur].rows;
		run_trial(p, rows, (mb + 1) * 1024, rows < p->sample_rows);
		return;
	}
	p->retried = false;
	if (stopped(p, error, what))
		return;
	struct plan_trial *t = &p->r.trials[p->cur];
	t->seconds = took;
	t->cliff_tuples = p->notice_cliff;
	read_progress(p, t);
	log_info("plan %d (%s): trial %d: %.0f rows in %.2f s (maintenance_work_mem %.0f kB%s)", p->id, p->index_name,
	         p->cur + 1, t->rows, took, t->mwm_kb, t->cliff_tuples ? ", graph did not fit" : "");
	char sql[400];
	snprintf(sql, sizeof(sql),
	         "SELECT pg_relation_size('vecgate.%s')::float8, pg_relation_size('vecgate.%s')::float8 / "
	         "current_setting('block_size')::float8",
	         p->trial_index, p->own_table ? p->trial_table : p->scratch);
	query(p, sql, 0, NULL, trial_sized);
	snprintf(sql, sizeof(sql), "DROP INDEX IF EXISTS vecgate.%s", p->trial_index);
	pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS vecgate.%s", p->trial_table);
	pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
}

/* one trial: its rows in a table of their own (the largest uses the
 * sample itself), maintenance_work_mem scaled to them, then the build */
static void run_trial(struct build_plan *p, double rows, long mwm_kb, bool own_table)
{
	char sql[600];
	p->own_table = own_table;
	if (own_table) {
		snprintf(sql, sizeof(sql), "CREATE UNLOGGED TABLE vecgate.%s AS SELECT * FROM vecgate.%s LIMIT %.0f",
		         p->trial_table, p->scratch, rows);
		query(p, sql, 0, NULL, NULL);
	}
	/* an earlier trial's index, should its drop have failed */
	snprintf(sql, sizeof(sql), "DROP INDEX IF EXISTS vecgate.%s", p->trial_index);
	query(p, sql, 0, NULL, NULL);
	snprintf(sql, sizeof(sql), "SET maintenance_work_mem = '%ldkB'", mwm_kb);
	query(p, sql, 0, NULL, trial_ready);
}

/* the work done so far, weighted like the builds (n^1.2) */
static void progress(struct build_plan *p)
{
	double total = 1, done = p->state > PLAN_SAMPLE ? 1 : 0;
	for (int i = 0; i < p->n_sizes; i++) {
		double w = pow(p->sizes[i] / p->sizes[0], 1.2);
		total += w;
		if (i < p->cur || p->state > PLAN_TRIAL)
			done += w;
	}
	p->percent = fmin(99, 100 * done / total);
}

/* ---- eval cost ---- */

static void eval_timed(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	(void)res;
	double took = now_sec() - p->t0;
	p->statement_out = false;
	if (!error)
		p->q_s = isfinite(p->q_s) ? fmin(p->q_s, took) : took;
	if (p->abandoned) {
		fail(p, "abandoned by its owner");
		return;
	}
	p->cur++;
	plan_next(p);
}

static void eval_vector(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, NULL, NULL))
		return;
	snprintf(p->vec, sizeof(p->vec), "%s", !error && PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
	p->cur = p->vec[0] ? 0 : PLAN_EVAL_RUNS; /* no vector: the eval's queries are not timed */
	plan_next(p);
}

/* The eval query is timed on the progress session while the main one
 * copies the sample: the poller has nothing to do until the trials, and
 * the query's wall time (a tenth of a small IVFFlat plan) is hidden. */
static void eval_aside_end(struct build_plan *p)
{
	if (!p->eval_out)
		return;
	p->eval_out = false;
	if (p->eval_wait) {
		p->eval_wait = false;
		plan_next(p);
	}
}

static void eval_aside_timed(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	(void)res;
	if (!error)
		p->q_s = now_sec() - p->eval_t0;
	eval_aside_end(p);
}

static void eval_aside_vector(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, p->index_name);
	if (error || !PQntuples(res) || !mi || !p->ps) {
		eval_aside_end(p);
		return;
	}
	snprintf(p->vec, sizeof(p->vec), "%s", PQgetvalue(res, 0, 0));
	char k[16];
	snprintf(k, sizeof(k), "%d", mi->k);
	const char *params[] = {p->vec, k};
	p->eval_t0 = now_sec();
	if (pg_session_query(p->ps, mi->eval_query, 2, params, eval_aside_timed, p) < 0)
		eval_aside_end(p);
}

static void eval_aside_start(struct build_plan *p, const char *rel)
{
	if (!p->ps || !pg_session_connected(p->ps) || !p->column[0])
		return;
	char col[300], sql[1500];
	quote_ident(p->column, col, sizeof(col));
	snprintf(sql, sizeof(sql), "SELECT %s::text FROM %s WHERE %s IS NOT NULL LIMIT 1", col, rel, col);
	if (pg_session_query(p->ps, sql, 0, NULL, eval_aside_vector, p) == 0)
		p->eval_out = true;
}

static void replicas_end(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, NULL, NULL))
		return;
	if (!error)
		replicas_read(p, res, true);
	cleanup(p);
}

/* the primary's WAL over the plan, then the replicas' replay over it */
static void wal_end(void *arg, PGresult *res, const char *error)
{
	struct build_plan *p = arg;
	if (stopped(p, NULL, NULL))
		return;
	if (!error) {
		p->wal1 = num(res, 0);
		double dt = now_sec() - p->wall0;
		p->r.wal_rate_bps = dt > 0 && isfinite(p->wal1) && isfinite(p->wal0) ? (p->wal1 - p->wal0) / dt : NAN;
	}
	query(p, SQL_PLAN_REPLICAS, 0, NULL, replicas_end);
}

/* ---- the model: routing/build_plan.c over what was measured ---- */

static void note(struct build_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct build_plan *p, const char *fmt, ...)
{
	size_t l = strlen(p->r.notes);
	if (l + 3 >= sizeof(p->r.notes))
		return;
	if (l)
		l += (size_t)snprintf(p->r.notes + l, sizeof(p->r.notes) - l, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->r.notes + l, sizeof(p->r.notes) - l, fmt, ap);
	va_end(ap);
}

/* HNSW: the phase model (build_plan.h) from the trials' progress. */
static void conclude_hnsw(struct build_plan *p)
{
	struct plan_result *r = &p->r;
	const struct plan_trial *mem = NULL, *disk = NULL;
	for (int i = 0; i < r->n_trials; i++) {
		const struct plan_trial *t = &r->trials[i];
		if (t->kind == TRIAL_MEMORY && t->mem.ok)
			mem = t;
		if (t->disk.ok && (!disk || t->kind == TRIAL_MEMORY))
			disk = t; /* the memory trial's own disk phase, when it had one, is at the real cliff */
	}
	const struct plan_trial *first = &r->trials[0];
	if (!mem) {
		/* too few progress samples to fit (a trial quicker than the
		 * poller, a loaded server, or the poller's session failed): the
		 * memory trial's total, scaled by rows, a lower bound */
		r->predicted_s = first->seconds * r->rows / first->rows;
		r->predicted_lo = r->predicted_s;
		r->predicted_hi = r->predicted_s * pow(r->rows / first->rows, 0.3);
		note(p, "too few progress samples of the trials to fit the phases: scaled by rows, a lower bound");
		return;
	}
	struct bp_hnsw_model *m = &r->model;
	memset(m, 0, sizeof(*m));
	m->rows = r->rows;
	m->cliff = r->cliff ? r->cliff_tuples : 0;
	m->mem = mem->mem;
	double mem_top = mem->cliff_tuples > 0 ? (double)mem->cliff_tuples : mem->rows;
	bp_rate_shrink(&m->mem, BP_D_PRIOR_MEMORY, BP_D_SPREAD, 0.05 * mem_top, mem_top);
	m->mem_pivot = mem_top * 0.525;
	/* after the inserts: the final flush (a graph that fit), linear in
	 * the rows */
	m->flush_per_tuple = mem->tail_s / mem->rows;
	m->disk_factor = 3;
	if (disk) {
		m->disk = disk->disk;
		m->disk_pivot = ((double)disk->cliff_tuples + disk->rows) / 2;
		bp_rate_shrink(&m->disk, BP_D_PRIOR_DISK, BP_D_SPREAD_DISK, (double)disk->cliff_tuples + 1, disk->rows);
		m->cliff_flush_per_tuple = disk->cliff_flush_s / (double)disk->cliff_tuples;
		if (m->cliff > 0)
			m->flush_per_tuple = disk->tail_s / disk->rows; /* the regime the build ends in */
	} else if (m->cliff > 0) {
		note(p, "no trial reached the on-disk phase: it is taken as 3 times the in-memory cost per insert, a guess");
	}
	r->predicted_s = bp_hnsw_predict(m, &r->predicted_lo, &r->predicted_hi);
	r->have_model = true;
	/* the ETA's curve: t ~ n^(1 + d) in memory */
	r->have_fit = true;
	memset(&r->fit, 0, sizeof(r->fit));
	r->fit.model = BP_POWER;
	r->fit.k = m->mem.k;
	r->fit.a = m->mem.a / (1 + m->mem.d);
	r->fit.b = 1 + m->mem.d;
	r->fit.r2 = NAN;
	if (mem->mem.k < 3)
		note(p, "the memory trial gave too few progress samples for a slope: its mean rate, flat, a lower bound");
	if (mem->workers > 0)
		note(p, "the memory trial ran with the build's %d parallel worker(s); progress counts the leader's "
		     "inserts, so the slope is the leader's", mem->workers);
	if (disk && disk->kind == TRIAL_DISK && r->workers > 0 && disk->mwm_kb < 32768.0 * (r->workers + 1))
		note(p, "the on-disk trial's share of maintenance_work_mem (%.0f kB) leaves under 32 MB per participant, "
		     "so it ran without the build's workers: the on-disk phase is an upper bound", disk->mwm_kb);
}

/* IVFFlat: the component model (build_plan.h) from the two trials' phases. */
static void conclude_ivfflat(struct build_plan *p)
{
	struct plan_result *r = &p->r;
	const struct plan_trial *main = NULL, *km = NULL;
	for (int i = 0; i < r->n_trials; i++) {
		const struct plan_trial *t = &r->trials[i];
		if (t->kind == TRIAL_KMEANS)
			km = t;
		else if (!main)
			main = t;
	}
	if (!main) {
		r->predicted_s = NAN;
		return;
	}
	if (!km && p->ivf.kmeans_rows <= 0)
		km = main; /* the main trial ran the build's k-means */
	if (!km || !(km->phase_s[BP_PH_KMEANS] > 0) || main->progress_samples < 3) {
		/* no phases (the poller's session failed, or a build too short to
		 * be sampled): the main trial as a whole, scaled by rows; its
		 * k-means ran on fewer samples than the build's, so a lower bound */
		r->predicted_s = main->rows > 0 ? main->seconds * r->rows / main->rows : NAN;
		r->predicted_lo = r->predicted_s;
		r->predicted_hi = r->predicted_s * 1.5;
		note(p, "the trials' phases were not seen: the trial scaled by rows as a whole, a lower bound");
		return;
	}
	struct bp_ivf_model m = {
	    .rows = r->rows,
	    .pages = p->relpages > 0 ? p->relpages : r->rows / fmax(1, main->rows) * main->pages,
	    .lists = p->lists,
	};
	m.kmeans.rows = km == main ? 0 : km->rows;
	m.kmeans.pages = km->pages;
	m.kmeans.lists = km->lists;
	memcpy(m.kmeans.phase_s, km->phase_s, sizeof(m.kmeans.phase_s));
	m.main.rows = main->rows;
	m.main.pages = main->pages;
	m.main.lists = main->lists;
	memcpy(m.main.phase_s, main->phase_s, sizeof(m.main.phase_s));
	r->predicted_s = bp_ivfflat_predict(&m, &r->ivf, &r->predicted_lo, &r->predicted_hi);
	r->have_ivf = true;
	r->kmeans_s = r->ivf.kmeans_s + r->ivf.sample_s;
	if (r->sort_spills)
		note(p, "the build's tuple sort spills to disk, the trial's (a sample that fits its memory) does not; "
		     "measured on 200k rows, a spilling sort was no slower (its runs stay in the CPU caches)");
}

static void conclude(struct build_plan *p)
{
	struct plan_result *r = &p->r;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, p->index_name);
	bool hnsw = !strcmp(r->method, "hnsw"), ivf = !strcmp(r->method, "ivfflat");
	bool floored = false;
	for (int i = 0; i < r->n_trials; i++)
		floored |= r->trials[i].floored;
	const struct plan_trial *last = &r->trials[0];
	/* memory first: the HNSW model needs where the full build overflows */
	double bpt = NAN;
	bool bound = false;
	/* the graph's memory: the probes' two budgets when they overflowed,
	 * else the trials that did.  pgvector counts the memory context's
	 * blocks, which grow up to 8 MB each, so a trial's scaled budget of a
	 * few MB overflows early by up to a block; the probes' 1 and 2 MB are
	 * counted in small blocks (measured: 1.30 kB a tuple in 1 and 2 MB,
	 * 1.44 kB in 5.7 MB, 1.29 kB in the 57 MB of the build itself) */
	double kbs[BP_MAX_TRIALS + 2], held[BP_MAX_TRIALS + 2], fixed = 0;
	int npts = 0;
	for (int i = 0; i < p->probed; i++)
		if (p->probe_cliff[i] > 0) {
			kbs[npts] = 1024.0 * (i + 1);
			held[npts++] = (double)p->probe_cliff[i];
		}
	for (int i = 0; i < r->n_trials; i++)
		if (r->trials[i].cliff_tuples > 0 && (r->trials[i].kind == TRIAL_MEMORY || !npts)) {
			/* the memory trial met the NOTICE in the build's own budget: exact */
			if (r->trials[i].kind == TRIAL_MEMORY)
				npts = 0;
			kbs[npts] = r->trials[i].mwm_kb;
			held[npts++] = (double)r->trials[i].cliff_tuples;
			if (r->trials[i].kind == TRIAL_MEMORY)
				break;
		}
	if (bp_graph_memory(kbs, held, npts, &bpt, &fixed) < 0)
		bpt = NAN;
	r->probe_tuples = p->probed ? (double)p->probe_cliff[0] : 0;
	r->graph_fixed_bytes = fixed;
	if (hnsw) {
		if (!isfinite(bpt) && r->n_trials) {
			/* the probe got through 1 MB without the NOTICE */
			bpt = 1024.0 * 1024 / fmax(p->sample_rows, 1);
			bound = true;
		}
		r->peak_bytes = fixed + bpt * r->rows;
		r->peak_is_bound = bound;
		r->cliff = !bound && r->peak_bytes > r->mwm_bytes;
		for (int i = 0; i < r->n_trials; i++)
			if (r->trials[i].kind == TRIAL_DISK && !r->trials[i].cliff_tuples && r->cliff) {
				/* the same share of memory held the sample's whole graph */
				r->cliff = false;
				note(p, "the probes suggested the graph would not fit, but the sample's graph fit its share of "
				     "maintenance_work_mem: so will the build's");
			}
		r->cliff_tuples = r->cliff ? fmax(0, r->mwm_bytes - fixed) / bpt : NAN;
		r->mwm_to_fit_bytes = ceil(r->peak_bytes * 1.1 / (1024 * 1024)) * 1024 * 1024;
		if (r->cliff)
			note(p, "the graph needs about %.0f MB, maintenance_work_mem is %.0f MB: the build goes on disk after "
			     "about %.0f tuples (pgvector: \"hnsw graph no longer fits into maintenance_work_mem\"), several "
			     "times slower per tuple%s",
			     r->peak_bytes / 1048576, r->mwm_bytes / 1048576, r->cliff_tuples,
			     floored ? "; the on-disk trial's maintenance_work_mem could not be scaled below 1 MB" : "");
		conclude_hnsw(p);
	} else if (ivf) {
		/* what pgvector asked a trial for, when more than the estimate */
		r->peak_bytes = fmax(bp_ivfflat_kmeans_bytes(p->lists, p->dims, r->rows), p->kmeans_kb * 1024);
		r->cliff = r->peak_bytes > r->mwm_bytes;
		r->mwm_to_fit_bytes = ceil(r->peak_bytes * 1.1 / (1024 * 1024)) * 1024 * 1024;
		r->sort_spills = bp_ivfflat_sort_bytes(p->dims, r->rows) > r->mwm_bytes;
		if (r->cliff)
			note(p, "IVFFlat's k-means needs about %.0f MB (lists %d, %d dimensions): the build fails with "
			     "\"memory required is ...\" under maintenance_work_mem %.0f MB", r->peak_bytes / 1048576,
			     p->lists, p->dims, r->mwm_bytes / 1048576);
		conclude_ivfflat(p);
	} else {
		r->peak_bytes = NAN;
		r->mwm_to_fit_bytes = NAN;
		r->predicted_s = last->rows > 0 ? last->seconds * r->rows / last->rows : NAN;
		r->predicted_lo = r->predicted_s * 0.75;
		r->predicted_hi = r->predicted_s * 1.5;
		note(p, "an access method vecgate has no model for: the trial scaled by rows");
	}
	if (floored && !r->cliff)
		note(p, ivf ? "the trials' maintenance_work_mem was raised over the sample's share to hold k-means' working "
		              "set (pgvector sizes it for its full sample whatever the table) and the trial's tuple sort"
		            : "maintenance_work_mem could not be scaled below 1 MB for the trial");
	if (r->predicted_s < 0)
		r->predicted_s = 0;
	r->index_bytes = last->rows > 0 ? last->index_bytes * r->rows / last->rows : NAN;
	/* the new index's pages are WAL-logged once when the build writes them;
	 * CREATE INDEX CONCURRENTLY's validation adds little */
	r->wal_bytes = r->index_bytes;
	r->disk_need_bytes = r->index_bytes + r->wal_bytes;
	if (mi && mi->free_space_bytes)
		r->free_bytes = (double)mi->free_space_bytes;
	for (int i = 0; i < r->n_replicas; i++) {
		struct plan_replica *rp = &r->replicas[i];
		rp->lag_s = rp->replay_bps > 0 ? r->wal_bytes / rp->replay_bps : NAN;
	}
	if (r->workers > 0)
		note(p, "the build will use %d parallel worker(s) (max_parallel_maintenance_workers %d); the trials ran "
		     "with the same (the scratch table's parallel_workers), where their memory allowed", r->workers,
		     r->max_workers);
	/* the eval: one pass over the table for the ground truth and the
	 * queries, for baseline, verify and watch */
	double stream = p->sample_rows > 0 ? p->copy_s * r->rows / p->sample_rows : NAN;
	r->eval_s = 3 * (stream + r->eval_queries * (isfinite(p->q_s) ? p->q_s : 0));
	r->eval_query_s = p->q_s;
}

/* The probes say the full graph will not fit the build's memory. */
static bool probe_overflows(const struct build_plan *p)
{
	double kbs[2], held[2], bpt, fixed;
	int n = 0;
	for (int i = 0; i < p->probed; i++)
		if (p->probe_cliff[i] > 0) {
			kbs[n] = 1024.0 * (i + 1);
			held[n++] = (double)p->probe_cliff[i];
		}
	return bp_graph_memory(kbs, held, n, &bpt, &fixed) == 0 && fixed + bpt * p->r.rows > p->r.mwm_bytes;
}

/* ---- the one transition function ---- */

static void plan_next(struct build_plan *p)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, p->index_name);
	char sql[2600], rel[700], live[700];
	if (p->abandoned && p->state != PLAN_CLEANUP) {
		fail(p, "abandoned by its owner");
		return;
	}
	if (!mi) {
		fail(p, "managed index %s vanished from the configuration", p->index_name);
		return;
	}
	switch (p->state) {
	case PLAN_CONNECTING:
		return;
	case PLAN_FACTS: {
		snprintf(p->step, sizeof(p->step), "reading the table's size and the server's settings");
		pg_session_query(p->s, "SET statement_timeout = 0", 0, NULL, NULL, NULL);
		for (size_t i = 0; i < mi->n_maintenance; i++) {
			const char *names[] = {mi->maintenance[i].name};
			const char *values[] = {mi->maintenance[i].value};
			if (sql_session_settings(names, values, 1, sql, sizeof(sql)) == 0)
				pg_session_query(p->s, sql, 0, NULL, NULL, NULL);
		}
		/* scratch tables of plans whose backend is gone (a vecgate that
		 * died mid-plan) go, on the progress session while it is idle:
		 * beside the facts, not before them (a new backend's first look
		 * at the catalog took 11 ms of a 0.2 s plan) */
		pg_session_query(p->s, "CREATE SCHEMA IF NOT EXISTS vecgate", 0, NULL, NULL, NULL);
		pg_session_query(p->ps ? p->ps : p->s,
		                 "SELECT string_agg(format('vecgate.%I', o.relname), ', ') FROM (SELECT c.relname FROM pg_class "
		                 "c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'vecgate' AND c.relkind = "
		                 "'r' AND c.relname ~ '^plan_[0-9]+_' AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE "
		                 "c.relname LIKE 'plan\\_' || a.pid || '\\_%') LIMIT 20) o",
		                 0, NULL, sweep_found, p);
		int pid = pg_session_backend_pid(p->s);
		snprintf(p->scratch, sizeof(p->scratch), "plan_%d_%d_sample", pid, p->id);
		snprintf(p->trial_table, sizeof(p->trial_table), "plan_%d_%d_trial", pid, p->id);
		snprintf(p->trial_index, sizeof(p->trial_index), "plan_%d_%d_index", pid, p->id);
		sql_qualified(mi->schema, mi->table, rel, sizeof(rel));
		sql_qualified(mi->schema, mi->index, live, sizeof(live));
		/* settings by current_setting(), not pg_settings: that view
		 * builds a row for every setting, 3 ms and 120 page faults of a
		 * new backend (at 14 us a fault on the bench machine) */
		snprintf(sql, sizeof(sql),
		         "SELECT CASE WHEN c.reltuples > 0 THEN c.reltuples::float8 ELSE (SELECT count(*) FROM %s)::float8 "
		         "END, c.relpages::float8, pg_size_bytes(current_setting('maintenance_work_mem'))::float8 / 1024, "
		         "current_setting('max_parallel_maintenance_workers')::int, "
		         "pg_size_bytes(current_setting('min_parallel_table_scan_size'))::float8 / "
		         "current_setting('block_size')::float8, coalesce((SELECT "
		         "option_value::int FROM pg_options_to_table(c.reloptions) WHERE option_name = 'parallel_workers'), "
		         "-1), pg_relation_size(i.indexrelid)::float8, a.atttypmod, a.attname, pg_get_indexdef(i.indexrelid), "
		         "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 "
		         "END FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid LEFT JOIN pg_attribute a ON a.attrelid = "
		         "i.indrelid AND a.attnum = i.indkey[0] WHERE i.indexrelid = $1::regclass",
		         rel);
		const char *params[] = {live};
		query(p, sql, 1, params, facts_result);
		return;
	}
	case PLAN_SAMPLE: {
		double top = p->sizes[p->n_sizes - 1];
		/* SYSTEM reads whole pages: a little more than needed, then a
		 * random order so every trial's prefix is a random sample too */
		double pct = fmin(100, 100 * top / p->r.rows * 1.3 + 0.5);
		char sample[64] = "";
		if (pct < 50)
			snprintf(sample, sizeof(sample), " TABLESAMPLE SYSTEM (%.3f)", pct);
		sql_qualified(mi->schema, mi->table, rel, sizeof(rel));
		snprintf(sql, sizeof(sql),
		         "CREATE UNLOGGED TABLE vecgate.%s AS SELECT * FROM %s%s ORDER BY random() LIMIT %.0f", p->scratch,
		         rel, sample, top);
		snprintf(p->step, sizeof(p->step), "copying a sample of %.0f rows into vecgate.%s", top, p->scratch);
		p->t0 = now_sec();
		query(p, sql, 0, NULL, sample_done);
		eval_aside_start(p, rel);
		return;
	}
	case PLAN_TRIAL: {
		progress(p);
		bool hnsw = !strcmp(p->r.method, "hnsw");
		const struct plan_trial *first = &p->r.trials[0];
		double rows = p->sample_rows;
		long scaled = bp_trial_mwm_kb(p->mwm_kb, rows, p->r.rows, 1024);
		enum plan_trial_kind kind;
		long kb;
		bool ivf = !strcmp(p->r.method, "ivfflat");
		p->trial_def[0] = 0;
		if (p->cur == 0) {
			/* HNSW: the sample with the build's own memory and workers,
			 * the in-memory cost over every graph size up to the sample's
			 * (or up to where the build's memory runs out, when the sample
			 * is larger than that); the rest: the scaled regime */
			kind = hnsw ? TRIAL_MEMORY : TRIAL_SCALED;
			kb = hnsw ? p->mwm_kb : scaled;
			if (ivf) {
				rows = fmin(p->ivf.main_rows, p->sample_rows);
				kb = scaled = bp_trial_mwm_kb(p->mwm_kb, rows, p->r.rows, 1024);
				/* k-means must fit, or the trial fails where the build may not */
				double km = fmax(bp_ivfflat_kmeans_bytes(p->lists, p->dims, rows) / 1024, p->kmeans_kb) * 1.05;
				if (kb < km)
					kb = (long)ceil(km);
				/* and the tuple sort, twice over: a sort of a few MB that
				 * spills pays the temporary files' start-up, which scaled by
				 * rows put a 16 MB build 0.4 s (a third) over, while the
				 * build's own spilled sort was measured no slower than one
				 * in memory */
				double sort_kb = 2 * bp_ivfflat_sort_bytes(p->dims, rows) / 1024;
				if (kb < sort_kb)
					kb = (long)ceil(sort_kb);
			}
		} else if (ivf && p->cur == 1 && p->ivf.kmeans_rows > 0) {
			/* the same sample with lists cut to keep the build's samples
			 * per list: a k-means a 25th of the build's, timed by phase */
			char lists[16], err[256], name[64];
			snprintf(lists, sizeof(lists), "%d", p->ivf.kmeans_lists);
			const struct index_param ov[] = {{"lists", lists}};
			snprintf(name, sizeof(name), "%s", p->trial_index);
			if (indexdef_rewrite(p->r.definition, name, ov, 1, p->trial_def, sizeof(p->trial_def), err,
			                     sizeof(err)) < 0) {
				fail(p, "cannot set the k-means trial's lists: %s", err);
				return;
			}
			kind = TRIAL_KMEANS;
			rows = fmin(p->ivf.kmeans_rows, p->sample_rows);
			scaled = bp_trial_mwm_kb(p->mwm_kb, rows, p->r.rows, 1024);
			double km = bp_ivfflat_kmeans_bytes(p->ivf.kmeans_lists, p->dims, rows) / 1024 * 1.05;
			kb = scaled < km ? (long)ceil(km) : scaled;
		} else if (hnsw && p->cur == 1 && !first->cliff_tuples &&
		           (p->probed == 0 || (p->probed == 1 && p->probe_cliff[0] > 0))) {
			/* the sample's graph fit: builds in 1 MB and in 2 MB tell the
			 * graph's bytes per tuple and pgvector's fixed part; each is
			 * cancelled at the NOTICE, so they cost a few thousand inserts */
			plan_enter(p, PLAN_PROBE);
			p->probing = true;
			snprintf(p->step, sizeof(p->step), "memory probe: the graph's size per tuple in %d MB", p->probed + 1);
			run_trial(p, p->sample_rows, 1024L * (p->probed + 1), false);
			return;
		} else if (hnsw && p->cur == 1 && !first->cliff_tuples && probe_overflows(p)) {
			/* the full graph will not fit: the on-disk inserts are measured
			 * on the sample in its share of the build's memory, so the same
			 * share of its graph is built in memory first.  An on-disk
			 * insert costs more after a smaller in-memory start, at the same
			 * graph size (30k rows, m 16, ef_construction 64: 1,577 us
			 * against 955 at 7,000 to 9,000 tuples after 1 MB and after 8 MB,
			 * 2,502 against 1,718 at 25,000 to 30,000), so PostgreSQL's
			 * least memory, which gave a longer lever for the slope, put the
			 * level 30 to 65% high; the slope now leans on the prior */
			kind = TRIAL_DISK;
			kb = scaled;
		} else {
			plan_enter(p, PLAN_EVAL);
			p->cur = 0;
			plan_next(p);
			return;
		}
		if (p->cur >= BP_MAX_TRIALS) {
			fail(p, "too many trials");
			return;
		}
		struct plan_trial *t = &p->r.trials[p->cur];
		t->kind = kind;
		t->rows = rows;
		t->mwm_kb = (double)kb;
		t->floored = (kind == TRIAL_SCALED || kind == TRIAL_DISK) && (double)kb > (double)p->mwm_kb * rows / p->r.rows * 1.01;
		t->lists = !ivf ? 0 : kind == TRIAL_KMEANS ? p->ivf.kmeans_lists : p->lists;
		t->workers = p->r.workers;
		snprintf(p->step, sizeof(p->step), "trial build %d (%s) on %.0f rows (maintenance_work_mem %ld kB)",
		         p->cur + 1,
		         kind == TRIAL_MEMORY   ? "in memory"
		         : kind == TRIAL_DISK   ? "on disk"
		         : kind == TRIAL_KMEANS ? "k-means"
		                                : "scaled",
		         rows, kb);
		/* a trial on fewer rows than the sample builds a prefix of it */
		run_trial(p, rows, kb, rows < p->sample_rows);
		return;
	}
	case PLAN_PROBE:
		return; /* trial_built() moves on */
	case PLAN_EVAL:
		progress(p);
		snprintf(p->step, sizeof(p->step), "timing the eval query");
		if (isfinite(p->q_s))
			p->cur = PLAN_EVAL_RUNS; /* timed during the sample's copy */
		if (!p->vec[0] && p->cur == 0 && p->column[0]) {
			char col[300];
			quote_ident(p->column, col, sizeof(col));
			snprintf(sql, sizeof(sql), "SELECT %s::text FROM vecgate.%s LIMIT 1", col, p->scratch);
			p->cur = -1;
			query(p, sql, 0, NULL, eval_vector);
			return;
		}
		if (p->vec[0] && p->cur < PLAN_EVAL_RUNS) {
			char k[16];
			snprintf(k, sizeof(k), "%d", mi->k);
			const char *params[] = {p->vec, k};
			p->t0 = now_sec();
			query(p, mi->eval_query, 2, params, eval_timed);
			return;
		}
		conclude(p);
		query(p,
		      "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), "
		      "'0/0')::float8 END",
		      0, NULL, wal_end);
		return;
	case PLAN_CLEANUP:
	case PLAN_DONE:
	case PLAN_FAILED:
		return;
	}
}

/* ---- API ---- */

struct build_plan *plan_start(const struct vg_managed_index *mi, int eval_queries, plan_cb cb, void *arg, char *err,
                              size_t errlen)
{
	for (struct build_plan *q = plans; q; q = q->next)
		if (!strcmp(q->index_name, mi->name) && plan_running(q) && !q->abandoned) {
			snprintf(err, errlen, "a plan of %s is already running (%s)", mi->name, q->step);
			return NULL;
		}
	struct build_plan *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->id = ++next_plan_id;
	p->index_name = strdup(mi->name);
	p->started = p->entered = now_sec();
	p->cb = cb;
	p->cb_arg = arg;
	p->q_s = NAN;
	p->r.eval_queries = eval_queries;
	p->r.free_bytes = p->r.wal_rate_bps = p->r.predicted_s = p->r.cost_ratio = p->r.eval_query_s = NAN;
	snprintf(p->step, sizeof(p->step), "connecting");
	p->s = index_session_open(mi, "plan", on_up, on_lost, p);
	if (!p->s) {
		snprintf(err, errlen, "cannot open a session to the index's backend: %s", pg_session_connect_error());
		plan_free(p);
		return NULL;
	}
	/* without it the trials are timed as wholes (a note says so) */
	p->ps = index_session_open(mi, "plan progress", ps_up, ps_lost, p);
	p->next = plans;
	plans = p;
	prune(mi->name);
	log_info("plan %d (%s): started", p->id, p->index_name);
	return p;
}

void plan_abandon(struct build_plan *p)
{
	if (!p)
		return;
	p->cb = NULL;
	if (!plan_running(p)) {
		p->abandoned = true;
		return;
	}
	p->abandoned = true;
	char err[256];
	if (p->statement_out && p->s && p->state != PLAN_CLEANUP)
		pg_session_cancel(p->s, err, sizeof(err));
	if (p->eval_out && p->ps)
		pg_session_cancel(p->ps, err, sizeof(err)); /* the plan waits for it before moving on */
	if (p->state == PLAN_CONNECTING)
		fail(p, "abandoned by its owner");
}

void plan_shutdown(void)
{
	while (plans) {
		struct build_plan *p = plans;
		plans = p->next;
		plan_free(p);
	}
}
