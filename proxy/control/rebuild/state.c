/*
 * A rebuild job's durable life: a session per job holds the index's
 * advisory lock (only its holder drives the job) and records every
 * transition in vecgate.jobs / vecgate.job_steps; after a restart an
 * unfinished job whose lock is free is adopted, the truth in the catalog
 * decides where it goes on (through job_resume, like every transition), and
 * the newest finished job is kept as a read-only record.
 *
 * The state session is a link: when PostgreSQL restarts it comes back and
 * takes the lock again (it went with the old session).  Meanwhile the
 * transitions wait in the job's history and are written once the lock is
 * held again; if another instance holds it by then, that one drives the job
 * and this one stops (JEV_TAKEN_OVER).
 *
 * Several instances: the one holding the lock drives the job and writes a
 * heartbeat; every other one follows it (its state, who drives it, since
 * when) and tries the lock every second.  A driver that dies loses the lock
 * with its session, and the first follower to take it resumes the job; a
 * driver that is silent for takeover_seconds (frozen, cut off) has its
 * sessions ended first.  Every step that changes an index checks, in the
 * same transaction or right before the statement, that this instance's
 * state session still holds the lock (fencing).
 */
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the state session: schema, advisory lock, job row ---- */

/* this instance's own previous job of the index letting go of the lock:
 * tried every 0.2 s for a minute */
#define LOCK_WAIT_US 200000
#define LOCK_WAIT_TRIES 300

static void fmt_or_null(char *buf, size_t len, double v, const char **out)
{
	if (isnan(v)) {
		*out = NULL;
		return;
	}
	snprintf(buf, len, "%.6f", v);
	*out = buf;
}

static void step_written(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	if (error) {
		log_warn("rebuild %d: cannot record a step in vecgate.job_steps: %s", job->id, error);
		/* an outage fails what is in flight just before the connection
		 * goes (the server's last FATAL): state_down sends it again */
		if (!job->hist_failed)
			job->hist_failed = job->hist_written + 1;
	}
	if (job->hist_written < job->hist_sent)
		job->hist_written++; /* answered: the order of answers is the order sent */
}

void job_persist(struct rebuild_job *job)
{
	if (!job->persistent || !job->db_id || !job->locked || !index_link_up(&job->state_l))
		return; /* kept in memory (the history) until the lock is held again */
	struct pg_session *s = job->state_l.s;
	char id[24], att[16], b1[32], b2[32], b3[32], c1[32], sw[32];
	const char *p6, *p7, *p8, *p9, *p10;
	snprintf(id, sizeof(id), "%lld", job->db_id);
	/* steps missed while the lock was not held go first: late, in order */
	for (; job->hist_sent < job->n_hist; job->hist_sent++) {
		const struct history_entry *h = &job->hist[job->hist_sent];
		const char *step[] = {id, job_state_name(h->from), job_state_name(h->to),
		                      h->kind[0] ? h->kind : job_event_name(h->event), h->message};
		pg_session_query(s, SQL_JOB_STEP, 5, step, step_written, job);
	}
	snprintf(att, sizeof(att), "%d", job->attempts);
	fmt_or_null(b1, sizeof(b1), job->have_base ? job->base_recall : NAN, &p6);
	fmt_or_null(b2, sizeof(b2), job->have_base ? job->base_p50 : NAN, &p7);
	fmt_or_null(b3, sizeof(b3), job->have_base ? job->base_p95 : NAN, &p8);
	fmt_or_null(c1, sizeof(c1), job->have_new ? job->new_recall : NAN, &p9);
	fmt_or_null(sw, sizeof(sw), job->swap_tries ? job->swap_ms : NAN, &p10);
	const char *mode = job->state > JOB_PREFLIGHT ? swap_mode_name(job->mode) : NULL;
	const char *up[] = {id, job_state_name(job->state), att, job->message, mode, p6, p7, p8, p9, p10};
	pg_session_query(s, SQL_JOB_UPDATE, 10, up, NULL, NULL);
}

static void close_state_when_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	(void)error;
	index_link_close(&job->state_l); /* releases the advisory lock */
	job->locked = false;
}

/* A job that ended: its last records go out, then the lock is released.
 * While the state session is down the records wait for it, unless there is
 * nothing to write. */
void job_state_release(struct rebuild_job *job)
{
	if (index_link_up(&job->state_l) && job->locked) {
		job_persist(job);
		/* let go now, not when the backend gets round to exiting: a job
		 * started right after this one ended takes the lock next */
		pg_session_query(job->state_l.s, "SELECT pg_advisory_unlock_all()", 0, NULL, close_state_when_done, job);
		return;
	}
	bool owed = job->persistent && job->db_id && job->state_l.open && job->state_l.ever_up;
	if (index_link_up(&job->state_l) || !owed) {
		index_link_close(&job->state_l);
		job->locked = false;
	}
	/* else relock_done() writes them and comes back here */
}

/* ---- the state session: schema, advisory lock, job row ---- */

/* ---- who drives: claim, heartbeat ---- */

static void beat_tick(evutil_socket_t fd, short what, void *arg);

static void beat_arm(struct rebuild_job *job)
{
	if (!job->beat_timer)
		job->beat_timer = evtimer_new(vg.base, beat_tick, job);
	struct timeval tv = {1, 0};
	evtimer_add(job->beat_timer, &tv);
}

/* This session drives the job now: vecgate.jobs says who and since when,
 * and its notification tells the other instances to follow. */
static void claim(struct rebuild_job *job)
{
	snprintf(job->driver, sizeof(job->driver), "%s", vg_instance_id());
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(job->driver_since, sizeof(job->driver_since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	job->following = false;
	job->driver_silent_s = 0;
	if (!job->persistent || !job->db_id || !index_link_up(&job->state_l))
		return;
	char id[24];
	snprintf(id, sizeof(id), "%lld", job->db_id);
	const char *params[] = {id, vg_instance_id()};
	pg_session_query(job->state_l.s, SQL_JOB_CLAIM, 2, params, NULL, NULL);
	beat_arm(job);
}

static void follow_tick(struct rebuild_job *job);

static void beat_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rebuild_job *job = arg;
	if (job->following) {
		if (!job->taking_over)
			follow_tick(job);
		beat_arm(job);
		return;
	}
	if (job_is_terminal(job->state) || !job->locked)
		return; /* relock_done() claims again, and the heartbeat goes on */
	if (index_link_up(&job->state_l) && job->db_id && job->persistent) {
		char id[24];
		snprintf(id, sizeof(id), "%lld", job->db_id);
		const char *params[] = {id};
		pg_session_query(job->state_l.s, SQL_JOB_HEARTBEAT, 1, params, NULL, NULL);
	}
	beat_arm(job);
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
	job->sphase = SP_HOLDING;
	claim(job);
	job_run_step(job);
}

/* A job of the same index that ended in this instance and still holds the
 * lock: its cleanup (dropping a cancelled candidate) or its last records
 * are on their way.  Cancel and start again waits for it; it is not
 * another instance. */
static const struct rebuild_job *lock_held_here(const struct rebuild_job *job)
{
	for (const struct rebuild_job *j = rebuild_next(NULL); j; j = rebuild_next(j))
		if (j != job && j->locked && !strcmp(j->index_name, job->index_name))
			return j;
	return NULL;
}

static void lock_done(void *arg, PGresult *res, const char *error);

/* Ask for the index's rebuild lock on the state session; cb reads the
 * answer ("t": this session holds it now). */
static int lock_try(struct rebuild_job *job, pg_result_cb cb)
{
	const char *params[] = {job->index_name};
	return pg_session_query(job->state_l.s, SQL_TRY_LOCK, 1, params, cb, job);
}

/* the answer to lock_try(): taken (1), held elsewhere (0), no answer (-1) */
static int lock_answer(const PGresult *res, const char *error)
{
	if (error || !res || PQntuples(res) != 1)
		return -1;
	return !strcmp(PQgetvalue(res, 0, 0), "t");
}

static void lock_retry(evutil_socket_t fd, short what, void *arg)
{
	struct rebuild_job *job = arg;
	(void)fd;
	(void)what;
	if (job_is_terminal(job->state))
		return; /* cancelled while it waited */
	if (!index_link_up(&job->state_l) || lock_try(job, lock_done) < 0)
		job_event(job, JEV_FATAL, "the connection that takes the rebuild lock of %s was lost", job->index_name);
}

static void lock_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	int got = lock_answer(res, error);
	const struct rebuild_job *prev = got == 0 ? lock_held_here(job) : NULL;
	if (prev) {
		if (job->lock_waits++ < LOCK_WAIT_TRIES) {
			if (job->lock_waits == 1) {
				log_info("rebuild %d (%s): job %d still holds the rebuild lock while it finishes; waiting for it",
				         job->id, job->index_name, prev->id);
				snprintf(job->message, sizeof(job->message),
				         "preflight: waiting for job %d to let go of the rebuild lock (%s)", prev->id,
				         prev->cleanup ? "its cleanup is under way" : "its last records are being written");
			}
			if (!job->lock_timer)
				job->lock_timer = evtimer_new(vg.base, lock_retry, job);
			struct timeval tv = {0, LOCK_WAIT_US};
			evtimer_add(job->lock_timer, &tv);
			return;
		}
		job_event(job, JEV_FATAL,
		          "job %d of %s still holds the rebuild lock after %d s (%s): start again once it has let go",
		          prev->id, job->index_name, LOCK_WAIT_TRIES * LOCK_WAIT_US / 1000000,
		          prev->cleanup ? "its cleanup is not done" : "its last records are not written");
		return;
	}
	if (got != 1) {
		job_event(job, JEV_FATAL,
		          "another vecgate instance is rebuilding %s (it holds the advisory lock); follow it there",
		          job->index_name);
		return;
	}
	job->locked = true;
	if (!job->persistent || job->db_id) {
		job->sphase = SP_HOLDING;
		job_run_step(job);
		return;
	}
	const char *params[] = {job->index_name, job->fresh, job->retired};
	pg_session_query(job->state_l.s, SQL_JOB_INSERT, 3, params, insert_done, job);
}

static void schema_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	if (error) {
		job->persistent = false;
		log_warn("rebuild %d: durable job state disabled, cannot create schema vecgate: %s", job->id, error);
	}
	lock_try(job, lock_done);
}

/* After a reconnect: the lock went with the old session.  Take it again,
 * or learn that another instance drives the job now. */
static void relock_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		log_warn("rebuild %d (%s): cannot take the rebuild lock again (%s); reconnecting", job->id,
		         job->index_name, error);
		index_link_restart(&job->state_l);
		return;
	}
	if (lock_answer(res, error) != 1) {
		if (job_is_terminal(job->state)) {
			log_warn("rebuild %d (%s): another vecgate instance holds the rebuild lock now; what is left of this "
			         "job is its to do", job->id, job->index_name);
			job->cleanup = 0;
			job_stop_sessions(job);
			index_link_close(&job->state_l);
			return;
		}
		job_event(job, JEV_TAKEN_OVER,
		          "another vecgate instance took over rebuild of %s while the connection was down; this instance "
		          "stopped driving it and left its indexes alone (follow the job there)",
		          job->index_name);
		return;
	}
	job->locked = true;
	log_info("rebuild %d (%s): holding the rebuild lock again; bringing vecgate.jobs up to date", job->id,
	         job->index_name);
	job_persist(job);
	if (!job_is_terminal(job->state))
		claim(job);
	job_lock_regained(job);
}

static void probe_start(struct rebuild_job *job);

static void state_up(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	(void)error;
	job->state_pid = pg_session_backend_pid(job->state_l.s);
	/* a step confirmed under synchronous_commit = off is lost by a crash
	 * a moment later, and never sent again */
	pg_session_query(job->state_l.s, SQL_DURABLE_COMMITS, 0, NULL, NULL, NULL);
	switch (job->sphase) {
	case SP_PROBING:
		probe_start(job);
		return;
	case SP_FOLLOWING:
		/* what was in flight went with the old session (a lock taken
		 * there too): the next look at the lock uses the new one */
		job->taking_over = false;
		job->locked = false;
		return;
	case SP_STARTING:
		/* vecgate.routes too: a hint-mode job writes its pins there */
		pg_session_query(job->state_l.s, SQL_ROUTES_SCHEMA, 0, NULL, NULL, NULL);
		pg_session_query(job->state_l.s, SQL_STATE_SCHEMA, 0, NULL, schema_done, job);
		return;
	case SP_HOLDING:
		lock_try(job, relock_done);
		return;
	}
}

static void state_down(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	if (!job->state_l.ever_up) {
		/* the first connect failed: nothing was started */
		if (job->sphase == SP_PROBING) {
			log_warn("rebuild: cannot look for unfinished jobs of %s: %s", job->index_name, error ? error : "?");
			job_free(job);
			return;
		}
		job_event(job, JEV_FATAL, "cannot connect to record the job and take the rebuild lock: %s",
		          error ? error : "?");
		return;
	}
	bool had = job->locked;
	job->locked = false;
	/* what was not confirmed, or failed on the way down, goes again */
	job->hist_sent = job->hist_written = job->hist_failed ? job->hist_failed - 1 : job->hist_written;
	job->hist_failed = 0;
	if (had && !job_is_terminal(job->state))
		log_warn("rebuild %d (%s): the rebuild lock went with its connection; the job goes on, its record "
		         "waits in memory, no swap or rollback until the lock is taken again", job->id, job->index_name);
}

/* ---- resume after a restart ---- */

static void resume_after_cleanup(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	if (error)
		log_warn("rebuild %d: cleanup on resume: %s", job->id, error);
	struct job_transition t = job_resume(job->resume_to, job->have_base, false);
	job_apply(job, JEV_RESUMED, t,
	          t.next == JOB_BUILD ? "resumed after a restart: the dead build was cancelled and dropped, building again"
	                              : "resumed after a restart: starting over from preflight");
}

/* The same truth decides after a restart of vecgate (resuming) and after
 * a swap whose session died (retry): the old index under the retired name
 * means the swap committed. */
static void swap_checked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error) {
		job_event(job, pg_result_transient(res) ? JEV_TRANSIENT : JEV_FATAL,
		          "cannot check whether the swap committed: %s", error);
		return;
	}
	/* flip/rename: the old index carries the retired name; hint: the pin
	 * in vecgate.routes names the new index */
	bool swapped = PQntuples(res) && !PQgetisnull(res, 0, 0) &&
	               (job->mode != SWAP_HINT || !strcmp(PQgetvalue(res, 0, 0), job->fresh));
	if (swapped) {
		const struct vg_managed_index *mi = job_index(job);
		pools_traffic(mi ? mi->database : "", &job->t_swap);
		if (job->mode == SWAP_RENAME)
			job->cleanup |= CLEAN_DROP_RETIRED; /* the drop that moves the planner may not have run */
	}
	if (!job->resuming && !swapped) {
		job->step_busy = false;
		job_run_step(job); /* the swap did not happen: swap (again) */
		return;
	}
	enum job_state recorded = job->resuming ? job->resume_to : JOB_SWAP;
	job_apply(job, JEV_RESUMED, job_resume(recorded, job->have_base, swapped),
	          job->resuming ? (swapped ? "resumed after a restart: the swap had happened, watching"
	                                   : "resumed after a restart: the swap had not happened, swapping")
	                        : "the swap had committed before its connection was lost: watching");
}

void job_swap_check(struct rebuild_job *job)
{
	char rel[700];
	job->step_busy = true;
	if (job->mode == SWAP_HINT) {
		const char *params[] = {job->index_name};
		job_query(job, SQL_PIN_READ, 1, params, swap_checked);
		return;
	}
	sql_qualified(job->schema, job->retired, rel, sizeof(rel));
	const char *params[] = {rel};
	job_query(job, "SELECT to_regclass($1)", 1, params, swap_checked);
}

void job_resume_continue(struct rebuild_job *job)
{
	char rel[700];
	job->step_busy = true;
	switch (job->resume_to) {
	case JOB_SWAP:
		job_swap_check(job);
		return;
	case JOB_WATCH:
	case JOB_RETAIN:
		job_apply(job, JEV_RESUMED, job_resume(job->resume_to, job->have_base, false), "resumed after a restart");
		return;
	default: {
		/* a build vecgate started before it died may still be running:
		 * cancel it, then drop whatever it left.  First of all, a candidate
		 * it finished is taken from the planner again (flip mode; in hint
		 * mode the pin in vecgate.routes keeps vecgate's reads off it): it
		 * was never measured, and the drop may wait for old transactions */
		char sql[2200];
		if (job->partitioned) {
			/* only the build in flight goes: the partitions already built
			 * stay, and the build step decides from the catalog what each
			 * one still needs (partitions.c) */
			sql_qualified(job->schema, job->table, rel, sizeof(rel));
			const char *params[] = {rel};
			job_query(job, SQL_CANCEL_ORPHAN_BUILDS, 1, params, NULL);
			job_query(job, "SELECT pg_sleep(0.2)", 0, NULL, resume_after_cleanup);
			return;
		}
		if (job->mode == SWAP_FLIP && job->superuser &&
		    sql_hide_candidate_if_there(job->schema, job->table, job->fresh, sql, sizeof(sql)) == 0)
			job_query(job, sql, 0, NULL, NULL);
		sql_qualified(job->schema, job->table, rel, sizeof(rel));
		const char *params[] = {rel};
		job_query(job, SQL_CANCEL_ORPHAN_BUILDS, 1, params, NULL);
		job_query(job, "SELECT pg_sleep(0.2)", 0, NULL, NULL);
		sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
		job_query(job, sql, 0, NULL, resume_after_cleanup);
		return;
	}
	}
}

static void previous_driver_ended(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error)
		log_warn("rebuild %d (%s): cannot end the sessions a previous driver left (%s); resuming anyway: "
		         "the catalog is read after them", job->id, job->index_name, error);
	else if (atoi(PQgetvalue(res, 0, 0)))
		log_info("rebuild %d (%s): ended %s session(s) a previous driver left running%s", job->id,
		         job->index_name, PQgetvalue(res, 0, 0),
		         atoi(PQgetvalue(res, 0, 1)) ? " (some did not exit within 5 s)" : "");
	job_run_step(job); /* preflight's first checks, then job_resume_continue() */
}

static void adopt(struct rebuild_job *job)
{
	job->locked = true;
	job->sphase = SP_HOLDING;
	job->following = false;
	job->state = JOB_PREFLIGHT; /* a follower showed the driver's state: preflight's checks come first */
	job->state_since = now_sec();
	job_register(job);
	job->resuming = true;
	log_info("rebuild %d: resuming job %lld for %s (was %s)", job->id, job->db_id, job->index_name,
	         job_state_name(job->resume_to));
	claim(job);
	/* a dead driver's swap may still wait for its locks, and commit when it
	 * gets them: it ends before the catalog says where the job stands */
	const char *params[] = {job->index_name};
	pg_session_query(job->state_l.s, SQL_END_PREVIOUS_DRIVER, 1, params, previous_driver_ended, job);
}

/* Another instance drives the job: show it, and look at its lock every
 * second (beat_tick). */
static void follow(struct rebuild_job *job)
{
	if (!job->following)
		log_info("rebuild: job %lld for %s is driven by another instance: following it", job->db_id,
		         job->index_name);
	job->following = true;
	job->sphase = SP_FOLLOWING;
	job->state = job->resume_to;
	job_register(job);
	beat_arm(job);
}

static void adopt_locked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (lock_answer(res, error) != 1) {
		follow(job);
		return;
	}
	adopt(job);
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
	index_link_close(&job->state_l);
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
	job->mode = swap_mode_parse(PQgetvalue(res, 0, 3));
	job->base_recall = opt_num(res, 4, &job->have_base);
	job->base_p50 = job->have_base ? atof(PQgetvalue(res, 0, 5)) : NAN;
	job->base_p95 = job->have_base ? atof(PQgetvalue(res, 0, 6)) : NAN;
	job->new_recall = opt_num(res, 7, &job->have_new);
	bool have_swap;
	job->swap_ms = opt_num(res, 8, &have_swap);
	job->swap_tries = have_swap;
	job_set_str(&job->fresh, PQgetvalue(res, 0, 9));
	job_set_str(&job->retired, PQgetvalue(res, 0, 10));
	job_register(job);
}

static void fill_unfinished(struct rebuild_job *job, const PGresult *res)
{
	job->db_id = atoll(PQgetvalue(res, 0, 0));
	int st = job_state_from_name(PQgetvalue(res, 0, 1));
	job->resume_to = st < 0 ? JOB_PREFLIGHT : (enum job_state)st;
	job_set_str(&job->fresh, PQgetvalue(res, 0, 3));
	job_set_str(&job->retired, PQgetvalue(res, 0, 4));
	job->mode = swap_mode_parse(PQgetvalue(res, 0, 5));
	if (!PQgetisnull(res, 0, 6)) {
		job->base_recall = atof(PQgetvalue(res, 0, 6));
		job->base_p50 = atof(PQgetvalue(res, 0, 7));
		job->base_p95 = atof(PQgetvalue(res, 0, 8));
		job->have_base = true;
	}
}

static void unfinished_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (!error && !PQntuples(res)) {
		const char *params[] = {job->index_name};
		pg_session_query(job->state_l.s, SQL_JOB_LATEST, 1, params, latest_result, job);
		return;
	}
	if (error) {
		job_free(job);
		return;
	}
	fill_unfinished(job, res);
	lock_try(job, adopt_locked);
}

/* ---- following a job another instance drives ---- */

/* The job ended where it was driven: this instance keeps the record. */
static void follow_ended(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	int st = !error && PQntuples(res) ? job_state_from_name(PQgetvalue(res, 0, 1)) : -1;
	job->following = job->taking_over = false;
	job->persistent = false;
	if (st >= 0)
		job->state = (enum job_state)st;
	if (!error && PQntuples(res))
		snprintf(job->message, sizeof(job->message), "%s (driven by %s)", PQgetvalue(res, 0, 2), job->driver);
	if (job->beat_timer)
		event_del(job->beat_timer);
	index_link_close(&job->state_l);
}

/* The lock is ours: the job's record as it stands now decides where it
 * goes on, through the resume path. */
static void takeover_unfinished(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job->taking_over = false;
	if (error) {
		/* the lock is this session's: let it go with the session, and
		 * follow on (the link reconnects) */
		log_warn("rebuild: job %lld for %s: cannot read it after taking its lock (%s); trying again",
		         job->db_id, job->index_name, error);
		index_link_restart(&job->state_l);
		return;
	}
	if (!PQntuples(res)) {
		/* ended meanwhile: the lock goes with the session */
		const char *params[] = {job->index_name};
		job->locked = false;
		log_info("rebuild: job %lld for %s ended where it was driven (%s)", job->db_id, job->index_name,
		         job->driver);
		pg_session_query(job->state_l.s, SQL_JOB_LATEST, 1, params, follow_ended, job);
		return;
	}
	fill_unfinished(job, res);
	log_warn("rebuild %d (%s): took over job %lld from %s (was %s)", job->id, job->index_name, job->db_id,
	         job->driver, job_state_name(job->resume_to));
	job->following = false;
	adopt(job);
}

static void follow_locked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (lock_answer(res, error) != 1)
		return; /* still driven elsewhere */
	job->taking_over = true; /* no second look while this one is answered */
	const char *params[] = {job->index_name};
	pg_session_query(job->state_l.s, SQL_JOB_UNFINISHED, 1, params, takeover_unfinished, job);
}

static void follow_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !job->following)
		return;
	const char *params[] = {job->index_name};
	if (!PQntuples(res)) {
		log_info("rebuild: job %lld for %s ended where it was driven (%s)", job->db_id, job->index_name,
		         job->driver);
		job->taking_over = true; /* nothing more to look at */
		pg_session_query(job->state_l.s, SQL_JOB_LATEST, 1, params, follow_ended, job);
		return;
	}
	int st = job_state_from_name(PQgetvalue(res, 0, 1));
	if (st >= 0)
		job->state = job->resume_to = (enum job_state)st;
	snprintf(job->driver, sizeof(job->driver), "%s", PQgetvalue(res, 0, 2));
	snprintf(job->driver_since, sizeof(job->driver_since), "%s", PQgetvalue(res, 0, 3));
	job->driver_silent_s = atof(PQgetvalue(res, 0, 4));
	snprintf(job->message, sizeof(job->message), "%s", PQgetvalue(res, 0, 5));
	job_set_str(&job->fresh, PQgetvalue(res, 0, 6));
	const struct vg_managed_index *mi = job_index(job);
	double silent_max = mi ? mi->takeover_seconds : 10;
	if (job->driver_silent_s > silent_max && !job->takeover_sent) {
		/* frozen or cut off: its sessions end, and with them its lock and
		 * any build it runs; if it wakes up, its fence fails */
		job->takeover_sent = true;
		log_warn("rebuild: job %lld for %s: its driver %s has been silent for %.0f s (takeover_seconds %.0f): "
		         "ending its sessions to take the job over",
		         job->db_id, job->index_name, job->driver, job->driver_silent_s, silent_max);
		char id[24], secs[32];
		snprintf(id, sizeof(id), "%lld", job->db_id);
		snprintf(secs, sizeof(secs), "%.3f", silent_max);
		const char *kill[] = {id, job->driver, secs};
		pg_session_query(job->state_l.s, SQL_TAKEOVER_TERMINATE, 3, kill, NULL, NULL);
	}
	lock_try(job, follow_locked);
}

static void follow_tick(struct rebuild_job *job)
{
	if (!index_link_up(&job->state_l) || !pg_session_idle(job->state_l.s))
		return;
	const char *params[] = {job->index_name};
	pg_session_query(job->state_l.s, SQL_JOB_FOLLOW, 1, params, follow_result, job);
}

static void probe_table(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || !PQntuples(res) || PQgetisnull(res, 0, 0)) {
		job_free(job);
		return;
	}
	const char *params[] = {job->index_name};
	pg_session_query(job->state_l.s, SQL_JOB_UNFINISHED, 1, params, unfinished_result, job);
}

static void probe_start(struct rebuild_job *job)
{
	pg_session_query(job->state_l.s, "SELECT to_regclass('vecgate.jobs')", 0, NULL, probe_table, job);
}

static void probe_index(const struct vg_managed_index *mi);

void rebuild_resume_all(void)
{
	for (size_t i = 0; i < vg.cfg->n_indexes; i++)
		probe_index(&vg.cfg->indexes[i]);
}

static void probe_index(const struct vg_managed_index *mi)
{
	char err[256];
	struct rebuild_job *job = job_new(mi, err, sizeof(err));
	if (!job) {
		log_warn("rebuild: cannot check %s for unfinished jobs: %s", mi->name, err);
		return;
	}
	/* an adopted job keeps this session: it holds the lock */
	job->sphase = SP_PROBING;
	job_link_init(job, &job->state_l, "state", "state", false, state_up, state_down);
	if (index_link_open(&job->state_l) < 0)
		job_free(job);
}

void rebuild_follow(const char *index_name)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, index_name);
	const struct rebuild_job *latest = rebuild_latest(index_name);
	if (!mi || (latest && !job_is_terminal(latest->state)))
		return; /* driven or followed here already */
	probe_index(mi);
}

void job_state_open(struct rebuild_job *job)
{
	job->sphase = SP_STARTING;
	job_link_init(job, &job->state_l, "state", "state", false, state_up, state_down);
	if (index_link_open(&job->state_l) < 0)
		job_event(job, JEV_FATAL, "cannot open a connection to the managed index's backend");
}
