/*
 * The rebuild job's lifecycle and its one transition path.  Every change of
 * state, an operator's or a step's or a resume's, goes through job_apply
 * with a transition from routing/rebuild_job.h, so history, logs, the route
 * policy, the durable record and the cleanup actions can never disagree.
 */
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/control/route_sync.h"
#include "proxy/control/session.h"
#include "routing/indexdef.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct rebuild_job *jobs;
static int next_job_id;
static rebuild_observer observers[4];
static int n_observers;

const struct vg_managed_index *job_index(const struct rebuild_job *job)
{
	return config_find_index(vg.cfg, job->index_name);
}

void job_set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

void job_schedule(struct rebuild_job *job, double seconds)
{
	struct timeval tv = timeval_of(seconds);
	evtimer_add(job->timer, &tv);
}

void job_query(struct rebuild_job *job, const char *sql, int nparams, const char *const *params, pg_result_cb cb)
{
	if (!index_link_up(&job->maint) || pg_session_query(job->maint.s, sql, nparams, params, cb, job) < 0)
		job_event(job, JEV_TRANSIENT, "maintenance connection unavailable");
}

void job_end_failed_transaction(struct rebuild_job *job, const char *error)
{
	if (error && index_link_up(&job->maint))
		pg_session_query(job->maint.s, "ROLLBACK", 0, NULL, NULL, NULL);
}

void job_link_init(struct rebuild_job *job, struct index_link *l, const char *role, const char *what,
                   bool retry_first, pg_state_cb on_up, pg_state_cb on_down)
{
	char label[160];
	snprintf(label, sizeof(label), "rebuild %d (%s) %s connection", job->id, job->index_name, what);
	index_link_init(l, job->index_name, role, label, retry_first, on_up, on_down, job);
}

/* the id is final only now: the links' log labels follow it */
static void relabel(struct rebuild_job *job, struct index_link *l, const char *what)
{
	snprintf(l->label, sizeof(l->label), "rebuild %d (%s) %s connection", job->id, job->index_name, what);
}

/* ---- lifecycle ---- */

/* Jobs made but not registered: a probe for unfinished jobs at start, which
 * a shutdown may catch in flight; they are freed with the rest. */
static struct rebuild_job *loose;

struct rebuild_job *job_new(const struct vg_managed_index *mi, char *err, size_t errlen)
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
	char name[INDEX_NAME_MAX + 1], suffix[24];
	snprintf(suffix, sizeof(suffix), "_vg%d", job->id);
	index_derived_name(mi->index, suffix, name, sizeof(name));
	job->fresh = strdup(name);
	snprintf(suffix, sizeof(suffix), "_vgold%d", job->id);
	index_derived_name(mi->index, suffix, name, sizeof(name));
	job->retired = strdup(name);
	job->created = job->updated = job->state_since = now_sec();
	job->base_recall = job->new_recall = NAN;
	job->eta_s = NAN;
	job->free_bytes = NAN;
	job->attempts = 1;
	job->state = JOB_PREFLIGHT;
	job->persistent = true;
	job->timer = evtimer_new(vg.base, job_step_timer, job);
	job_init_links(job);
	job->loose_next = loose;
	loose = job;
	job->base_recall_file = job->base_recall_traffic = job->new_recall_file = job->new_recall_traffic = NAN;
	if (mi->eval_file && (eval_set_load(&job->evals, mi->eval_file, err, errlen) < 0 ||
	                      eval_set_check_params(&job->evals, mi, err, errlen) < 0)) {
		job_free(job);
		return NULL;
	}
	return job;
}

static void loose_remove(struct rebuild_job *job)
{
	for (struct rebuild_job **p = &loose; *p; p = &(*p)->loose_next)
		if (*p == job) {
			*p = job->loose_next;
			return;
		}
}

void job_register(struct rebuild_job *job)
{
	if (job->registered)
		return;
	loose_remove(job);
	job->registered = true;
	job->id = ++next_job_id;
	job->next = jobs;
	jobs = job;
	relabel(job, &job->maint, "maintenance");
	relabel(job, &job->poll, "progress");
	relabel(job, &job->state_l, "state");
}

void job_free(struct rebuild_job *job)
{
	if (!job->registered)
		loose_remove(job);
	plan_abandon(job->planning);
	index_link_close(&job->maint);
	index_link_close(&job->poll);
	index_link_close(&job->state_l);
	if (job->timer)
		event_free(job->timer);
	if (job->poll_timer)
		event_free(job->poll_timer);
	if (job->cleanup_timer)
		event_free(job->cleanup_timer);
	if (job->settle_timer)
		event_free(job->settle_timer);
	if (job->beat_timer)
		event_free(job->beat_timer);
	if (job->lock_timer)
		event_free(job->lock_timer);
	eval_run_release(&job->eval);
	eval_set_free(&job->evals);
	free(job->index_name);
	free(job->schema);
	free(job->table);
	free(job->live);
	free(job->fresh);
	free(job->retired);
	free(job->live_def);
	part_free(job);
	free(job);
}

struct rebuild_job *job_first(void)
{
	return jobs;
}

static void notify_observers(const struct rebuild_job *job)
{
	for (int i = 0; i < n_observers; i++)
		observers[i](job);
}

/* ---- transitions ---- */

/* The history's next entry; when full, the last one is overwritten (and
 * is not written yet). */
static struct history_entry *history_slot(struct rebuild_job *job)
{
	if (job->n_hist == JOB_HISTORY_MAX) {
		if (job->hist_written > JOB_HISTORY_MAX - 1)
			job->hist_written = JOB_HISTORY_MAX - 1;
		if (job->hist_sent > JOB_HISTORY_MAX - 1)
			job->hist_sent = JOB_HISTORY_MAX - 1;
		if (job->hist_failed > JOB_HISTORY_MAX)
			job->hist_failed = JOB_HISTORY_MAX;
	}
	return &job->hist[job->n_hist < JOB_HISTORY_MAX ? job->n_hist++ : JOB_HISTORY_MAX - 1];
}

void job_note(struct rebuild_job *job, const char *kind, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("rebuild %d (%s): %s %s: %s", job->id, job->index_name, job_state_name(job->state), kind, msg);
	struct history_entry *h = history_slot(job);
	h->at = now_sec();
	h->from = h->to = job->state;
	h->event = JEV_STEP_OK;
	snprintf(h->kind, sizeof(h->kind), "%s", kind);
	snprintf(h->message, sizeof(h->message), "%s", msg);
	job->updated = now_sec();
	job_persist(job);
}

void job_apply(struct rebuild_job *job, enum job_event ev, struct job_transition t, const char *msg)
{
	enum job_state from = job->state;
	log_info("rebuild %d (%s): %s -> %s [%s]: %s", job->id, job->index_name, job_state_name(from),
	         job_state_name(t.next), job_event_name(ev), msg);
	snprintf(job->message, sizeof(job->message), "%s", msg);
	struct history_entry *h = history_slot(job);
	h->at = now_sec();
	h->from = from;
	h->to = t.next;
	h->event = ev;
	h->kind[0] = 0;
	snprintf(h->message, sizeof(h->message), "%s", msg);
	job->updated = now_sec();
	/* whatever step ran has ended with this event */
	job->step_busy = false;
	if (eval_run_abandon(&job->eval) && index_link_up(&job->maint)) {
		/* an eval still in flight (an exact scan streams the whole table):
		 * a new session stops it at once and rolls its snapshot back */
		index_link_restart(&job->maint);
	}
	job->run_on_connect = false;
	/* a resumed job enters its state anew even when it is the one recorded */
	if (t.next != from || ev == JEV_RESUMED) {
		if (t.next != from)
			job->attempts = 1;
		if (job->retry) {
			job->retry = RETRY_NONE;
			event_del(job->timer);
		}
		job->state = t.next;
		job->state_since = now_sec();
		job->resuming = false;
		routes_job_step(job->index_name, job->state);
		notify_observers(job);
	}
	job_persist(job);
	if (ev == JEV_TAKEN_OVER) {
		/* the lock's holder owns the indexes now: stop our build, touch nothing */
		job_stop_sessions(job);
		job->cleanup = 0;
	}
	job_perform(job, from, t.action);
	if (t.action == JACT_RUN_STEP)
		job_run_step(job);
	if (job_is_terminal(job->state))
		job_finish(job);
}

void job_event(struct rebuild_job *job, enum job_event ev, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ev == JEV_TRANSIENT && job->retry) {
		/* the same failure seen twice (a statement's error, then the lost
		 * connection): one retry is already on its way */
		log_debug("rebuild %d (%s): already retrying: %s", job->id, job->index_name, msg);
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
	job_apply(job, ev, t, msg);
}

/* ---- the coordinator's API ---- */

int rebuild_start(const char *index_name, enum op_status *why, char *err, size_t errlen)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, index_name);
	if (!mi) {
		snprintf(err, errlen, "no managed index named '%s' in the configuration", index_name);
		*why = OP_NOT_FOUND;
		return -1;
	}
	const struct rebuild_job *prev = rebuild_latest(index_name);
	if (prev && !job_is_terminal(prev->state)) {
		snprintf(err, errlen, "job %d is already %s for %s; cancel it first or wait", prev->id,
		         job_state_name(prev->state), index_name);
		*why = OP_CONFLICT;
		return -1;
	}
	struct rebuild_job *job = job_new(mi, err, errlen);
	if (!job) {
		*why = OP_CONFLICT;
		return -1;
	}
	job_register(job);
	notify_observers(job);
	log_info("rebuild %d: starting for %s (%s.%s, %zu eval queries)", job->id, mi->name, mi->schema, mi->index,
	         job->evals.n);
	routes_job_step(job->index_name, job->state);
	job_state_open(job);
	*why = OP_OK;
	return job->id;
}

bool job_hides_with_hypopg(const struct rebuild_job *job)
{
	int major = 0, minor = 0;
	/* (hypopg hides a partitioned index from nothing: its partitions' indexes serve) */
	if (job->superuser || job->mode == SWAP_HINT || job->partitioned || !job->hypopg_schema[0] ||
	    sscanf(job->hypopg_version, "%d.%d", &major, &minor) < 1)
		return false;
	return major > 1 || (major == 1 && minor >= 4); /* hypopg_hide_index came with 1.4 */
}

void job_mode_reason(const struct rebuild_job *job, char *out, size_t len)
{
	const struct vg_managed_index *mi = job_index(job);
	const char *role = mi && mi->user ? mi->user : "postgres";
	if (job->mode == SWAP_FLIP) {
		snprintf(out, len, "role %s is superuser: the new index stays invisible to the planner until the gated swap, "
		         "and the old one is kept for an instant rollback", role);
		return;
	}
	if (job->mode == SWAP_HINT) {
		snprintf(out, len, "%s: pg_hint_plan is loaded, so vecgate pins the vector reads it forwards to the live "
		         "index with a plan hint until the gated swap, the swap moves the pin (no DDL, no lock) and the old "
		         "index is kept for an instant rollback; reads that do not pass through vecgate see the planner's "
		         "choice, which may be the new index as soon as it is built%s",
		         job->superuser ? "swap_mode hint is configured" : "role is not superuser",
		         job->superuser ? "" : " (a superuser maintenance role gives flip mode, which hides it from every "
		                               "session)");
		return;
	}
	size_t n = (size_t)snprintf(out, len, job->superuser
	                                          ? "swap_mode rename is configured: the swap renames the indexes and drops "
	                                            "the old one (no rollback)"
	                                          : "role %s is not superuser and pg_hint_plan is not loaded, so the new "
	                                            "index is visible to the planner as soon as it is built, and the swap "
	                                            "renames the indexes and drops the old one (no rollback; a superuser "
	                                            "maintenance role gives flip mode, shared_preload_libraries = "
	                                            "'pg_hint_plan' gives hint mode)",
	                            role);
	if (n >= len || job->superuser)
		return;
	if (job_hides_with_hypopg(job))
		snprintf(out + n, len - n, "; hypopg %s (schema %s) lets verify measure the new index with the live one "
		         "hidden from its plan", job->hypopg_version, job->hypopg_schema);
	else if (job->hypopg_schema[0])
		snprintf(out + n, len - n, "; hypopg %s cannot hide indexes (1.4 or later can), so verify measures the new "
		         "index only if the planner prefers it", job->hypopg_version);
	else
		snprintf(out + n, len - n, "; without hypopg >= 1.4 (CREATE EXTENSION hypopg) verify measures the new index "
		         "only if the planner prefers it");
}

double job_build_percent(const struct rebuild_job *job)
{
	return job->state > JOB_BUILD && job->state <= JOB_DONE ? 100 : job->percent;
}

const struct build_blocker *job_waiting_for(const struct rebuild_job *job)
{
	return job->blocker.pid && (job->building || job->state == JOB_SWAP) ? &job->blocker : NULL;
}

bool job_eval_progress(const struct rebuild_job *job, struct eval_progress *out)
{
	return (job->state == JOB_BASELINE || job->state == JOB_VERIFY || job->state == JOB_WATCH) &&
	       eval_run_progress(&job->eval, out);
}

const struct rebuild_job *rebuild_latest(const char *index_name)
{
	for (struct rebuild_job *j = jobs; j; j = j->next)
		if (!strcmp(j->index_name, index_name))
			return j;
	return NULL;
}

const struct rebuild_job *rebuild_find(int job_id)
{
	for (struct rebuild_job *j = jobs; j; j = j->next)
		if (j->id == job_id)
			return j;
	return NULL;
}

const struct rebuild_job *rebuild_next(const struct rebuild_job *job)
{
	return job ? job->next : jobs;
}

enum op_status rebuild_approve(int job_id, bool override, char *err, size_t errlen)
{
	struct rebuild_job *job = (struct rebuild_job *)rebuild_find(job_id);
	if (!job) {
		snprintf(err, errlen, "no job %d", job_id);
		return OP_NOT_FOUND;
	}
	if (job->following) {
		snprintf(err, errlen, "job %d is driven by %s: approve it there", job_id, job->driver);
		return OP_CONFLICT;
	}
	if (job->state == JOB_PREFLIGHT && job->plan_hold[0] && !job->plan_approved) {
		/* on the record: who let a build over the plan's limit start */
		job->plan_approved = true;
		job_note(job, "warning", "build approved by operator over the build plan's limit (%s): %s",
		         job->plan_hold_setting ? job->plan_hold_setting : "?", job->plan_hold);
		log_info("rebuild %d: build approved by operator over the plan (%s)", job->id, job->plan_hold_setting);
		job_run_step(job);
		return OP_OK;
	}
	if (job->state != JOB_SWAP || job->approved) {
		snprintf(err, errlen, "job %d is %s: nothing waits for approval", job_id, job_state_name(job->state));
		return OP_CONFLICT;
	}
	if (job->gate_refusal[0] && !override) {
		snprintf(err, errlen, "the gate refused job %d's candidate (%s); vecgatectl approve %d --override swaps it "
		         "anyway, vecgatectl cancel %d drops it", job_id, job->gate_refusal, job_id, job_id);
		return OP_CONFLICT;
	}
	job->approved = true;
	if (job->gate_refusal[0]) {
		/* on the record: who swapped what the gate refused, and why it refused */
		job_event(job, JEV_OVERRIDE, "swap approved by operator over the gate's refusal: %s", job->gate_refusal);
		return OP_OK;
	}
	log_info("rebuild %d: swap approved by operator", job->id);
	job_run_step(job);
	return OP_OK;
}

enum op_status rebuild_signal(int job_id, enum job_event ev, char *err, size_t errlen)
{
	struct rebuild_job *job = (struct rebuild_job *)rebuild_find(job_id);
	if (!job) {
		snprintf(err, errlen, "no job %d", job_id);
		return OP_NOT_FOUND;
	}
	if (job->following) {
		snprintf(err, errlen, "job %d is driven by %s: %s it there", job_id, job->driver,
		         ev == JEV_ROLLBACK ? "roll it back" : "cancel");
		return OP_CONFLICT;
	}
	if (ev == JEV_ROLLBACK && job->mode == SWAP_RENAME && job->state > JOB_SWAP) {
		snprintf(err, errlen, "job %d swapped in rename mode (no superuser): the old index was dropped, there is "
		         "no instant rollback; start a new rebuild instead", job_id);
		return OP_CONFLICT;
	}
	if (ev == JEV_CANCEL && job->state == JOB_SWAP && !job->approved && job->swap_tries == 0)
		ev = JEV_WITHDRAW; /* waiting before its swap: nothing has moved yet */
	struct job_transition t = job_next(job->state, ev, job->attempts, 1000);
	if (t.action == JACT_REJECT) {
		snprintf(err, errlen, "cannot %s job %d in state %s%s", ev == JEV_CANCEL ? "cancel" : "roll back", job_id,
		         job_state_name(job->state),
		         ev == JEV_CANCEL && job->state >= JOB_SWAP && !job_is_terminal(job->state)
		             ? " (after the swap, roll back instead)"
		             : "");
		return OP_CONFLICT;
	}
	job_event(job, ev, "%s requested by operator", ev == JEV_ROLLBACK ? "rollback" : "cancel");
	return OP_OK;
}

void rebuild_observe(rebuild_observer fn)
{
	for (int i = 0; i < n_observers; i++)
		if (observers[i] == fn)
			return;
	if (n_observers < (int)(sizeof(observers) / sizeof(*observers)))
		observers[n_observers++] = fn;
}

void rebuild_shutdown(void)
{
	while (jobs) {
		struct rebuild_job *job = jobs;
		jobs = job->next;
		job_stop_sessions(job);
		job_free(job);
	}
	while (loose)
		job_free(loose); /* unlinks itself */
	n_observers = 0;
}
