/*
 * Every JSON document the admin API returns, built from the objects'
 * read-only state: one place that decides field names and the "null when
 * not known" rule, so the CLI and operators see one shape everywhere.
 */
#include "proxy/admin/views.h"
#include "proxy/backend_table.h"
#include "proxy/control/drift.h"
#include "proxy/control/plan.h"
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/route_table.h"
#include "proxy/runtime/runtime.h"
#include "proxy/sampler.h"

#include <math.h>
#include <string.h>

/* What one eval run of a job measured (baseline or candidate); null while not measured. */
struct measured {
	bool have;
	double recall, p50, p95, recall_file, recall_traffic;
};

static void measured_json(struct json *j, const char *key, struct measured m)
{
	json_obj_begin(j, key);
	json_num(j, "recall", m.have ? m.recall : NAN);
	json_num(j, "p50_ms", m.have ? m.p50 : NAN);
	json_num(j, "p95_ms", m.have ? m.p95 : NAN);
	json_num(j, "recall_eval_file", m.have ? m.recall_file : NAN);
	json_num(j, "recall_traffic", m.have ? m.recall_traffic : NAN);
	json_obj_end(j);
}

/* What a plan predicts, and from what: the trials, the fit and its band. */
static void plan_result_json(struct json *j, const char *key, const struct plan_result *r)
{
	json_obj_begin(j, key);
	json_str(j, "method", r->method);
	json_str(j, "definition", r->definition);
	json_num(j, "table_rows", r->rows);
	json_obj_begin(j, "build");
	json_num(j, "predicted_seconds", r->predicted_s);
	json_num(j, "predicted_low_seconds", r->predicted_lo);
	json_num(j, "predicted_high_seconds", r->predicted_hi);
	json_int(j, "parallel_workers", r->workers);
	json_int(j, "max_parallel_maintenance_workers", r->max_workers);
	json_obj_end(j);
	json_obj_begin(j, "fit");
	json_str(j, "model", r->have_model ? "phases: per-insert cost a * i^d in memory, then on disk"
	                     : r->have_ivf ? "components: k-means per sample x list pair at the build's samples per list, "
	                                     "then assigning and loading per row at the build's lists"
	                     : !r->have_fit ? NULL
	                     : r->fit.model == BP_POWER ? "power: t = a * rows^b" : "linear: t = a + b * rows");
	json_num(j, "a", r->have_fit ? r->fit.a : NAN);
	json_num(j, "b", r->have_fit ? r->fit.b : NAN);
	json_num(j, "r2", r->have_fit ? r->fit.r2 : NAN);
	json_num(j, "sigma", r->have_fit && r->fit.k > 2 ? r->fit.sigma : NAN);
	json_int(j, "points", r->have_fit ? r->fit.k : 0);
	/* HNSW: what the prediction integrates (seconds per insert a * i^d) */
	json_num(j, "memory_a", r->have_model ? r->model.mem.a : NAN);
	json_num(j, "memory_d", r->have_model ? r->model.mem.d : NAN);
	json_num(j, "memory_d_stderr", r->have_model ? r->model.mem.se_d : NAN);
	json_num(j, "disk_a", r->have_model && r->model.disk.ok ? r->model.disk.a : NAN);
	json_num(j, "disk_d", r->have_model && r->model.disk.ok ? r->model.disk.d : NAN);
	json_num(j, "disk_d_stderr", r->have_model && r->model.disk.ok ? r->model.disk.se_d : NAN);
	json_num(j, "cliff_flush_seconds_per_tuple", r->have_model ? r->model.cliff_flush_per_tuple : NAN);
	json_num(j, "final_flush_seconds_per_tuple", r->have_model ? r->model.flush_per_tuple : NAN);
	json_num(j, "kmeans_seconds", r->kmeans_s > 0 ? r->kmeans_s : NAN);
	/* IVFFlat: the prediction's parts */
	json_num(j, "kmeans_pair_seconds", r->have_ivf ? r->ivf.pair_s : NAN);
	json_num(j, "sampling_seconds", r->have_ivf ? r->ivf.sample_s : NAN);
	json_num(j, "assign_seconds", r->have_ivf ? r->ivf.assign_s : NAN);
	json_num(j, "load_seconds", r->have_ivf ? r->ivf.load_s : NAN);
	json_num(j, "fixed_seconds", r->have_ivf ? r->ivf.fixed_s : NAN);
	json_obj_end(j);
	json_arr_begin(j, "trials");
	for (int i = 0; i < r->n_trials; i++) {
		const struct plan_trial *t = &r->trials[i];
		json_obj_begin(j, NULL);
		json_num(j, "rows", t->rows);
		json_num(j, "seconds", t->seconds);
		json_num(j, "maintenance_work_mem_kb", t->mwm_kb);
		json_num(j, "index_bytes", t->index_bytes);
		json_int(j, "graph_overflow_after_tuples", t->cliff_tuples);
		json_bool(j, "mwm_floored", t->floored);
		json_str(j, "kind", t->kind == TRIAL_MEMORY   ? "memory"
		                    : t->kind == TRIAL_DISK   ? "disk"
		                    : t->kind == TRIAL_KMEANS ? "kmeans"
		                                              : "scaled");
		json_int(j, "parallel_workers", t->workers);
		json_int(j, "progress_samples", t->progress_samples);
		json_num(j, "notice_seconds", t->notice_s);
		json_num(j, "memory_d", t->mem.ok ? t->mem.d : NAN);
		json_num(j, "disk_d", t->disk.ok ? t->disk.d : NAN);
		json_num(j, "kmeans_seconds", t->kmeans_s);
		if (t->lists > 0) {
			json_int(j, "lists", t->lists);
			json_num(j, "kmeans_phase_seconds", t->phase_s[BP_PH_KMEANS]);
			json_num(j, "assign_seconds", t->phase_s[BP_PH_ASSIGN]);
			json_num(j, "load_seconds", t->phase_s[BP_PH_LOAD]);
		}
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_begin(j, "memory");
	json_num(j, "maintenance_work_mem_bytes", r->mwm_bytes);
	json_num(j, "peak_bytes", r->peak_bytes);
	json_bool(j, "peak_is_upper_bound", r->peak_is_bound);
	json_bool(j, "fits", !r->cliff);
	json_num(j, "overflow_after_tuples", r->cliff ? r->cliff_tuples : NAN);
	json_num(j, "maintenance_work_mem_to_fit_bytes", r->mwm_to_fit_bytes);
	json_bool(j, "sort_spills", r->sort_spills);
	json_num(j, "probe_overflow_after_tuples", r->probe_tuples > 0 ? r->probe_tuples : NAN);
	json_num(j, "graph_fixed_bytes", r->graph_fixed_bytes);
	json_obj_end(j);
	json_obj_begin(j, "disk");
	json_num(j, "index_bytes", r->index_bytes);
	json_num(j, "free_bytes", r->free_bytes);
	json_num(j, "needed_bytes", r->disk_need_bytes);
	json_obj_end(j);
	json_obj_begin(j, "wal");
	json_num(j, "bytes", r->wal_bytes);
	json_num(j, "primary_rate_bytes_per_second", r->wal_rate_bps);
	json_arr_begin(j, "replicas");
	for (int i = 0; i < r->n_replicas; i++) {
		json_obj_begin(j, NULL);
		json_str(j, "name", r->replicas[i].name);
		json_num(j, "replay_bytes_per_second", r->replicas[i].replay_bps);
		json_num(j, "lag_seconds", r->replicas[i].lag_s);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
	json_obj_begin(j, "eval");
	json_int(j, "queries", r->eval_queries);
	json_num(j, "seconds", r->eval_s);
	json_num(j, "query_seconds", r->eval_query_s);
	json_obj_end(j);
	json_obj_begin(j, "cost");
	json_num(j, "seconds", r->cost_s);
	json_num(j, "ratio_to_build", r->cost_ratio);
	/* where the plan's time went: sessions, facts, the sample's copy, the trials, the eval, cleanup */
	json_obj_begin(j, "by_step");
	for (int s = PLAN_CONNECTING; s <= PLAN_CLEANUP; s++)
		if (s != PLAN_PROBE)
			json_num(j, plan_state_name((enum plan_state)s), r->step_s[s]);
	json_obj_end(j);
	json_obj_end(j);
	json_str(j, "notes", r->notes[0] ? r->notes : NULL);
	json_obj_end(j);
}

void view_plan(struct json *j, const char *key, const struct build_plan *p)
{
	json_obj_begin(j, key);
	json_int(j, "id", p->id);
	json_str(j, "index", p->index_name);
	json_str(j, "state", plan_state_name(p->state));
	json_bool(j, "running", plan_running(p));
	json_str(j, "step", plan_running(p) ? p->step : NULL);
	json_num(j, "percent", p->percent);
	json_num(j, "elapsed_seconds", (plan_running(p) ? now_sec() : p->finished) - p->started);
	json_str(j, "error", p->error[0] ? p->error : NULL);
	if (p->state == PLAN_DONE)
		plan_result_json(j, "plan", &p->r);
	else
		json_str(j, "plan", NULL);
	json_obj_end(j);
}

void view_job(struct json *j, const char *key, const struct rebuild_job *job)
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
	json_str(j, "swap_mode", job->state > JOB_PREFLIGHT ? swap_mode_name(job->mode) : NULL);
	/* how verify keeps the live index out of the candidate's measurement */
	json_str(j, "verify_hides_live_by",
	         job->state <= JOB_PREFLIGHT ? NULL
	         : job->mode == SWAP_HINT    ? "hint"
	         : job->superuser            ? "catalog"
	         : job_hides_with_hypopg(job) ? "hypopg"
	                                      : "nothing");
	json_str(j, "new_index", job->fresh);
	json_str(j, "retired_index", job->retired);
	/* several instances: who drives the job (the others follow it) */
	json_obj_begin(j, "driver");
	json_str(j, "instance", job->driver[0] ? job->driver : NULL);
	json_str(j, "since", job->driver_since[0] ? job->driver_since : NULL);
	json_bool(j, "this_instance", !job->following && job->driver[0] && !strcmp(job->driver, vg_instance_id()));
	json_num(j, "silent_seconds", job->following ? job->driver_silent_s : NAN);
	json_obj_end(j);
	json_bool(j, "following", job->following);
	json_num(j, "seconds_in_state", now_sec() - job->state_since);
	/* how much longer the old index is kept for an instant rollback */
	const struct vg_managed_index *mi = job_index(job);
	json_num(j, "rollback_window_seconds",
	         job->state == JOB_RETAIN && job->mode != SWAP_RENAME && mi
	             ? fmax(0, mi->retention_seconds - (now_sec() - job->state_since))
	             : NAN);
	json_obj_begin(j, "progress");
	json_str(j, "phase", job->phase[0] ? job->phase : NULL);
	json_num(j, "percent", job_build_percent(job));
	json_num(j, "eta_seconds", job->eta_s);
	json_int(j, "blocks_done", job->blocks_done);
	json_int(j, "blocks_total", job->blocks_total);
	json_int(j, "tuples_done", job->tuples_done);
	json_int(j, "tuples_total", job->tuples_total);
	/* the plan's prediction next to what the build has taken so far */
	json_num(j, "predicted_seconds", job->have_plan ? job->plan.predicted_s : NAN);
	json_num(j, "elapsed_seconds", job->build_started > 0 ? (job->building ? now_sec() : job->updated) - job->build_started
	                                                       : NAN);
	json_int(j, "graph_overflow_after_tuples", job->cliff_tuples);
	const struct build_blocker *b = job_waiting_for(job);
	if (b) {
		char cmd[64];
		json_obj_begin(j, "blocked_by");
		json_int(j, "pid", b->pid);
		json_str(j, "user", b->user);
		json_str(j, "application_name", b->application);
		json_str(j, "client_addr", b->client);
		json_num(j, "transaction_age_seconds", b->xact_age_s);
		json_num(j, "query_age_seconds", b->query_age_s);
		json_str(j, "query", b->query);
		json_num(j, "waiting_seconds", now_sec() - job->blocked_since);
		snprintf(cmd, sizeof(cmd), "SELECT pg_cancel_backend(%d)", b->pid);
		json_str(j, "cancel", cmd);
		snprintf(cmd, sizeof(cmd), "SELECT pg_terminate_backend(%d)", b->pid);
		json_str(j, "terminate", cmd);
		json_obj_end(j);
	} else {
		json_str(j, "blocked_by", NULL);
	}
	json_obj_end(j);
	/* a partitioned table: each partition's candidate (the whole is progress) */
	if (job->partitioned && job->n_parts) {
		json_arr_begin(j, "partitions");
		for (int i = 0; i < job->n_parts; i++) {
			const struct job_partition *p = &job->parts[i];
			json_obj_begin(j, NULL);
			json_str(j, "schema", p->leaf_schema);
			json_str(j, "partition", p->leaf);
			json_str(j, "live_index", p->live_child);
			json_str(j, "candidate", p->fresh_child);
			json_str(j, "candidate_oid", p->fresh_oid[0] ? p->fresh_oid : NULL);
			json_str(j, "state", part_state_name(p->state));
			json_num(j, "percent", p->state >= PART_BUILT ? 100 : p->percent);
			json_int(j, "tuples_done", p->tuples_done);
			json_num(j, "rows", p->rows);
			json_num(j, "build_seconds", p->build_s > 0 ? p->build_s : NAN);
			/* the whole gate's eval split by partition; null where no true
			 * neighbour lives (an empty partition) or before the eval */
			json_num(j, "recall", p->new_recall);
			json_num(j, "baseline_recall", p->base_recall);
			json_num(j, "neighbours", p->neighbours);
			json_num(j, "baseline_neighbours", p->base_neighbours);
			/* partitions: rolling: this partition's own gate and swap */
			if (job->rolling) {
				json_obj_begin(j, "gate");
				json_num(j, "recall", p->gate_recall);
				json_num(j, "baseline_recall", p->gate_base_recall);
				json_num(j, "p95_ms", p->gate_p95);
				json_num(j, "baseline_p95_ms", p->gate_base_p95);
				json_bool(j, "empty", p->empty);
				json_obj_end(j);
				json_num(j, "swap_ms", p->swap_ms);
			}
			json_obj_end(j);
		}
		json_arr_end(j);
		json_str(j, "partitions_mode", job->rolling ? "rolling" : "whole");
	} else {
		json_str(j, "partitions", NULL);
	}
	struct eval_progress ep;
	if (job_eval_progress(job, &ep)) {
		static const char *const purposes[] = {"baseline", "verify", "watch"};
		json_obj_begin(j, "eval");
		json_str(j, "purpose", purposes[job->purpose]);
		json_str(j, "pass", ep.pass);
		json_str(j, "unit", ep.unit);
		json_int(j, "done", (long long)ep.done);
		json_int(j, "total", (long long)ep.total);
		json_num(j, "percent", ep.percent);
		json_num(j, "eta_seconds", ep.eta_s);
		json_obj_end(j);
	} else {
		json_str(j, "eval", NULL);
	}
	measured_json(j, "baseline",
	              (struct measured){job->have_base, job->base_recall, job->base_p50, job->base_p95,
	                                job->base_recall_file, job->base_recall_traffic});
	measured_json(j, "candidate",
	              (struct measured){job->have_new, job->new_recall, job->new_p50, job->new_p95, job->new_recall_file,
	                                job->new_recall_traffic});
	json_int(j, "traffic_queries", (long long)job->samples_loaded);
	json_arr_begin(j, "notices");
	for (int i = 0; i < job->n_notices; i++) {
		json_obj_begin(j, NULL);
		json_num(j, "t", job->notices[i].at - job->created);
		json_str(j, "severity", job->notices[i].severity);
		json_str(j, "message", job->notices[i].message);
		json_str(j, "advice", job->notices[i].advice);
		json_obj_end(j);
	}
	json_arr_end(j);
	if (job->have_plan)
		plan_result_json(j, "plan", &job->plan);
	else
		json_str(j, "plan", NULL);
	json_str(j, "plan_error", job->plan_error[0] ? job->plan_error : NULL);
	json_num(j, "swap_lock_ms", job->swap_tries ? job->swap_ms : NAN);
	json_obj_begin(j, "watch");
	json_int(j, "requests", job->have_watch ? (long long)job->post_requests : 0);
	json_num(j, "error_rate", job->have_watch ? job->post_err_rate : NAN);
	json_num(j, "error_rate_before", job->have_watch ? job->pre_err_rate : NAN);
	json_num(j, "mean_ms", job->have_watch ? job->post_mean_ms : NAN);
	json_num(j, "mean_ms_before", job->have_watch ? job->pre_mean_ms : NAN);
	/* idx_scan over the watch: did the new index really serve? */
	json_obj_begin(j, "traffic_proof");
	json_str(j, "verdict", job->proof[0] ? job->proof : NULL);
	json_int(j, "new_index_scans", job->have_proof ? job->scans_new : 0);
	json_int(j, "retired_index_scans", job->have_proof ? job->scans_old : 0);
	json_int(j, "vector_reads_on_primary", job->have_proof ? (long long)job->reads_primary : 0);
	json_int(j, "pinned_reads", job->have_proof ? (long long)job->pinned : 0);
	json_int(j, "unpinned_reads", job->have_proof ? (long long)job->unpinned : 0);
	json_obj_end(j);
	json_obj_end(j);
	json_int(j, "swap_attempts", job->swap_tries);
	json_str(j, "gate_refused", job->gate_refusal[0] && job->state == JOB_SWAP ? job->gate_refusal : NULL);
	bool plan_held = job->state == JOB_PREFLIGHT && job->plan_hold[0] && !job->plan_approved;
	json_bool(j, "awaiting_approval", plan_held || (job->state == JOB_SWAP && !job->approved && job_index(job) &&
	                                                job_index(job)->approve_swap));
	/* plan_over_limit: approve: why the job waits before building, and
	 * the setting that would have let it through */
	json_obj_begin(j, "plan_over_limit");
	json_str(j, "reason", job->plan_hold[0] ? job->plan_hold : NULL);
	json_str(j, "setting", job->plan_hold[0] ? job->plan_hold_setting : NULL);
	json_bool(j, "waiting", plan_held);
	json_bool(j, "approved", job->plan_hold[0] && job->plan_approved);
	json_obj_end(j);
	json_arr_begin(j, "history");
	for (int i = 0; i < job->n_hist; i++) {
		const struct history_entry *h = &job->hist[i];
		json_obj_begin(j, NULL);
		json_num(j, "t", h->at - job->created);
		json_str(j, "from", job_state_name(h->from));
		json_str(j, "to", job_state_name(h->to));
		json_str(j, "event", h->kind[0] ? h->kind : job_event_name(h->event));
		json_str(j, "message", h->message);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

void view_jobs(struct json *j, const char *key, const char *index_name)
{
	json_arr_begin(j, key);
	for (const struct rebuild_job *job = rebuild_next(NULL); job; job = rebuild_next(job))
		if (!index_name || !strcmp(job->index_name, index_name))
			view_job(j, NULL, job);
	json_arr_end(j);
}

static void drift_json(struct json *j, const char *key, const char *index_name)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, index_name);
	const struct drift_monitor *d = drift_find(index_name);
	json_obj_begin(j, key);
	json_bool(j, "enabled", mi && mi->drift_check_seconds > 0);
	json_num(j, "recall", d && d->have_recall ? d->recall : NAN);
	json_num(j, "baseline", d && d->have_baseline ? d->baseline : NAN);
	json_num(j, "recall_eval_file", d && d->have_recall ? d->recall_file : NAN);
	json_num(j, "recall_traffic", d && d->have_recall ? d->recall_traffic : NAN);
	json_int(j, "traffic_queries", d && d->have_recall ? (long long)d->n_traffic : 0);
	json_bool(j, "alert", d && d->alert);
	json_num(j, "checked_seconds_ago", d && d->checked_at > 0 ? now_sec() - d->checked_at : NAN);
	json_int(j, "checks", d ? (long long)d->checks : 0);
	json_str(j, "last_error", d && d->last_error[0] ? d->last_error : NULL);
	json_str(j, "proposed_rebuild", d && d->proposal[0] ? d->proposal : NULL);
	json_obj_end(j);
}

void view_index(struct json *j, const struct vg_managed_index *mi)
{
	json_obj_begin(j, NULL);
	json_str(j, "name", mi->name);
	json_str(j, "database", mi->database);
	json_str(j, "table", mi->table);
	json_str(j, "schema", mi->schema);
	json_str(j, "index", mi->index);
	json_int(j, "k", mi->k);
	json_num(j, "recall_tolerance", mi->recall_tolerance);
	json_num(j, "latency_tolerance", mi->latency_tolerance);
	const struct rebuild_job *job = rebuild_latest(mi->name);
	if (job)
		view_job(j, "latest_job", job);
	else
		json_str(j, "latest_job", NULL);
	drift_json(j, "drift", mi->name);
	json_obj_end(j);
}

void view_route(struct json *j, const char *key, const struct route_state *r)
{
	json_obj_begin(j, key);
	json_str(j, "name", r->name);
	json_str(j, "database", r->database);
	json_str(j, "table", r->table);
	json_str(j, "mode", config_route_mode_name(r->mode));
	json_str(j, "step_mode", r->step_mode >= 0 ? config_route_mode_name((enum vg_route_mode)r->step_mode) : NULL);
	json_str(j, "step", r->step[0] ? r->step : NULL);
	json_str(j, "pinned_to", r->pin[0] ? r->pin : NULL);
	json_int(j, "pinned_reads", (long long)r->pinned_reads);
	json_int(j, "unpinned_reads", (long long)r->unpinned_reads);
	json_str(j, "effective", config_route_mode_name(route_state_effective(r)));
	json_bool(j, "synced", r->synced && !r->mode_dirty && !r->step_dirty);
	json_str(j, "updated_by", r->updated_by[0] ? r->updated_by : NULL);
	json_str(j, "updated_at", r->updated_at[0] ? r->updated_at : NULL);
	json_obj_begin(j, "queries");
	for (int s = 0; s < ROUTE_STAT_COUNT; s++)
		json_int(j, route_stat_name((enum route_stat)s), (long long)r->stats[s]);
	json_obj_end(j);
	if (r->sample) {
		const struct traffic_sample *ts = r->sample;
		json_obj_begin(j, "traffic_sample");
		json_int(j, "size", ts->size);
		json_int(j, "filled", ts->n_filled);
		json_int(j, "seen", (long long)ts->seen);
		json_int(j, "stored", (long long)ts->stored);
		json_int(j, "missed", (long long)ts->missed);
		json_int(j, "unwritten", ts->n_dirty);
		json_obj_end(j);
	} else {
		json_str(j, "traffic_sample", NULL);
	}
	json_obj_end(j);
}

void view_routes(struct json *j, const char *key)
{
	json_arr_begin(j, key);
	for (int i = 0; i < route_count(); i++)
		view_route(j, NULL, route_at(i));
	json_arr_end(j);
}

static const char *status_of(const struct backend_state *b)
{
	if (!b->checked)
		return "unknown";
	if (!b->view.up)
		return "down";
	if (b->view.promoted)
		return "promoted";
	return backend_in_rotation(&b->view) ? "up" : "lagging";
}

void view_backends(struct json *j, const char *key)
{
	double now = now_sec();
	json_arr_begin(j, key);
	for (int i = 0; i < backend_count(); i++) {
		const struct backend_state *b = backend_at(i);
		json_obj_begin(j, NULL);
		json_str(j, "name", b->name);
		json_str(j, "role", config_role_name(b->view.role));
		json_str(j, "serves", b->serves);
		json_str(j, "host", b->host);
		json_int(j, "port", b->port);
		json_str(j, "status", status_of(b));
		json_bool(j, "up", b->view.up);
		json_bool(j, "in_rotation", backend_in_rotation(&b->view));
		json_bool(j, "in_recovery", b->in_recovery);
		json_bool(j, "replay_paused", b->replay_paused);
		json_int(j, "lag_bytes", (long long)b->view.lag_bytes);
		json_num(j, "lag_seconds", b->view.lag_seconds);
		json_int(j, "max_lag_bytes", (long long)b->view.max_lag_bytes);
		json_num(j, "max_lag_seconds", b->view.max_lag_seconds);
		json_num(j, "last_check_age_seconds", b->checked ? now - b->last_check : NAN);
		json_int(j, "checks", (long long)b->checks);
		json_str(j, "last_error", b->last_error[0] ? b->last_error : NULL);
		json_int(j, "routed_reads", (long long)b->routed_reads);
		json_int(j, "replayed_reads", (long long)b->replayed_reads);
		json_str(j, "current_role", backend_current_role(b));
		json_bool(j, "promoted", b->view.promoted);
		json_int(j, "readonly_refused", (long long)b->readonly_refused);
		bool unwritable = b->write_state != BW_UNKNOWN && b->write_state != BW_WRITABLE;
		json_num(j, "unwritable_seconds", unwritable ? now - b->unwritable_since : NAN);
		json_num(j, "last_unwritable_seconds", b->last_unwritable_secs > 0 ? b->last_unwritable_secs : NAN);
		json_obj_end(j);
	}
	json_arr_end(j);
}
