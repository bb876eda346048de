/*
 * What each state of a rebuild job does: a short chain of SQL on the job's
 * maintenance session, whose outcome becomes the job's next event; and the
 * cleanup or rollback actions the transition function asks for on the way
 * between states.  The build runs on the maintenance session while a second
 * session polls pg_stat_progress_create_index, so progress and cancel stay
 * responsive for the hours a build can take.
 */
#include "proxy/control/rebuild/job.h"
#include "routing/build_plan.h"
#include "routing/gate.h"
#include "proxy/control/sample_sync.h"
#include "routing/index_shape.h"
#include "routing/indexdef.h"
#include "routing/knn_query.h"
#include "routing/pin_hint.h"
#include "proxy/control/route_sync.h"
#include "proxy/route_table.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sessions ---- */

static void stop_polling(struct rebuild_job *job)
{
	if (job->poll_timer)
		event_del(job->poll_timer);
	index_link_close(&job->poll);
	job->building = false;
}

static void run_cleanup(struct rebuild_job *job);
static void retry_continue(struct rebuild_job *job);
static void finish_if_done(struct rebuild_job *job);

/* statement_timeout 0 so hours of build are fine; then the operator's
 * settings.  A build must not outlive this vecgate: PostgreSQL goes on with
 * a statement whose client vanished, and a concurrent build that finishes
 * leaves a valid candidate no gate has seen.  client_connection_check_interval
 * (PostgreSQL 14+) ends it within a second of the connection's loss; TCP
 * keepalives (about 11 s) where the peer cannot answer at all.  Each is its
 * own statement: sent with the build, a SET would put it in a transaction
 * block, where CREATE INDEX CONCURRENTLY fails. */
static void apply_settings(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	PGconn *conn = pg_session_conn(job->maint.s);
	pg_session_query(job->maint.s, "SET statement_timeout = 0", 0, NULL, NULL, NULL);
	if (conn && PQserverVersion(conn) >= 140000)
		pg_session_query(job->maint.s, "SET client_connection_check_interval = '1s'", 0, NULL, NULL, NULL);
	pg_session_query(job->maint.s, "SET tcp_keepalives_idle = 5", 0, NULL, NULL, NULL);
	pg_session_query(job->maint.s, "SET tcp_keepalives_interval = 2", 0, NULL, NULL, NULL);
	pg_session_query(job->maint.s, "SET tcp_keepalives_count = 3", 0, NULL, NULL, NULL);
	for (size_t i = 0; mi && i < mi->n_maintenance; i++) {
		char sql[512];
		const char *names[] = {mi->maintenance[i].name};
		const char *values[] = {mi->maintenance[i].value};
		if (sql_session_settings(names, values, 1, sql, sizeof(sql)) == 0)
			pg_session_query(job->maint.s, sql, 0, NULL, NULL, NULL);
	}
}

/* ---- fencing: only the lock's holder changes an index ---- */

bool job_fenced_error(const char *error)
{
	return error && strstr(error, "fenced: ");
}

static void fence_passed(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	pg_result_cb cb = job->fenced_cb;
	job->fenced_cb = NULL;
	if (!cb)
		return;
	if (error) {
		cb(job, res, error);
		return;
	}
	job_query(job, job->fenced_sql, 0, NULL, cb);
}

void job_query_fenced(struct rebuild_job *job, const char *sql, pg_result_cb cb)
{
	char fence[1200];
	assert(!job->fenced_cb); /* the maintenance session runs one change at a time */
	snprintf(job->fenced_sql, sizeof(job->fenced_sql), "%s", sql);
	job->fenced_cb = cb;
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	job_query(job, fence, 0, NULL, fence_passed);
}

/* A fence failed: another instance drives the job now.  This one stops
 * and touches nothing more. */
static bool lost_lock(struct rebuild_job *job, const char *error)
{
	if (!job_fenced_error(error))
		return false;
	job->cleanup = 0;
	job->cleanup_running = false;
	if (!job_is_terminal(job->state))
		job_event(job, JEV_TAKEN_OVER, "another vecgate instance holds the rebuild lock of %s now (%s); this "
		          "instance stopped driving the job and left its indexes alone", job->index_name, error);
	return true;
}

/* A step's statement answered: false when it worked; else the job learns
 * that another instance holds the lock, or that the step failed (for now
 * or for good), in `what`'s words. */
static bool step_failed(struct rebuild_job *job, PGresult *res, const char *error, const char *what)
{
	if (lost_lock(job, error))
		return true;
	if (!error)
		return false;
	job_event(job, pg_result_transient(res) ? JEV_TRANSIENT : JEV_FATAL, "%s: %s", what, error);
	return true;
}

bool job_step_failed(struct rebuild_job *job, PGresult *res, const char *error, const char *what)
{
	return step_failed(job, res, error, what);
}

/* ---- measuring: baseline, verify and watch share the eval runner ---- */

/* A mean over no traffic is not a number a person should read as one. */
static void ms_or_na(char *buf, size_t len, double ms)
{
	if (isnan(ms))
		snprintf(buf, len, "n/a (no traffic)");
	else
		snprintf(buf, len, "%.2f ms", ms);
}

static void watch_judge(struct rebuild_job *job, const struct eval_outcome *out)
{
	const struct vg_managed_index *mi = job_index(job);
	struct gate_input in = {job->base_recall, job->base_p95, out->recall, out->p95_ms, mi ? mi->recall_tolerance : 0,
	                        mi ? 2 * mi->latency_tolerance + 1 : 1, mi ? mi->latency_budget_ms : 0};
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
	job->pre_mean_ms = pre_n ? (job->t_pre_end.latency_sum - job->t_pre_start.latency_sum) * 1000 / (double)pre_n : NAN;
	job->post_mean_ms = post_n ? (now.latency_sum - job->t_swap.latency_sum) * 1000 / (double)post_n : NAN;
	job->post_requests = post_n;
	job->have_watch = true;
	double max_rise = mi ? mi->watch_error_rate_increase : 0.01;
	bool errors_up = post_n >= 10 && job->post_err_rate > job->pre_err_rate + max_rise;
	bool slower = pre_n >= 20 && post_n >= 20 && mi &&
	              job->post_mean_ms > job->pre_mean_ms * (1 + 2 * mi->latency_tolerance) + 1.0 &&
	              job->post_mean_ms > mi->latency_budget_ms;
	char traffic[300], post_ms[40], pre_ms[40];
	ms_or_na(post_ms, sizeof(post_ms), job->post_mean_ms);
	ms_or_na(pre_ms, sizeof(pre_ms), job->pre_mean_ms);
	snprintf(traffic, sizeof(traffic),
	         "through vecgate %llu requests, error rate %.2f%% (before %.2f%%), mean %s (before %s)",
	         (unsigned long long)post_n, job->post_err_rate * 100, job->pre_err_rate * 100, post_ms, pre_ms);
	/* an operator who swapped over the gate's refusal accepted its numbers:
	 * the watch still guards errors and latency of the real traffic */
	bool overridden = job->gate_refusal[0] && job->approved;
	if (job->mode == SWAP_RENAME || ((gr.pass || overridden) && !errors_up && !slower))
		job_event(job, JEV_STEP_OK, "watch: %s; eval recall %.4f, p95 %.2f ms", traffic, out->recall, out->p95_ms);
	else
		job_event(job, JEV_DEGRADED, "watch: degraded after the swap (%s): rolling back",
		          errors_up ? traffic : slower ? traffic : gr.reason);
}

/* Which queries the recall is over, when the traffic sample is in the set. */
static void eval_sources_note(const struct eval_outcome *out, char *buf, size_t len)
{
	if (!out->n_traffic)
		snprintf(buf, len, "%s", "");
	else if (!out->n_file)
		snprintf(buf, len, " over %zu queries sampled from traffic", out->n_traffic);
	else
		snprintf(buf, len, " (eval file %.4f over %zu queries, traffic sample %.4f over %zu)", out->recall_file,
		         out->n_file, out->recall_traffic, out->n_traffic);
}

/* The run's per-partition split onto the job's partitions (by name): a
 * partition no true neighbour lives in (an empty one) keeps NAN. */
static void part_recalls_take(struct rebuild_job *job, const struct eval_outcome *out, bool baseline)
{
	if (!job->partitioned)
		return;
	if (!out->n_leaves && out->leaves_note && out->leaves_note[0])
		log_warn("job %d: no per-partition recall: %s", job->id, out->leaves_note);
	for (int i = 0; i < job->n_parts; i++) {
		struct job_partition *p = &job->parts[i];
		double hits = 0, want = 0;
		for (int l = 0; l < out->n_leaves; l++)
			if (!strcmp(out->leaves[l].schema, p->leaf_schema) && !strcmp(out->leaves[l].name, p->leaf)) {
				hits = out->leaves[l].hits;
				want = out->leaves[l].want;
			}
		*(baseline ? &p->base_recall : &p->new_recall) = out->n_leaves ? part_recall_of(hits, want) : NAN;
		*(baseline ? &p->base_neighbours : &p->neighbours) = out->n_leaves ? want : NAN;
	}
}

static void eval_done(void *arg, const struct eval_outcome *out, const char *error, bool transient)
{
	struct rebuild_job *job = arg;
	char sources[200];
	if (error) {
		job_event(job, transient ? JEV_TRANSIENT : JEV_FATAL, "%s", error);
		return;
	}
	const struct vg_managed_index *mi = job_index(job);
	switch (job->purpose) {
	case EVAL_BASELINE:
		job->base_recall = out->recall;
		job->base_recall_file = out->recall_file;
		job->base_recall_traffic = out->recall_traffic;
		job->base_p50 = out->p50_ms;
		job->base_p95 = out->p95_ms;
		job->have_base = true;
		part_recalls_take(job, out, true);
		eval_sources_note(out, sources, sizeof(sources));
		job_event(job, JEV_STEP_OK, "baseline: recall@%d %.4f%s, p50 %.2f ms, p95 %.2f ms; ground truth: %s",
		          mi ? mi->k : 0, out->recall, sources, out->p50_ms, out->p95_ms, out->truth ? out->truth : "?");
		return;
	case EVAL_VERIFY: {
		job->new_recall_file = out->recall_file;
		job->new_recall_traffic = out->recall_traffic;
		job->new_recall = out->recall;
		job->new_p50 = out->p50_ms;
		job->new_p95 = out->p95_ms;
		job->have_new = true;
		part_recalls_take(job, out, false);
		struct gate_input in = {job->base_recall, job->base_p95, out->recall, out->p95_ms,
		                        mi ? mi->recall_tolerance : 0, mi ? mi->latency_tolerance : 0,
		                        mi ? mi->latency_budget_ms : 0};
		struct gate_result gr;
		gate_evaluate(&in, &gr);
		eval_sources_note(out, sources, sizeof(sources));
		if (gr.pass) {
			job_event(job, JEV_STEP_OK, "gate passed: %s%s (plan used %s)", gr.reason, sources, out->plan_index);
		} else if (mi && mi->approve_swap && !job->rolling) {
			/* the build is worth keeping: the operator decides (not when
			 * rolling: its partitions already read through the candidates,
			 * which must not be held there after a refusal) */
			snprintf(job->gate_refusal, sizeof(job->gate_refusal), "%s", gr.reason);
			job_event(job, JEV_GATE_HELD,
			          "gate refused the new index: %s; the candidate is kept%s for the operator: vecgatectl approve "
			          "%d --override swaps it anyway, vecgatectl cancel %d drops it",
			          gr.reason, job->mode == SWAP_FLIP ? " (invisible to the planner)" : "", job->id, job->id);
		} else {
			job_event(job, JEV_GATE_FAILED, "gate refused the new index: %s; the live index is untouched",
			          gr.reason);
		}
		return;
	}
	case EVAL_WATCH:
		watch_judge(job, out);
		return;
	}
}

/* Verify hides the live index from the planner inside the eval transaction,
 * so the measured plans use the new one; EXPLAIN then has to prove it.  A
 * superuser marks it not valid there (pg_index.indisvalid, rolled back);
 * any other role hides it with hypopg from one generic plan made under
 * EXPLAIN, which every timed query reuses (eval.h), and the scan counts of
 * the transaction prove the plan held.  Without either, verify can only
 * measure the candidate when the planner already prefers it.  Baseline and
 * watch time their queries the same way as verify, so the gate compares
 * like with like. */
static void start_eval(struct rebuild_job *job, enum eval_purpose purpose)
{
	const struct vg_managed_index *mi = job_index(job);
	if (!mi) {
		job_event(job, JEV_FATAL, "managed index %s vanished from the configuration", job->index_name);
		return;
	}
	job->purpose = purpose;
	struct eval_opts opts = {0};
	char measure[2400], hide[1800], unhide[300], fresh[700], live[700], hint[1400];
	bool hypopg = job_hides_with_hypopg(job);
	opts.generic_plan = hypopg;
	if (job->mode == SWAP_HINT) {
		/* the eval's own queries carry the same pin as the traffic: the
		 * live index for the baseline, the candidate after it exists; the
		 * scan counters of the eval transaction prove the hint held */
		const char *target = purpose == EVAL_BASELINE ? job->live : job->fresh, *why;
		char list[300];
		if (pin_index_list(&target, 1, list, sizeof(list)) < 0 ||
		    pin_hint_for(mi->eval_query, strlen(mi->eval_query), job->schema, job->table, list, hint, sizeof(hint),
		                 &why) != PIN_HINTED) {
			job_event(job, JEV_FATAL, "cannot pin the eval query to %s with a plan hint", target);
			return;
		}
		opts.hint = hint;
		if (purpose != EVAL_BASELINE) {
			sql_qualified(job->schema, job->live, live, sizeof(live));
			sql_qualified(job->schema, job->fresh, fresh, sizeof(fresh));
			opts.scans_on = fresh;
			opts.no_scans_on = live;
		}
		if (purpose == EVAL_VERIFY)
			opts.expect_index = job->fresh;
	} else if (purpose == EVAL_VERIFY && job->partitioned) {
		/* the new tree valid and the old one not, inside the eval
		 * transaction only; EXPLAIN shows the partitions' indexes (a
		 * partitioned index is never scanned itself): the largest
		 * partition's candidate must serve */
		if (job->superuser && sql_part_measure(job->schema, job->live, job->fresh, measure, sizeof(measure)) == 0)
			opts.setup_sql = measure;
		int big = -1;
		for (int i = 0; i < job->n_parts; i++)
			if (big < 0 || job->parts[i].rows > job->parts[big].rows)
				big = i;
		opts.expect_index = big >= 0 ? job->parts[big].fresh_child : job->fresh;
		opts.expect_hint = job->superuser ? "" : " (rename mode measures what the planner prefers: without superuser "
		                                         "nothing takes a partition's live index from the planner)";
	} else if (purpose == EVAL_VERIFY) {
		if (job->superuser && sql_measure_candidate(job->schema, job->live, job->fresh, measure, sizeof(measure)) == 0)
			opts.setup_sql = measure;
		if (hypopg && sql_hypopg_hide(job->hypopg_schema, job->schema, job->live, hide, sizeof(hide)) == 0 &&
		    sql_hypopg_unhide_all(job->hypopg_schema, unhide, sizeof(unhide)) == 0) {
			sql_qualified(job->schema, job->live, live, sizeof(live));
			sql_qualified(job->schema, job->fresh, fresh, sizeof(fresh));
			opts.plan_setup_sql = hide;
			opts.plan_teardown_sql = unhide;
			opts.scans_on = fresh;
			opts.no_scans_on = live;
		}
		opts.expect_index = job->fresh;
		opts.expect_hint = job->superuser || hypopg
		                       ? ""
		                       : " (without superuser vecgate hides the live index from the measurement with hypopg "
		                         ">= 1.4: CREATE EXTENSION hypopg in this database)";
	}
	/* the whole gate's recall split by where the true neighbours live */
	opts.per_partition = job->partitioned && purpose != EVAL_WATCH;
	job->step_busy = true;
	eval_run_start(&job->eval, job->maint.s, mi, &job->evals, &opts, eval_done, job);
}

/* ---- steps ---- */

/* The candidate's CREATE INDEX CONCURRENTLY: the live definition with the
 * configured WITH overrides and the shape preflight accepted. */
int job_new_definition(const struct rebuild_job *job, const char *live_def, const char *name, char *def, size_t len,
                       char *err, size_t errlen)
{
	const struct vg_managed_index *mi = job_index(job);
	struct index_param ov[32];
	int n = 0;
	for (size_t i = 0; mi && i < mi->n_with && n < 32; i++, n++) {
		ov[n].name = mi->with[i].name;
		ov[n].value = mi->with[i].value;
	}
	const struct index_shape shape = {job->shape.method[0] ? job->shape.method : NULL,
	                                  job->shape.opclass[0] ? job->shape.opclass : NULL,
	                                  job->shape.expression[0] ? job->shape.expression : NULL};
	return indexdef_rewrite_shape(live_def, name, job->shape.set ? &shape : NULL, ov, n, def, len, err, errlen);
}

static int new_definition(const struct rebuild_job *job, char *def, size_t len, char *err, size_t errlen)
{
	return job_new_definition(job, job->live_def, job->fresh, def, len, err, errlen);
}

enum preflight_stage {
	PF_SUPER, PF_HYPOPG, PF_HINT, PF_SAMPLES, PF_NAMES, PF_INDEX, PF_PARTS, PF_KEY_TYPE, PF_SHAPE, PF_INVALID, PF_RUNNING,
	PF_OLD_XACTS, PF_SPACE, PF_PLAN, PF_DONE
};

static void preflight_result(void *arg, PGresult *res, const char *error);
static void preflight_next(struct rebuild_job *job);

/* The plan preflight started: its verdict against the operator's limits
 * (memory, disk, max_build_seconds); a plan that failed only costs the
 * prediction. */
static void plan_done(void *arg, const struct build_plan *p)
{
	struct rebuild_job *job = arg;
	const struct vg_managed_index *mi = job_index(job);
	job->planning = NULL;
	if (job->state != JOB_PREFLIGHT || job->pf_stage != PF_PLAN)
		return;
	if (p->state == PLAN_FAILED) {
		snprintf(job->plan_error, sizeof(job->plan_error), "%s", p->error);
		job_note(job, "warning", "build plan failed (%s): the build goes on without a prediction", p->error);
	} else {
		job->plan = p->r;
		job->have_plan = true;
		struct bp_limits l = {p->r.mwm_bytes, p->r.peak_bytes, p->r.cliff, job->free_bytes, p->r.disk_need_bytes,
		                      mi ? mi->max_build_seconds : 0, p->r.predicted_s};
		char why[700];
		enum bp_over over = bp_check(&l, why, sizeof(why));
		if (over != BP_OVER_NONE && mi && mi->plan_over_limit == VG_OVER_APPROVE) {
			/* the operator decides: the job waits here, nothing built yet */
			snprintf(job->plan_hold, sizeof(job->plan_hold), "%s", why);
			job->plan_hold_setting = bp_over_setting(over);
			job->plan_approved = false;
			job->step_busy = false; /* a lost connection meanwhile loses no step */
			job_note(job, "warning", "preflight: the build plan is over a limit (%s): %s; waiting for approval to "
			         "build (vecgatectl approve %d), or cancel (vecgatectl cancel %d)", job->plan_hold_setting, why,
			         job->id, job->id);
			snprintf(job->message, sizeof(job->message), "preflight: build plan over %s; waiting for approval to "
			         "build (vecgatectl approve %d)", job->plan_hold_setting, job->id);
			return;
		}
		if (over != BP_OVER_NONE) {
			job_event(job, JEV_FATAL, "preflight: %s", why);
			return;
		}
	}
	job->pf_stage = PF_DONE;
	preflight_next(job);
}

/* auto: flip with a superuser, else hint where pg_hint_plan is loaded, else
 * rename.  A resumed job keeps the mode it was recorded with.  Hint mode
 * needs an eval query it can pin, or verify could not measure the
 * candidate. */
static bool choose_swap_mode(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	bool hints = !strcmp(job->hint_plan, "on");
	enum vg_swap_mode want = mi ? mi->swap_mode : VG_SWAP_AUTO;
	const char *role = mi && mi->user ? mi->user : "postgres";
	if (!job->resuming) {
		if (want == VG_SWAP_HINT && !hints) {
			job_event(job, JEV_FATAL,
			          "preflight: swap_mode hint needs pg_hint_plan loaded by the server (shared_preload_libraries = "
			          "'pg_hint_plan'; on a managed service, its parameter group or database flags) with "
			          "pg_hint_plan.enable_hint on for role %s (it is %s)",
			          role, job->hint_plan[0] ? job->hint_plan : "not loaded");
			return false;
		}
		job->mode = want == VG_SWAP_RENAME ? SWAP_RENAME
		            : want == VG_SWAP_HINT ? SWAP_HINT
		            : want == VG_SWAP_FLIP ? SWAP_FLIP
		            : job->superuser       ? SWAP_FLIP
		            : hints                ? SWAP_HINT
		                                   : SWAP_RENAME;
	}
	if (job->mode == SWAP_HINT && mi) {
		char hint[600];
		const char *why;
		if (pin_hint_for(mi->eval_query, strlen(mi->eval_query), job->schema, job->table, "\"x\"", hint, sizeof(hint),
		                 &why) != PIN_HINTED) {
			job_event(job, JEV_FATAL, "preflight: swap mode hint cannot pin the eval query (%s), so verify could not "
			          "measure the new index: write eval_query as one ORDER BY read of %s.%s",
			          why[0] ? why : "it does not read the table by distance", job->schema, job->table);
			return false;
		}
	}
	return true;
}

/* The new key's type, when the expression changes: the expression
 * selected from the table with no row (the server types it, and refuses an
 * expression that cannot be the key). */
static void key_type_query(struct rebuild_job *job, const struct vg_managed_index *mi)
{
	char rel[700], sql[4096];
	job->key_type[0] = 0;
	if (!mi->expression) {
		job->pf_stage++;
		preflight_next(job);
		return;
	}
	if (!indexdef_expression_ok(mi->expression)) {
		job_event(job, JEV_FATAL, "preflight: expression '%s' is not one balanced SQL expression (no ';' or "
		          "comment)", mi->expression);
		return;
	}
	sql_qualified(job->schema, job->table, rel, sizeof(rel));
	if (snprintf(sql, sizeof(sql), "SELECT (%s) FROM %s LIMIT 0", mi->expression, rel) >= (int)sizeof(sql)) {
		job_event(job, JEV_FATAL, "preflight: expression too long");
		return;
	}
	job_query(job, sql, 0, NULL, preflight_result);
}

static void shape_query(struct rebuild_job *job, const struct vg_managed_index *mi)
{
	const char *params[] = {job->live_oid, mi->method ? mi->method : "", mi->opclass_schema ? mi->opclass_schema : "",
	                        mi->opclass ? mi->opclass : "", job->key_type};
	job_query(job, SQL_INDEX_SHAPE, 5, params, preflight_result);
}

/* The catalog's answer on the new shape: refused with the reason, or the
 * shape the build will write (the opclass always named, qualified). */
static bool shape_result(struct rebuild_job *job, const struct vg_managed_index *mi, const PGresult *res)
{
	const char *cell[12];
	for (int c = 0; c < 12; c++)
		cell[c] = PQntuples(res) == 1 && PQnfields(res) == 12 && !PQgetisnull(res, 0, c) ? PQgetvalue(res, 0, c) : NULL;
	if (!cell[0]) {
		job_event(job, JEV_FATAL, "preflight: the live index %s vanished while its shape was read", job->live);
		return false;
	}
	struct index_key live;
	struct knn_distance_use use;
	bool have_use = knn_distance_use(mi->eval_query, &use) == 0;
	struct shape_facts f = {
		mi->method, mi->opclass_schema, mi->opclass, mi->expression,
		cell[0], cell[1], cell[2], cell[3],
		cell[4], cell[5], cell[6], cell[7], cell[8],
		cell[9], cell[10], cell[11] && !strcmp(cell[11], "t"),
		indexdef_key(job->live_def, &live) == 0 ? live.key : NULL,
		have_use ? use.op : NULL, have_use ? use.operand : NULL,
	};
	char why[1024];
	if (shape_verdict(&f, why, sizeof(why)) < 0) {
		job_event(job, JEV_FATAL, "preflight: the new definition could not serve the same reads: %s", why);
		return false;
	}
	char qs[140], qn[140];
	quote_ident(cell[7], qs, sizeof(qs));
	quote_ident(cell[6], qn, sizeof(qn));
	snprintf(job->shape.opclass, sizeof(job->shape.opclass), "%s.%s", qs, qn);
	snprintf(job->shape.method, sizeof(job->shape.method), "%s", mi->method ? mi->method : "");
	snprintf(job->shape.expression, sizeof(job->shape.expression), "%s", mi->expression ? mi->expression : "");
	job->shape.set = true;
	/* the whole statement is derived now: whatever it refuses, it refuses before the build */
	char def[8192], err[256];
	if (new_definition(job, def, sizeof(def), err, sizeof(err)) < 0) {
		job_event(job, JEV_FATAL, "preflight: cannot derive the new definition from \"%s\": %s", job->live_def, err);
		return false;
	}
	log_info("rebuild %d: new shape accepted (%s %s -> %s %s): %s", job->id, cell[0], cell[1], cell[4], cell[6], def);
	return true;
}

static void preflight_next(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	char age[32];
	switch (job->pf_stage) {
	case PF_SUPER:
		job_query(job, SQL_IS_SUPERUSER, 0, NULL, preflight_result);
		return;
	case PF_HYPOPG:
		job_query(job, SQL_HYPOPG, 0, NULL, preflight_result);
		return;
	case PF_HINT:
		job_query(job, SQL_HINT_PLAN, 0, NULL, preflight_result);
		return;
	case PF_SAMPLES:
		if (mi && mi->eval_source != VG_EVAL_FILE) {
			const char *params[] = {mi->name};
			job_query(job, SQL_SAMPLES_READ, 1, params, preflight_result);
			return;
		}
		job->pf_stage++;
		preflight_next(job);
		return;
	case PF_NAMES: {
		const char *params[] = {job->schema, job->table, job->live};
		job_query(job, SQL_NAMES_LOOKUP, 3, params, preflight_result);
		return;
	}
	case PF_INDEX: {
		const char *params[] = {job->live_oid};
		job_query(job, SQL_INDEX_INFO, 1, params, preflight_result);
		return;
	}
	case PF_PARTS:
		if (job->partitioned) {
			const char *params[] = {job->live_oid};
			job_query(job, SQL_PART_LIST, 1, params, preflight_result);
			return;
		}
		job->pf_stage++;
		/* fall through */
	case PF_KEY_TYPE:
	case PF_SHAPE:
		if (!mi || (!mi->method && !mi->opclass && !mi->expression)) {
			job->shape.set = false; /* the live shape, as pg_get_indexdef writes it */
			if (job->resuming) {
				job_resume_continue(job);
				return;
			}
			job->pf_stage = PF_INVALID;
			preflight_next(job);
			return;
		}
		if (job->pf_stage == PF_KEY_TYPE)
			key_type_query(job, mi);
		else
			shape_query(job, mi);
		return;
	case PF_INVALID:
	case PF_RUNNING: {
		char q[700];
		sql_qualified(job->schema, job->table, q, sizeof(q));
		const char *params[] = {q};
		job_query(job, job->pf_stage == PF_INVALID ? SQL_INVALID_INDEXES : SQL_BUILDS_RUNNING, 1, params,
		      preflight_result);
		return;
	}
	case PF_OLD_XACTS: {
		snprintf(age, sizeof(age), "%g", mi ? mi->max_transaction_age : 300);
		const char *params[] = {age};
		job_query(job, SQL_OLD_TRANSACTIONS, 1, params, preflight_result);
		return;
	}
	case PF_SPACE:
		if (mi && mi->free_space_query) {
			job_query(job, mi->free_space_query, 0, NULL, preflight_result);
			return;
		}
		if (mi && mi->free_space_bytes)
			job->free_bytes = (double)mi->free_space_bytes;
		if (mi && mi->free_space_bytes && (long long)mi->free_space_bytes < 2 * job->live_size) {
			job_event(job, JEV_FATAL,
			          "preflight: %zu bytes free, the build needs about %lld (2x the live index %s); free space "
			          "or raise free_space_bytes if the figure is wrong",
			          mi->free_space_bytes, 2 * job->live_size, job->live);
			return;
		}
		job->pf_stage = PF_PLAN;
		/* fall through */
	case PF_PLAN:
		if (mi && mi->plan == VG_PLAN_AUTO && !job->resuming) {
			char err[300];
			plan_abandon(job->planning);
			job->planning = plan_start(mi, (int)(eval_set_count(&job->evals, false) + job->samples_loaded),
			                           plan_done, job, err, sizeof(err));
			if (job->planning)
				return; /* plan_done() goes on */
			snprintf(job->plan_error, sizeof(job->plan_error), "%s", err);
			job_note(job, "warning", "no build plan (%s): the build goes on without a prediction", err);
		}
		job->pf_stage = PF_DONE;
		/* fall through */
	case PF_DONE: {
		char why[700], plan[300] = "";
		job_mode_reason(job, why, sizeof(why));
		if (job->have_plan) {
			char peak[32], mwm[32];
			bp_bytes_str(job->plan.peak_bytes, peak, sizeof(peak));
			bp_bytes_str(job->plan.mwm_bytes, mwm, sizeof(mwm));
			snprintf(plan, sizeof(plan), "; build plan: %.0f s predicted (%.0f to %.0f), memory %s%s of %s (plan "
			         "took %.1f s)", job->plan.predicted_s, job->plan.predicted_lo, job->plan.predicted_hi,
			         job->plan.peak_is_bound ? "under " : "", peak, mwm, job->plan.cost_s);
		}
		char parts[200] = "";
		if (job->partitioned)
			snprintf(parts, sizeof(parts), "; partitioned table: %d partitions, each built concurrently in turn, %s",
			         job->n_parts, job->rolling ? "gated on its own and swapped before the next (rolling), then the "
			                                      "parents swapped"
			                                    : "one gate, the whole tree swapped at once");
		job_event(job, JEV_STEP_OK, "preflight passed (swap mode %s): %s; eval set: %zu queries from the eval file, "
		          "%zu sampled from traffic%s%s", swap_mode_name(job->mode), why,
		          eval_set_count(&job->evals, false), job->samples_loaded, plan, parts);
		return;
	}
	}
}

/* The traffic sample becomes part of the job's eval set for its whole
 * life, so baseline, verify and watch measure the same queries. */
static bool take_samples(struct rebuild_job *job, const PGresult *res, const char *error)
{
	const struct vg_managed_index *mi = job_index(job);
	if (!mi) {
		job_event(job, JEV_FATAL, "managed index %s vanished from the configuration", job->index_name);
		return false;
	}
	int rows = eval_set_take_samples(&job->evals, mi, res, error);
	job->samples_loaded = eval_set_count(&job->evals, true);
	if (mi->eval_source == VG_EVAL_TRAFFIC && rows < mi->traffic_min_samples) {
		job_event(job, JEV_FATAL,
		          "preflight: %d traffic samples of %s in vecgate.eval_samples%s%s, eval_source traffic needs "
		          "traffic_min_samples (%d): let more vector reads through vecgate, or lower traffic_min_samples",
		          rows, mi->name, error ? " (" : "", error ? "not readable yet)" : "", mi->traffic_min_samples);
		return false;
	}
	if (!job->samples_loaded)
		log_info("rebuild %d (%s): %d traffic samples, fewer than traffic_min_samples (%d): the eval file only",
		         job->id, mi->name, rows, mi->traffic_min_samples);
	return true;
}

static void preflight_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	const struct vg_managed_index *mi = job_index(job);
	if (job->pf_stage == PF_SAMPLES) {
		if (!take_samples(job, res, error))
			return;
		job->pf_stage++;
		preflight_next(job);
		return;
	}
	if (job->pf_stage == PF_KEY_TYPE && error && !pg_result_transient(res)) {
		job_event(job, JEV_FATAL, "preflight: expression '%s' cannot be a key of %s.%s: %s", mi ? mi->expression : "",
		          job->schema, job->table, error);
		return;
	}
	if (error) {
		job_event(job, pg_result_transient(res) ? JEV_TRANSIENT : JEV_FATAL, "preflight query failed: %s", error);
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
		break;
	case PF_HINT:
		snprintf(job->hint_plan, sizeof(job->hint_plan), "%s",
		         PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
		if (!choose_swap_mode(job))
			return;
		break;
	case PF_HYPOPG:
		snprintf(job->hypopg_schema, sizeof(job->hypopg_schema), "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
		snprintf(job->hypopg_version, sizeof(job->hypopg_version), "%s", PQntuples(res) ? PQgetvalue(res, 0, 1) : "");
		break;
	case PF_NAMES: {
		/* the names as configured, each part exactly as the catalog spells
		 * it: a name that matches nothing is refused with what was looked up */
		char why[1400];
		const char *cell[7];
		for (int c = 0; c < 7; c++)
			cell[c] = PQntuples(res) == 1 && PQnfields(res) == 7 && !PQgetisnull(res, 0, c) ? PQgetvalue(res, 0, c)
			                                                                                 : NULL;
		struct names_found f = {cell[0] && !strcmp(cell[0], "t"), cell[1] ? cell[1][0] : 0, cell[2] ? cell[2][0] : 0,
		                        cell[3], cell[4], cell[5], cell[6]};
		if (names_verdict(job->schema, job->table, job->live, &f, why, sizeof(why)) < 0) {
			job_event(job, JEV_FATAL, "preflight: the managed index's names match nothing: %s", why);
			return;
		}
		snprintf(job->live_oid, sizeof(job->live_oid), "%s", f.index_oid);
		break;
	}
	case PF_INDEX:
		if (PQntuples(res) != 1) {
			job_event(job, JEV_FATAL, "preflight: index %s.%s not found", job->schema, job->live);
			return;
		}
		/* a partitioned table: PostgreSQL builds no partitioned index
		 * concurrently, so each partition gets its own concurrent build
		 * (partitions.c); what that cannot do is refused by PF_PARTS */
		job->partitioned = !strcmp(PQgetvalue(res, 0, 8), "p");
		job->rolling = job->partitioned && mi && mi->partitions == VG_PARTITIONS_ROLLING;
		if (job->rolling && job->mode != SWAP_FLIP) {
			/* a partition swapped alone must be able to go back alone, and
			 * its candidate must stay out of its reads until its gate */
			job_event(job, JEV_FATAL, "preflight: partitions: rolling needs swap mode flip (a superuser maintenance "
			          "role), not %s: %s; use partitions: whole", swap_mode_name(job->mode),
			          job->mode == SWAP_RENAME
			              ? "rename mode cannot hide a partition's candidate from its reads before that partition's "
			                "gate, and drops the old index at the swap, so a partition swapped early could not be "
			                "rolled back"
			              : "a plan hint cannot pin a partition's reads (pg_hint_plan matches each partition by its "
			                "own index's name)");
			return;
		}
		if (job->rolling) {
			/* each partition's gate runs the eval query on that partition */
			char leaf[420], *q = malloc(strlen(mi->eval_query) + 1024);
			const char *why = "out of memory";
			sql_qualified(job->schema, job->table, leaf, sizeof(leaf));
			int rc = q ? pin_retarget(mi->eval_query, strlen(mi->eval_query), job->schema, job->table, leaf, q,
			                          strlen(mi->eval_query) + 1024, &why)
			           : -1;
			free(q);
			if (rc < 0) {
				job_event(job, JEV_FATAL, "preflight: partitions: rolling gates each partition with the eval query "
				          "restricted to it, and this eval query cannot be: %s; write it as one read of %s.%s in "
				          "FROM, or use partitions: whole", why, job->schema, job->table);
				return;
			}
		}
		if (job->partitioned && job->mode == SWAP_HINT) {
			job_event(job, JEV_FATAL, "preflight: %s.%s is a partitioned table (%s partitions) and swap mode hint "
			          "cannot pin its reads: pg_hint_plan ignores a partitioned index's name in a hint and pins a "
			          "partition only by the name of that partition's own index, which vecgate's pin does not "
			          "list; use a superuser maintenance role (flip mode) or swap_mode: rename", job->schema,
			          job->table, PQgetvalue(res, 0, 9));
			return;
		}
		job_set_str(&job->live_def, PQgetvalue(res, 0, 2));
		job->live_size = atoll(PQgetvalue(res, 0, 5));
		if (job->resuming)
			break; /* the shape next, then the resume */
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
	case PF_PARTS:
		if (!part_preflight(job, res))
			return;
		break;
	case PF_KEY_TYPE:
		snprintf(job->key_type, sizeof(job->key_type), "%u", PQnfields(res) == 1 ? (unsigned)PQftype(res, 0) : 0u);
		break;
	case PF_SHAPE:
		if (!mi || !shape_result(job, mi, res))
			return;
		if (job->resuming) {
			job_resume_continue(job);
			return;
		}
		break;
	case PF_INVALID:
		for (int r = 0; r < PQntuples(res); r++) {
			const char *name = PQgetvalue(res, r, 0), *in_schema = job->schema;
			bool ours = index_is_derived(job->live, name);
			/* a partition's leftover candidate is named after that partition's index */
			for (int i = 0; !ours && job->partitioned && i < job->n_parts; i++)
				if (index_is_derived(job->parts[i].live_child, name)) {
					ours = true;
					in_schema = job->parts[i].leaf_schema;
				}
			if (ours && mi && mi->drop_invalid) {
				char sql[800];
				sql_drop_index_concurrently(in_schema, name, sql, sizeof(sql));
				job_query(job, sql, 0, NULL, NULL);
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
		job->free_bytes = (double)free_bytes;
		if (free_bytes < 2 * job->live_size) {
			job_event(job, JEV_FATAL,
			          "preflight: free_space_query reports %lld bytes free; the build needs about %lld (2x the "
			          "live index)",
			          free_bytes, 2 * job->live_size);
			return;
		}
		break;
	}
	case PF_DONE:
		return;
	}
	job->pf_stage++;
	preflight_next(job);
}

/* build: progress polling on a second session */

/* A wait phase of CREATE INDEX CONCURRENTLY (writers before build or
 * validation, old snapshots) names the backend it waits for: keep it, and
 * tell the log once per blocker what would unblock the build. */
static void note_blocker(struct rebuild_job *job, const PGresult *res, int col)
{
	struct build_blocker *b = &job->blocker;
	int pid = PQntuples(res) && PQnfields(res) > col && !PQgetisnull(res, 0, col) ? atoi(PQgetvalue(res, 0, col)) : 0;
	if (!pid) {
		if (b->pid)
			log_info("rebuild %d: no longer waits for pid %d (waited %.0f s)", job->id, b->pid,
			         now_sec() - job->blocked_since);
		b->pid = 0;
		return;
	}
	bool changed = pid != b->pid;
	if (changed)
		job->blocked_since = now_sec();
	b->pid = pid;
	snprintf(b->user, sizeof(b->user), "%s", PQgetvalue(res, 0, col + 1));
	snprintf(b->application, sizeof(b->application), "%s", PQgetvalue(res, 0, col + 2));
	snprintf(b->client, sizeof(b->client), "%s", PQgetisnull(res, 0, col + 3) ? "local" : PQgetvalue(res, 0, col + 3));
	b->xact_age_s = PQgetisnull(res, 0, col + 4) ? NAN : atof(PQgetvalue(res, 0, col + 4));
	b->query_age_s = PQgetisnull(res, 0, col + 5) ? NAN : atof(PQgetvalue(res, 0, col + 5));
	snprintf(b->query, sizeof(b->query), "%s", PQgetvalue(res, 0, col + 6));
	if (changed)
		log_warn("rebuild %d: %s waits for pid %d (user %s, application '%s', client %s, transaction open %.0f s); to "
		         "unblock it: SELECT pg_cancel_backend(%d) or pg_terminate_backend(%d)",
		         job->id, job->state == JOB_SWAP ? "the swap" : job->phase, pid, b->user, b->application, b->client,
		         b->xact_age_s, pid, pid);
}

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
	note_blocker(job, res, 7);
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
	if (job->partitioned)
		part_progress(job, f); /* the whole, weighted by each partition's rows */
	else if (f > job->percent / 100)
		job->percent = f * 100;
	/* the ETA follows the plan's curve and the live progress: pgvector's
	 * tuples while it loads them, the job's percent otherwise */
	/* pgvector counts the tuples it loads without a total: the table's
	 * rows, as the plan read them, stand in */
	double total = job->tuples_total > 0 ? (double)job->tuples_total : job->have_plan ? job->plan.rows : 0;
	bool tuples = total > 0 && job->tuples_done > 0 && strstr(job->phase, "building");
	struct bp_eta_in in = {
		.predicted_s = job->have_plan ? job->plan.predicted_s : NAN,
		.exponent = job->have_plan && job->plan.have_fit && job->plan.fit.model == BP_POWER ? job->plan.fit.b : 1,
		.elapsed_s = now_sec() - job->build_started,
		.done = tuples ? (double)job->tuples_done : job->percent,
		.total = tuples ? total : 100,
		.cliff_tuples = tuples ? (double)job->cliff_tuples : 0,
		.cliff_elapsed_s = job->cliff_elapsed,
	};
	job->eta_s = bp_eta(&in);
}

static void poll_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rebuild_job *job = arg;
	if (!job->building)
		return;
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", job->build_pid);
	const char *params[] = {pid};
	if (index_link_up(&job->poll) && pg_session_idle(job->poll.s))
		pg_session_query(job->poll.s, SQL_BUILD_PROGRESS, 1, params, progress_result, job);
	struct timeval tv = {1, 0};
	evtimer_add(job->poll_timer, &tv);
}

/* progress pauses while the link reconnects; the build goes on */
static void poll_up(void *arg, const char *error)
{
	(void)error;
	poll_tick(-1, 0, arg);
}

static void candidate_hidden(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	char what[300];
	job_end_failed_transaction(job, error);
	snprintf(what, sizeof(what), "cannot keep the new index %s from the planner until the swap", job->fresh);
	if (step_failed(job, res, error, what))
		return;
	job_event(job, JEV_STEP_OK, "built %s in %.1fs; kept invisible to the planner until the swap", job->fresh,
	          now_sec() - job->build_started);
}

static void build_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	stop_polling(job);
	if (step_failed(job, res, error, "CREATE INDEX CONCURRENTLY failed"))
		return;
	job->percent = 100;
	job->eta_s = 0;
	snprintf(job->phase, sizeof(job->phase), "done");
	char predicted[64] = "";
	if (job->have_plan)
		snprintf(predicted, sizeof(predicted), " (the plan predicted %.1fs)", job->plan.predicted_s);
	if (job->mode == SWAP_FLIP) {
		/* a fresh compact graph would win the planner at once: keep it out
		 * of every plan until the gated swap */
		/* (the fence in the same transaction: a round trip less while the
		 * candidate is valid) */
		char sql[3400], fence[1200];
		sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
		if (sql_hide_candidate(job->schema, job->table, job->fresh, fence, sql, sizeof(sql)) == 0) {
			job_query(job, sql, 0, NULL, candidate_hidden);
			return;
		}
	}
	if (job->mode == SWAP_HINT)
		job_event(job, JEV_STEP_OK, "built %s in %.1fs; vector reads through vecgate stay pinned to %s until the swap",
		          job->fresh, now_sec() - job->build_started, job->live);
	else
		job_event(job, JEV_STEP_OK, "built %s in %.1fs%s", job->fresh, now_sec() - job->build_started, predicted);
}

/* ---- hint mode: the pin lives in vecgate.routes ---- */

static int pin_statement(const struct rebuild_job *job, const char *pin, const char *hidden, char *sql, size_t len)
{
	char by[200], fence[1200];
	snprintf(by, sizeof(by), "rebuild job %lld (%s)", job->db_id, vg_instance_id());
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	return sql_pin(job->index_name, job->schema, job->table, pin, hidden, by, fence, sql, len);
}

/* a committed pin holds here at once; the other instances follow its NOTIFY */
static void pin_committed(const struct rebuild_job *job, const PGresult *res, const char *pin)
{
	routes_pin_written(job->index_name, pin,
	                   PQntuples(res) && PQnfields(res) > 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : "");
}

static void start_build(struct rebuild_job *job);


static void build_pin_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job->step_busy = false;
	char what[300];
	snprintf(what, sizeof(what), "cannot pin vector reads to %s before the build", job->live);
	if (step_failed(job, res, error, what))
		return;
	pin_committed(job, res, job->live);
	job->build_pinned = true;
	start_build(job);
}

static void start_build(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	if (job->mode == SWAP_HINT && !job->build_pinned) {
		/* before the candidate can exist, every instance pins its reads to
		 * the live index: a finished build is then used by no read through
		 * vecgate before the gated swap */
		char sql[4096];
		if (pin_statement(job, job->live, job->fresh, sql, sizeof(sql)) < 0) {
			job_event(job, JEV_FATAL, "pin statement too long");
			return;
		}
		job->step_busy = true;
		job_query(job, sql, 0, NULL, build_pin_result);
		return;
	}
	if (!job->have_pre_end) {
		pools_traffic(mi ? mi->database : "", &job->t_pre_end);
		job->have_pre_end = true;
	}
	if (job->partitioned) {
		part_build_start(job);
		return;
	}
	char def[8192], err[256];
	if (new_definition(job, def, sizeof(def), err, sizeof(err)) < 0) {
		job_event(job, JEV_FATAL, "cannot derive the new definition from \"%s\": %s", job->live_def, err);
		return;
	}
	/* the new index lives in the table's schema: qualify nothing else */
	log_info("rebuild %d: %s", job->id, def);
	job->build_pid = pg_session_backend_pid(job->maint.s);
	job->build_started = now_sec();
	job->percent = 0;
	job->eta_s = job->have_plan ? job->plan.predicted_s : NAN;
	job->cliff_tuples = 0;
	job->cliff_elapsed = 0;
	snprintf(job->phase, sizeof(job->phase), "starting");
	job->step_busy = true;
	job_build_poll_start(job);
	job_query_fenced(job, def, build_result);
}

void job_build_poll_start(struct rebuild_job *job)
{
	job->building = true;
	if (!job->poll_timer)
		job->poll_timer = evtimer_new(vg.base, poll_tick, job);
	index_link_open(&job->poll);
}

void job_build_poll_stop(struct rebuild_job *job)
{
	stop_polling(job);
}

static void swap_lockers(void *arg, PGresult *res, const char *error)
{
	if (!error)
		note_blocker(arg, res, 0);
}

static void swap_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job->swap_ms = (now_sec() - job->swap_sent) * 1000.0;
	if (job_fenced_error(error)) {
		pg_session_query(job->maint.s, "ROLLBACK", 0, NULL, NULL, NULL);
		lost_lock(job, error);
		return;
	}
	if (error) {
		/* (a dead session needs no ROLLBACK: the retry checks the catalog) */
		pg_session_query(job->maint.s, "ROLLBACK", 0, NULL, NULL, NULL);
		if (pg_result_transient(res)) {
			/* name who holds the table before the retry */
			char rel[700];
			sql_qualified(job->schema, job->table, rel, sizeof(rel));
			const char *params[] = {rel};
			pg_session_query(job->maint.s, SQL_TABLE_LOCKERS, 1, params, swap_lockers, job);
		}
		job_event(job, pg_result_transient(res) ? JEV_TRANSIENT : JEV_FATAL,
		          "swap attempt %d did not get its locks in time (%s); retrying with backoff", job->attempts, error);
		return;
	}
	note_blocker(job, NULL, 0);
	const struct vg_managed_index *mi = job_index(job);
	pools_traffic(mi ? mi->database : "", &job->t_swap);
	if (job->mode == SWAP_RENAME)
		job->cleanup |= CLEAN_DROP_RETIRED; /* without superuser the old index must go for the planner to move */
	if (job->mode == SWAP_HINT) {
		pin_committed(job, res, job->fresh);
		job_event(job, JEV_STEP_OK, "swapped in %.2f ms (hint mode: vector reads through vecgate are pinned to %s, "
		          "no DDL, no lock; %s kept for instant rollback)", job->swap_ms, job->fresh, job->live);
		return;
	}
	job_event(job, JEV_STEP_OK, "swapped in %.2f ms (%s mode%s)", job->swap_ms, swap_mode_name(job->mode),
	          job->mode == SWAP_FLIP ? ", old index kept for instant rollback" : "; old index dropped, no rollback");
}

static void start_swap(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	char fence[1200];
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	struct swap_names n = {job->schema, job->table, job->live, job->fresh, job->retired,
	                       mi ? mi->lock_timeout_ms : 50, fence};
	char sql[16384];
	const char *names[5 * 256];
	struct part_names pn;
	if (job->partitioned)
		part_names_of(job, &pn, names, n.lock_timeout_ms, fence);
	if (job->mode == SWAP_HINT ? pin_statement(job, job->fresh, job->live, sql, sizeof(sql)) < 0
	    : job->partitioned     ? sql_part_swap(&pn, job->mode, sql, sizeof(sql)) < 0
	                           : sql_swap(&n, job->mode, sql, sizeof(sql)) < 0) {
		job_event(job, JEV_FATAL, "swap statement too long");
		return;
	}
	job->swap_tries++;
	job->swap_sent = now_sec();
	job->step_busy = true;
	job_query(job, sql, 0, NULL, swap_result);
}

static void start_verify(struct rebuild_job *job)
{
	char sql[1024], q[700];
	sql_qualified(job->schema, job->table, q, sizeof(q));
	snprintf(sql, sizeof(sql), "ANALYZE %s", q);
	job_query(job, "ROLLBACK", 0, NULL, NULL);
	job_query(job, sql, 0, NULL, NULL);
	start_eval(job, EVAL_VERIFY);
}

/* ---- watch: proof that traffic moved, from the server's own counters ---- */

/* the index that serves after the swap, and the one retired by it */
static void proof_names(const struct rebuild_job *job, char *old_rel, char *new_rel, size_t len)
{
	sql_qualified(job->schema, job->mode == SWAP_HINT ? job->live : job->retired, old_rel, len);
	sql_qualified(job->schema, job->mode == SWAP_HINT ? job->fresh : job->live, new_rel, len);
}

static void route_reads(const struct rebuild_job *job, uint64_t *primary, uint64_t *pinned, uint64_t *unpinned)
{
	const struct route_state *r = route_find(job->index_name);
	*primary = *pinned = *unpinned = 0;
	if (!r)
		return;
	/* hint mode pins reads in transaction blocks and sessions too; the
	 * ones a route sent to a replica or fallback count on their servers */
	*pinned = r->pinned_reads;
	*unpinned = r->unpinned_reads;
	*primary = job->mode == SWAP_HINT ? r->pinned_reads - r->stats[RS_REPLICA] - r->stats[RS_FALLBACK]
	                                  : r->stats[RS_PRIMARY];
}

static long long scans_of(const PGresult *res, int col)
{
	return PQntuples(res) && !PQgetisnull(res, 0, col) ? atoll(PQgetvalue(res, 0, col)) : -1;
}

static void proof_start_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error)
		return; /* the proof is skipped for this watch; the end says so */
	job->scans_old_start = scans_of(res, 0);
	job->scans_new_start = scans_of(res, 1);
	snprintf(job->scans_server, sizeof(job->scans_server), "%s", PQntuples(res) ? PQgetvalue(res, 0, 2) : "");
	route_reads(job, &job->reads_primary_start, &job->pinned_start, &job->unpinned_start);
	job->have_scans_start = true;
}

static void proof_start(struct rebuild_job *job)
{
	char old_rel[700], new_rel[700];
	proof_names(job, old_rel, new_rel, sizeof(old_rel));
	const char *params[] = {old_rel, new_rel};
	job_query(job, SQL_INDEX_SCANS, 2, params, proof_start_result);
}

/* Over the watch: the new index served reads (idx_scan grew) while vecgate
 * sent vector reads of it to the primary.  The retired index may still
 * serve reads that do not pass through vecgate (hint mode), or counters of
 * reads just before the swap (statistics reach the view within about a
 * second): reported, never judged. */
static void proof_end_result(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job->step_busy = false;
	const struct vg_managed_index *mi = job_index(job);
	/* a failover (or a restart) in the watch: the counters at the end are
	 * another server's, and nothing can be told from them */
	bool same_server = !error && PQntuples(res) && !strcmp(PQgetvalue(res, 0, 2), job->scans_server);
	if (error || !job->have_scans_start || !same_server) {
		snprintf(job->proof, sizeof(job->proof), "not measured (%s)",
		         error                    ? error
		         : !job->have_scans_start ? "no counters at the start"
		                                  : "the server restarted or failed over during the watch: its counters "
		                                    "started again");
		start_eval(job, EVAL_WATCH);
		return;
	}
	job->scans_old = scans_of(res, 0) >= 0 && job->scans_old_start >= 0 ? scans_of(res, 0) - job->scans_old_start
	                                                                      : -1;
	job->scans_new = scans_of(res, 1) - job->scans_new_start;
	route_reads(job, &job->reads_primary, &job->pinned, &job->unpinned);
	job->reads_primary -= job->reads_primary_start;
	job->pinned -= job->pinned_start;
	job->unpinned -= job->unpinned_start;
	bool moved = job->scans_new > 0 || job->reads_primary < 5;
	/* rename mode moves the planner only once the old index is dropped,
	 * concurrently with the watch, and has no rollback; and a busy backend
	 * reports its scans about once a second: a watch shorter than 3 s
	 * cannot tell.  Those are reported only. */
	bool judged = job->mode != SWAP_RENAME && (!mi || mi->watch_proof_rollback) && (!mi || mi->watch_seconds >= 3);
	if (!moved && judged && !job->proof_rechecked) {
		/* a backend that reported less than a second before it went idle
		 * holds its counts up to 10 s (PostgreSQL 15): ask again once */
		job->proof_rechecked = true;
		log_info("rebuild %d (%s): watch: no scan of %s counted yet after %llu reads; counting again in 11 s",
		         job->id, job->index_name, job->mode == SWAP_HINT ? job->fresh : job->live,
		         (unsigned long long)job->reads_primary);
		job_schedule(job, 11);
		return;
	}
	job->have_proof = true;
	snprintf(job->proof, sizeof(job->proof),
	         "%s: idx_scan +%lld on %s, %s%lld on the retired %s, %llu vector reads through vecgate on the primary%s",
	         job->reads_primary < 5 ? "too few reads to tell" : moved ? "traffic moved" : "traffic did not move",
	         job->scans_new, job->mode == SWAP_HINT ? job->fresh : job->live, job->scans_old >= 0 ? "+" : "",
	         job->scans_old, job->mode == SWAP_HINT ? job->live : job->retired,
	         (unsigned long long)job->reads_primary, job->mode == SWAP_HINT ? " (pinned)" : "");
	log_info("rebuild %d (%s): watch: %s", job->id, job->index_name, job->proof);
	if (!moved && judged) {
		job_event(job, JEV_DEGRADED, "watch: %s: rolling back", job->proof);
		return;
	}
	start_eval(job, EVAL_WATCH);
}

static void proof_end(struct rebuild_job *job)
{
	char old_rel[700], new_rel[700];
	proof_names(job, old_rel, new_rel, sizeof(old_rel));
	const char *params[] = {old_rel, new_rel};
	job->step_busy = true;
	job_query(job, SQL_INDEX_SCANS, 2, params, proof_end_result);
}

void job_step_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rebuild_job *job = arg;
	if (job->retry == RETRY_BACKOFF) {
		job->retry = RETRY_READY;
		retry_continue(job);
		return;
	}
	if (job_is_terminal(job->state)) {
		run_cleanup(job); /* a cleanup statement failed for now: again */
		return;
	}
	if (job->state == JOB_WATCH) {
		if (!index_link_up(&job->maint)) {
			job->run_on_connect = true; /* the rest of the watch (none) and its eval, once back */
			return;
		}
		proof_end(job);
		return;
	}
	if (job->state == JOB_RETAIN) {
		job_event(job, JEV_STEP_OK, "retention over: dropping %s",
		          job->mode == SWAP_HINT ? job->live : job->retired); /* hint mode renamed nothing yet */
		return;
	}
	job_run_step(job);
}

/* What the server says on the maintenance session goes to the history,
 * the log and the JSON: during the build all of it (pgvector's memory
 * cliff is a NOTICE), otherwise warnings (a cleanup's "does not exist,
 * skipping" is no news). */
static void maint_notice(void *arg, const char *severity, const char *message, const char *detail)
{
	struct index_link *l = arg;
	struct rebuild_job *job = l->arg;
	bool warning = strcmp(severity, "NOTICE") && strcmp(severity, "INFO") && strcmp(severity, "LOG");
	if (!job->building && !warning)
		return;
	/* vecgate's own ROLLBACK before a step, on a session with nothing
	 * open: no news either */
	if (strstr(message, "there is no transaction in progress"))
		return;
	long long tuples;
	if (job->building && bp_parse_cliff_notice(message, &tuples) && !job->cliff_tuples) {
		job->cliff_tuples = tuples ? tuples : 1;
		job->cliff_elapsed = now_sec() - job->build_started;
	}
	const char *advice = bp_notice_advice(message);
	struct job_notice *n = &job->notices[job->n_notices < JOB_NOTICES_MAX ? job->n_notices++ : JOB_NOTICES_MAX - 1];
	n->at = now_sec();
	snprintf(n->severity, sizeof(n->severity), "%s", severity);
	snprintf(n->message, sizeof(n->message), "%s%s%s%s", message, detail ? " (" : "", detail ? detail : "",
	         detail ? ")" : "");
	n->advice = advice;
	job_note(job, warning ? "warning" : "notice", "%s %s%s%s", severity, n->message, advice ? "; advice: " : "",
	         advice ? advice : "");
}

/* Every (re)connect of the maintenance session: settings, then whatever
 * waited for it (owed cleanup, a retry, a step). */
static void maint_up(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	(void)error;
	pg_session_on_notice(job->maint.s, maint_notice);
	apply_settings(job);
	job->cleanup_running = false;
	run_cleanup(job);
	if (job_is_terminal(job->state)) {
		finish_if_done(job);
		return;
	}
	if (job->retry == RETRY_READY) {
		retry_continue(job);
		return;
	}
	if (job->run_on_connect) {
		job->run_on_connect = false;
		job_run_step(job);
	}
}

/* The link reconnects by itself; a step that was running on the session
 * failed with it (its callbacks never come). */
static void maint_down(void *arg, const char *error)
{
	struct rebuild_job *job = arg;
	job->cleanup_running = false;
	if (job->building)
		stop_polling(job);
	if (job->step_busy && !job_is_terminal(job->state))
		job_event(job, JEV_TRANSIENT, "maintenance connection lost: %s", error ? error : "?");
}

void job_init_links(struct rebuild_job *job)
{
	job_link_init(job, &job->maint, "rebuild", "maintenance", true, maint_up, maint_down);
	job_link_init(job, &job->poll, "progress", "progress", true, poll_up, NULL);
}

void job_run_step(struct rebuild_job *job)
{
	if (job_is_terminal(job->state) || job->retry || job->step_busy)
		return; /* a retry runs the step when it is ready; a running step reports first */
	if (!index_link_up(&job->maint)) {
		job->run_on_connect = true; /* maint_up runs the step */
		if (index_link_open(&job->maint) < 0)
			job_event(job, JEV_FATAL, "cannot start a maintenance connection (check the managed index's backend)");
		return;
	}
	const struct vg_managed_index *mi = job_index(job);
	double in_state = now_sec() - job->state_since, left;
	switch (job->state) {
	case JOB_PREFLIGHT:
		if (job->plan_hold[0]) {
			if (!job->plan_approved)
				return; /* held: the message says what the operator can do */
			/* approved: the checks before the plan passed already */
			job->step_busy = true;
			job->pf_stage = PF_DONE;
			preflight_next(job);
			return;
		}
		pools_traffic(mi ? mi->database : "", &job->t_pre_start);
		job->pf_stage = PF_SUPER;
		job->step_busy = true;
		preflight_next(job);
		return;
	case JOB_BASELINE:
		start_eval(job, EVAL_BASELINE);
		return;
	case JOB_BUILD:
		start_build(job);
		return;
	case JOB_VERIFY:
		start_verify(job);
		return;
	case JOB_SWAP:
		if (job->gate_refusal[0] && !job->approved)
			return; /* held: the message says what the operator can do */
		if (mi && mi->approve_swap && !job->approved) {
			snprintf(job->message, sizeof(job->message),
			         "verified; waiting for approval to swap (vecgatectl approve %d)", job->id);
			return;
		}
		if (!job->locked) {
			/* another instance might hold it by now: never swap without it */
			snprintf(job->message, sizeof(job->message),
			         "waiting for the state connection to take the rebuild lock again before swapping");
			return; /* job_lock_regained() comes back here */
		}
		start_swap(job);
		return;
	case JOB_WATCH:
		/* a retry (the eval failed, the connection was lost) does not
		 * start the watch window over */
		left = (mi ? mi->watch_seconds : 60) - in_state;
		if (!job->have_scans_start)
			proof_start(job);
		job_schedule(job, left > 0 ? left : 0);
		return;
	case JOB_RETAIN:
		left = job->mode == SWAP_RENAME ? 0 : (mi ? mi->retention_seconds : 86400) - in_state;
		job_schedule(job, left > 0 ? left : 0);
		return;
	default:
		return;
	}
}

/* ---- actions on the way between states, and the cleanup they owe ---- */

/* A build still running on the maintenance session is cancelled, the
 * session replaced: DROP INDEX CONCURRENTLY cannot share it. */
static void stop_running_build(struct rebuild_job *job)
{
	if (!job->building)
		return;
	if (index_link_up(&job->maint)) {
		char err[256];
		pg_session_cancel(job->maint.s, err, sizeof(err));
		index_link_restart(&job->maint);
	}
	stop_polling(job);
}

static void cleanup_step_done(void *arg, PGresult *res, const char *error);

/* A partitioned tree (the candidates, or the retired one): DROP INDEX
 * CONCURRENTLY refuses a partitioned index, so one plain DROP of the parent
 * (its attached children go with it) and of the children not attached
 * yet, under a short lock_timeout: a lock not had in time is retried by
 * cleanup_step_done, never queued behind. */
static void part_drop(struct rebuild_job *job, bool fresh)
{
	const struct vg_managed_index *mi = job_index(job);
	const char *schemas[256], *children[256];
	int n = job->n_parts < 256 ? job->n_parts : 256;
	for (int i = 0; i < n; i++) {
		schemas[i] = job->parts[i].leaf_schema;
		children[i] = fresh ? job->parts[i].fresh_child : job->parts[i].retired_child;
	}
	char sql[16384];
	if (sql_part_drop(job->schema, fresh ? job->fresh : job->retired, n, schemas, children,
	                  mi ? mi->lock_timeout_ms * 10 : 500, sql, sizeof(sql)) < 0) {
		cleanup_step_done(job, NULL, "drop statement too long");
		return;
	}
	job_query_fenced(job, sql, cleanup_step_done);
}

/* the lowest CLEAN_* bit still owed: the one running */
static unsigned cleanup_current(const struct rebuild_job *job)
{
	return job->cleanup & (~job->cleanup + 1);
}

static void rollback_checked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	const struct vg_managed_index *mi = job_index(job);
	char fence[1200];
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	if (!error && PQgetisnull(res, 0, 0) && job->partitioned && job->mode == SWAP_FLIP) {
		/* no retired tree: the parent's swap never happened (or was rolled
		 * back); partitions a rolling rebuild swapped go back one by one */
		const char *names[5 * 256];
		struct part_names pn;
		char sql[16384];
		part_names_of(job, &pn, names, mi ? mi->lock_timeout_ms * 10 : 500, fence);
		if (sql_part_unroll(job->db_id, &pn, sql, sizeof(sql)) < 0) {
			cleanup_step_done(arg, NULL, "unroll statement too long");
			return;
		}
		pg_session_query(job->maint.s, sql, 0, NULL, cleanup_step_done, job);
		return;
	}
	if (error || PQgetisnull(res, 0, 0)) {
		/* no index under the retired name: the rollback (or, for a
		 * swap that never happened, nothing) is done */
		cleanup_step_done(arg, res, error);
		return;
	}
	struct swap_names n = {job->schema, job->table, job->live, job->fresh, job->retired,
	                       mi ? mi->lock_timeout_ms * 10 : 500, fence};
	char sql[16384];
	if (job->partitioned) {
		const char *names[5 * 256];
		struct part_names pn;
		part_names_of(job, &pn, names, n.lock_timeout_ms, fence);
		sql_part_rollback(&pn, sql, sizeof(sql));
	} else
		sql_rollback(&n, sql, sizeof(sql));
	pg_session_query(job->maint.s, sql, 0, NULL, cleanup_step_done, job);
}

/* Hint mode: a pin change is followed by every instance (NOTIFY at once,
 * the periodic re-read at the latest) before an index it named may go. */
static void settle_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cleanup_step_done(arg, NULL, NULL);
}

static void pin_cleanup_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	unsigned bit = cleanup_current(job);
	if (job_fenced_error(error)) {
		cleanup_step_done(arg, res, error);
		return;
	}
	if (error) {
		if (!pg_result_transient(res) && bit == CLEAN_ROLLBACK && (job->cleanup & CLEAN_DROP_FRESH)) {
			/* reads may still be pinned to the candidate: it must stay */
			log_warn("rebuild %d (%s): cannot pin reads back to %s (%s); %s is kept, since reads may still be pinned "
			         "to it", job->id, job->index_name, job->live, error, job->fresh);
			job->cleanup &= ~(unsigned)(CLEAN_DROP_FRESH | CLEAN_UNPIN);
		}
		cleanup_step_done(arg, res, error);
		return;
	}
	pin_committed(job, res, bit == CLEAN_UNPIN ? "" : job->live);
	double settle = fmin(vg.cfg->routing.refresh_seconds, 5) + 0.5;
	if (!job->settle_timer)
		job->settle_timer = evtimer_new(vg.base, settle_done, job);
	struct timeval tv = timeval_of(settle);
	evtimer_add(job->settle_timer, &tv);
}

/* hint mode at retention end: the old index still has the live name only
 * while the new one has its own (the rename is the last step) */
static void retired_checked(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (error || PQgetisnull(res, 0, 0)) {
		cleanup_step_done(arg, res, error);
		return;
	}
	char sql[800];
	sql_drop_index_concurrently(job->schema, job->live, sql, sizeof(sql));
	job_query_fenced(job, sql, cleanup_step_done);
}

/* Owed index changes, one at a time on the maintenance session, each only
 * while the lock is held (another instance that holds it may be using
 * these names); a lost session or a transient error runs them again. */
static void run_cleanup(struct rebuild_job *job)
{
	if (!job->cleanup || job->cleanup_running)
		return;
	if (!index_link_up(&job->maint)) {
		index_link_open(&job->maint); /* maint_up comes back here */
		return;
	}
	if (!job->locked)
		return; /* job_lock_regained() comes back here */
	job->cleanup_running = true;
	struct pg_session *s = job->maint.s;
	char sql[800], rel[700], app[200];
	pg_session_query(s, "ROLLBACK", 0, NULL, NULL, NULL); /* an eval transaction left open */
	switch (cleanup_current(job)) {
	case CLEAN_CANCEL_BUILD: {
		sql_qualified(job->schema, job->table, rel, sizeof(rel));
		snprintf(app, sizeof(app), "vecgate rebuild %s", job->index_name);
		const char *params[] = {rel, app};
		pg_session_query(s, SQL_CANCEL_SESSION_BUILDS, 2, params, cleanup_step_done, job);
		return;
	}
	case CLEAN_ROLLBACK:
		if (job->mode == SWAP_HINT) {
			char pin[4096];
			pin_statement(job, job->live, job->fresh, pin, sizeof(pin));
			pg_session_query(s, pin, 0, NULL, pin_cleanup_done, job);
			return;
		} else {
		/* did the rollback commit before a restart?  The retired name says */
		sql_qualified(job->schema, job->retired, rel, sizeof(rel));
		const char *params[] = {rel};
		pg_session_query(s, "SELECT to_regclass($1)", 1, params, rollback_checked, job);
		return;
		}
	case CLEAN_UNPIN: {
		char pin[4096];
		pin_statement(job, "", "", pin, sizeof(pin));
		pg_session_query(s, pin, 0, NULL, pin_cleanup_done, job);
		return;
	}
	case CLEAN_RENAME_FRESH: {
		const struct vg_managed_index *mi = job_index(job);
		char ren[1200];
		sql_rename_index(job->schema, job->fresh, job->live, mi ? mi->lock_timeout_ms * 10 : 500, ren, sizeof(ren));
		job_query_fenced(job, ren, cleanup_step_done);
		return;
	}
	case CLEAN_DROP_FRESH:
		if (job->partitioned) {
			part_drop(job, true);
			return;
		}
		sql_drop_index_concurrently(job->schema, job->fresh, sql, sizeof(sql));
		job_query_fenced(job, sql, cleanup_step_done);
		return;
	default:
		if (job->mode == SWAP_HINT) {
			sql_qualified(job->schema, job->fresh, rel, sizeof(rel));
			const char *params[] = {rel};
			pg_session_query(s, "SELECT to_regclass($1)", 1, params, retired_checked, job);
			return;
		}
		if (job->partitioned) {
			part_drop(job, false);
			return;
		}
		sql_drop_index_concurrently(job->schema, job->retired, sql, sizeof(sql));
		job_query_fenced(job, sql, cleanup_step_done);
		return;
	}
}

static void cleanup_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_cleanup(arg);
}

static void cleanup_step_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	unsigned bit = cleanup_current(job);
	job->cleanup_running = false;
	if (lost_lock(job, error)) {
		log_warn("rebuild %d (%s): cleanup stopped: another instance holds the rebuild lock", job->id,
		         job->index_name);
		finish_if_done(job);
		return;
	}
	if (error && pg_result_transient(res)) {
		/* a lock not had in time, a server going down: again shortly
		 * (a lost session comes back through maint_up) */
		log_warn("rebuild %d (%s): cleanup step failed for now (%s); trying again", job->id, job->index_name,
		         error);
		if (!job->cleanup_timer)
			job->cleanup_timer = evtimer_new(vg.base, cleanup_retry_timer, job);
		struct timeval tv = {1, 0};
		evtimer_add(job->cleanup_timer, &tv);
		return;
	}
	if (error && bit == CLEAN_ROLLBACK && job->partitioned && (job->cleanup & CLEAN_DROP_FRESH)) {
		/* partitions may still be served by candidates: they must stay */
		log_warn("rebuild %d (%s): cannot flip the partitions back to %s (%s); the candidates of %s are kept, since "
		         "partitions may still read through them", job->id, job->index_name, job->live, error, job->fresh);
		job->cleanup &= ~(unsigned)CLEAN_DROP_FRESH;
	}
	if (error)
		log_warn("rebuild %d (%s): cleanup step failed: %s; check %s.%s by hand (DROP INDEX CONCURRENTLY IF EXISTS "
		         "%s)", job->id, job->index_name, error, job->schema, job->table,
		         bit == CLEAN_DROP_RETIRED ? (job->mode == SWAP_HINT ? job->live : job->retired) : job->fresh);
	else if (bit == CLEAN_ROLLBACK)
		log_info("rebuild %d (%s): rolled back: %s serves again", job->id, job->index_name, job->live);
	job->cleanup &= ~bit;
	if (job->cleanup) {
		run_cleanup(job);
		return;
	}
	if (job_is_terminal(job->state))
		finish_if_done(job);
	else if (job->retry == RETRY_READY)
		retry_continue(job);
}

/* A retry after a transient failure goes on once the backoff is over, the
 * maintenance session works, the lock is held and the leftovers are gone. */
static void retry_continue(struct rebuild_job *job)
{
	if (job->retry != RETRY_READY || job_is_terminal(job->state))
		return;
	if (!index_link_up(&job->maint)) {
		index_link_open(&job->maint); /* maint_up comes back here */
		return;
	}
	if (!job->locked)
		return; /* job_lock_regained() */
	if (job->cleanup) {
		run_cleanup(job); /* cleanup_step_done() */
		return;
	}
	job->retry = RETRY_NONE;
	if (job->state == JOB_SWAP) {
		/* the failed swap may have committed before the connection went */
		job->step_busy = true;
		job_swap_check(job);
		return;
	}
	job_run_step(job);
}

void job_lock_regained(struct rebuild_job *job)
{
	run_cleanup(job);
	if (job_is_terminal(job->state)) {
		finish_if_done(job);
		return;
	}
	if (job->retry == RETRY_READY)
		retry_continue(job);
	else if (job->state == JOB_SWAP && !job->retry && !job->step_busy)
		job_run_step(job);
}

void job_perform(struct rebuild_job *job, enum job_state from, enum job_action action)
{
	switch (action) {
	case JACT_DROP_NEW_INDEX:
		stop_running_build(job);
		job->cleanup |= CLEAN_DROP_FRESH | (from == JOB_BUILD ? CLEAN_CANCEL_BUILD : 0);
		/* a partition tree in flip mode: partitions a rolling rebuild
		 * swapped serve from candidates; every partition goes back to its
		 * live index before a candidate is dropped (a no-op otherwise) */
		if (job->partitioned && job->mode == SWAP_FLIP)
			job->cleanup |= CLEAN_ROLLBACK;
		if (job->mode == SWAP_HINT)
			job->cleanup |= CLEAN_UNPIN; /* the pin names the live index until the candidate is gone */
		break; /* job_finish() runs it */
	case JACT_ROLLBACK_SWAP:
		if (job->mode == SWAP_RENAME)
			break;
		/* the candidate, invalid again (flip) or pinned away from (hint),
		 * would only cost writes: dropped after */
		job->cleanup |= CLEAN_ROLLBACK | CLEAN_DROP_FRESH | (job->mode == SWAP_HINT ? CLEAN_UNPIN : 0);
		break;
	case JACT_DROP_OLD_INDEX:
		/* hint mode: the old index goes while reads are pinned to the new
		 * one, then the pin, then the new index takes the live name */
		if (job->mode != SWAP_RENAME)
			job->cleanup |= CLEAN_DROP_RETIRED | (job->mode == SWAP_HINT ? CLEAN_UNPIN | CLEAN_RENAME_FRESH : 0);
		break;
	case JACT_RETRY_AFTER_BACKOFF: {
		const struct vg_managed_index *mi = job_index(job);
		double delay = job_backoff_seconds(job->attempts, mi ? mi->backoff_seconds : 2, 300);
		job->attempts++;
		if (from == JOB_BUILD) {
			/* a failed concurrent build leaves an invalid index behind (and a
			 * build on a session we lost may still be running): cancel and
			 * drop it while the backoff runs */
			stop_running_build(job);
			/* a partitioned build keeps the partitions it finished: the
			 * build step drops only what the catalog shows half-built */
			job->cleanup |= CLEAN_CANCEL_BUILD | (job->partitioned ? 0 : CLEAN_DROP_FRESH);
		}
		job->retry = RETRY_BACKOFF;
		job_schedule(job, delay);
		run_cleanup(job);
		break;
	}
	default:
		break;
	}
}

void job_stop_sessions(struct rebuild_job *job)
{
	plan_abandon(job->planning);
	job->planning = NULL;
	stop_running_build(job);
	stop_polling(job);
	index_link_close(&job->maint);
	if (job->cleanup_timer)
		event_del(job->cleanup_timer);
	if (job->settle_timer)
		event_del(job->settle_timer);
}

static void close_maint_when_done(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	(void)res;
	(void)error;
	index_link_close(&job->maint);
}

/* Cleanup done: the maintenance session goes, then the last records and
 * the lock. */
static void finish_if_done(struct rebuild_job *job)
{
	if (!job_is_terminal(job->state) || job->cleanup)
		return;
	if (index_link_up(&job->maint))
		pg_session_query(job->maint.s, "SELECT 1", 0, NULL, close_maint_when_done, job);
	else
		index_link_close(&job->maint);
	job_state_release(job);
}

void job_finish(struct rebuild_job *job)
{
	plan_abandon(job->planning);
	job->planning = NULL;
	stop_polling(job);
	if (job->timer)
		event_del(job->timer);
	job->retry = RETRY_NONE;
	run_cleanup(job);
	finish_if_done(job);
}
