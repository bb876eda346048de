/*
 * Watch the live index's recall between rebuilds: an index whose data grew
 * away from its graph (ingestion, churn) loses recall slowly and silently.
 * Each check is one eval run on a short-lived session; the monitor follows
 * rebuild jobs (as an observer) to take a finished rebuild's recall as its
 * new baseline and to drop a proposal once a rebuild starts.
 */
#include "proxy/control/drift.h"
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/control/sample_sync.h"
#include "proxy/control/session.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct drift_monitor *monitors;
static struct event *timer;

static struct drift_monitor *find_or_add(const char *name)
{
	for (struct drift_monitor *d = monitors; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	struct drift_monitor *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->name = strdup(name);
	d->next = monitors;
	monitors = d;
	return d;
}

const struct drift_monitor *drift_find(const char *index_name)
{
	for (struct drift_monitor *d = monitors; d; d = d->next)
		if (!strcmp(d->name, index_name))
			return d;
	return NULL;
}

const struct drift_monitor *drift_next(const struct drift_monitor *d)
{
	return d ? d->next : monitors;
}

static void check_done(struct drift_monitor *d)
{
	d->running = false;
	pg_session_close(d->s); /* mid-transaction: the server rolls back */
	d->s = NULL;
	eval_run_release(&d->run);
	eval_set_free(&d->set);
}

static void check_failed(struct drift_monitor *d, const char *why)
{
	d->failures++;
	d->checked_at = now_sec();
	snprintf(d->last_error, sizeof(d->last_error), "%s", why);
	log_warn("drift: check of %s failed: %s", d->name, why);
	check_done(d);
}

static void measured(void *arg, const struct eval_outcome *out, const char *error, bool transient)
{
	struct drift_monitor *d = arg;
	(void)transient;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, d->name);
	if (error || !mi) {
		check_failed(d, error ? error : "the managed index left the configuration");
		return;
	}
	double recall = out->recall;
	d->recall = recall;
	d->recall_file = out->recall_file;
	d->recall_traffic = out->recall_traffic;
	d->n_traffic = out->n_traffic;
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
	check_done(d);
}

static void samples_read(void *arg, PGresult *res, const char *error)
{
	struct drift_monitor *d = arg;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, d->name);
	if (!mi) {
		check_failed(d, "the managed index left the configuration");
		return;
	}
	int rows = eval_set_take_samples(&d->set, mi, res, error);
	if (!d->set.n) {
		char m[200];
		snprintf(m, sizeof(m), "%d traffic samples, fewer than traffic_min_samples (%d)", rows,
		         mi->traffic_min_samples);
		check_failed(d, m);
		return;
	}
	eval_run_start(&d->run, d->s, mi, &d->set, NULL, measured, d);
}

static void connected(void *arg, const char *error)
{
	struct drift_monitor *d = arg;
	if (error) {
		d->s = NULL; /* pgasync frees it after this callback */
		check_failed(d, error);
		return;
	}
	const struct vg_managed_index *mi = config_find_index(vg.cfg, d->name);
	if (!mi) {
		check_failed(d, "the managed index left the configuration");
		return;
	}
	if (mi->eval_source != VG_EVAL_FILE) {
		const char *params[] = {mi->name};
		pg_session_query(d->s, SQL_SAMPLES_READ, 1, params, samples_read, d);
		return;
	}
	eval_run_start(&d->run, d->s, mi, &d->set, NULL, measured, d);
}

static void lost(void *arg, const char *error)
{
	struct drift_monitor *d = arg;
	d->s = NULL;
	check_failed(d, error ? error : "connection lost");
}

/* Checks start within a quarter second of being due while some index has
 * them; otherwise the timer only looks once a second whether a reload
 * turned them on, instead of waking an idle process four times a second. */
static int armed = -1; /* the pace the timer has: -1 none, 0 slow, 1 checks */

static void arm(bool checks)
{
	if (armed == (int)checks)
		return;
	armed = checks;
	struct timeval tv = timeval_of(checks ? 0.25 : 1.0);
	event_add(timer, &tv);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = now_sec();
	bool checks = false;
	for (size_t i = 0; i < vg.cfg->n_indexes; i++)
		checks |= vg.cfg->indexes[i].drift_check_seconds > 0;
	arm(checks);
	for (size_t i = 0; i < vg.cfg->n_indexes; i++) {
		const struct vg_managed_index *mi = &vg.cfg->indexes[i];
		if (mi->drift_check_seconds <= 0)
			continue;
		struct drift_monitor *d = find_or_add(mi->name);
		const struct rebuild_job *latest = rebuild_latest(mi->name);
		if (!d || d->running || (latest && !job_is_terminal(latest->state)) ||
		    (d->checked_at > 0 && now - d->checked_at < mi->drift_check_seconds))
			continue;
		char err[256];
		memset(&d->set, 0, sizeof(d->set));
		if (mi->eval_file && (eval_set_load(&d->set, mi->eval_file, err, sizeof(err)) < 0 ||
		                      eval_set_check_params(&d->set, mi, err, sizeof(err)) < 0)) {
			eval_set_free(&d->set);
			snprintf(d->last_error, sizeof(d->last_error), "%s", err);
			d->checked_at = now;
			continue;
		}
		d->running = true;
		d->s = index_session_open(mi, "drift", connected, lost, d);
		if (!d->s)
			check_failed(d, "cannot open a connection");
	}
}

/* A rebuild that starts makes a proposal moot; one that finishes with a
 * measured recall is the new baseline. */
static void on_job(const struct rebuild_job *job)
{
	if (job->state == JOB_PREFLIGHT) {
		struct drift_monitor *d = (struct drift_monitor *)drift_find(job->index_name);
		if (d)
			d->proposal[0] = 0;
	} else if (job->state == JOB_DONE && job->have_new) {
		struct drift_monitor *d = find_or_add(job->index_name);
		if (!d)
			return;
		d->baseline = job->new_recall;
		d->have_baseline = true;
		d->alert = false;
		d->proposal[0] = 0;
	}
}

void drift_start(void)
{
	rebuild_observe(on_job);
	if (!timer) {
		timer = event_new(vg.base, -1, EV_PERSIST, tick, NULL);
		tick(-1, 0, NULL); /* arms it */
	}
}

void drift_stop(void)
{
	if (timer)
		event_free(timer);
	timer = NULL;
	armed = -1;
	while (monitors) {
		struct drift_monitor *d = monitors;
		monitors = d->next;
		pg_session_close(d->s);
		eval_run_release(&d->run);
		eval_set_free(&d->set);
		free(d->name);
		free(d);
	}
}
