/*
 * The Prometheus text of /metrics, written from read-only views of the
 * pools, backends, routes, counters, rebuild jobs and drift monitors.
 * Every sample goes through sample(), which escapes every label value
 * (prom_label_value): database and user names come from clients, index and
 * backend names from the configuration, and any of them may hold a quote,
 * a backslash or a newline that would otherwise break the exposition format.
 */
#include "proxy/admin/views.h"
#include "proxy/backend_table.h"
#include "proxy/control/drift.h"
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/pool.h"
#include "proxy/route_table.h"
#include "proxy/sampler.h"
#include "proxy/runtime/runtime.h"
#include "proxy/runtime/stats.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void prom_label_value(struct evbuffer *out, const char *value)
{
	const char *run = value;
	for (const char *p = value; *p; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
		if (!esc)
			continue;
		evbuffer_add(out, run, (size_t)(p - run));
		evbuffer_add(out, esc, 2);
		run = p + 1;
	}
	evbuffer_add(out, run, strlen(run));
}

/* Label pairs for sample(): key, value, key, value, ..., NULL. */
#define LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* One sample line: name{key="value",...} <fmt>; values escaped. */
static void sample(struct evbuffer *out, const char *name, const char *const *labels, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void sample(struct evbuffer *out, const char *name, const char *const *labels, const char *fmt, ...)
{
	evbuffer_add(out, name, strlen(name));
	for (size_t i = 0; labels && labels[i]; i += 2) {
		evbuffer_add(out, i ? "," : "{", 1);
		evbuffer_add(out, labels[i], strlen(labels[i]));
		evbuffer_add(out, "=\"", 2);
		prom_label_value(out, labels[i + 1] ? labels[i + 1] : "");
		evbuffer_add(out, "\"", 1);
	}
	evbuffer_add(out, labels && labels[0] ? "} " : " ", labels && labels[0] ? 2 : 1);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\n", 1);
}

static void hist_write(struct evbuffer *out, const char *name, const char *index, const struct latency_hist *h)
{
	char series[128], le[32];
	uint64_t cum = 0;
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (int b = 0; b < LATENCY_BUCKETS; b++) {
		cum += h->count[b];
		if (b < LATENCY_BUCKETS - 1)
			snprintf(le, sizeof(le), "%g", stats_bucket_bound(b));
		else
			snprintf(le, sizeof(le), "+Inf");
		sample(out, series, LABELS("index", index, "le", le), "%llu", (unsigned long long)cum);
	}
	snprintf(series, sizeof(series), "%s_sum", name);
	sample(out, series, LABELS("index", index), "%.6f", h->sum);
	snprintf(series, sizeof(series), "%s_count", name);
	sample(out, series, LABELS("index", index), "%llu", (unsigned long long)h->total);
}

/* Proxy-wide series: clients, server connections and traffic per pool. */
static bool pool_connections(const struct pool_view *v, void *arg)
{
	struct evbuffer *b = arg;
	const char *states[] = {"idle", "active", "connecting"};
	int counts[] = {v->idle, v->active, v->connecting};
	for (int i = 0; i < 3; i++)
		sample(b, "vecgate_server_connections",
		       LABELS("database", v->database, "user", v->user, "backend", v->backend, "state", states[i]), "%d",
		       counts[i]);
	return true;
}

static bool pool_traffic(const struct pool_view *v, void *arg)
{
	struct evbuffer *b = arg;
	const char *const *lbl = LABELS("database", v->database, "user", v->user, "backend", v->backend);
	sample(b, "vecgate_requests_total", lbl, "%llu", (unsigned long long)v->requests);
	sample(b, "vecgate_errors_total", lbl, "%llu", (unsigned long long)v->errors);
	sample(b, "vecgate_request_seconds_total", lbl, "%.6f", v->latency_sum);
	sample(b, "vecgate_waiting_clients", lbl, "%d", v->waiting);
	return true;
}

static void pools_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_clients Client connections.\n# TYPE vecgate_clients gauge\n");
	sample(b, "vecgate_clients", NULL, "%d", vg.n_clients);
	evbuffer_add_printf(b, "# HELP vecgate_server_connections Server connections per pool and state.\n"
	                       "# TYPE vecgate_server_connections gauge\n");
	pools_foreach_view(pool_connections, b);
	evbuffer_add_printf(b, "# HELP vecgate_requests_total Request cycles answered (ReadyForQuery) per pool.\n"
	                       "# TYPE vecgate_requests_total counter\n"
	                       "# HELP vecgate_errors_total ErrorResponses delivered to clients per pool.\n"
	                       "# TYPE vecgate_errors_total counter\n"
	                       "# HELP vecgate_request_seconds_total Time from request to ReadyForQuery, summed.\n"
	                       "# TYPE vecgate_request_seconds_total counter\n"
	                       "# HELP vecgate_waiting_clients Clients queued for a server.\n"
	                       "# TYPE vecgate_waiting_clients gauge\n");
	pools_foreach_view(pool_traffic, b);
}

static void backends_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_backend_up Last health check answered (1) or not (0).\n"
	                         "# TYPE vecgate_backend_up gauge\n");
	for (int i = 0; i < backend_count(); i++)
		sample(out, "vecgate_backend_up",
		       LABELS("backend", backend_at(i)->name, "role", config_role_name(backend_at(i)->view.role)), "%d",
		       backend_at(i)->view.up);
	evbuffer_add_printf(out, "# HELP vecgate_backend_in_rotation Backend may take routed vector reads.\n"
	                         "# TYPE vecgate_backend_in_rotation gauge\n");
	for (int i = 0; i < backend_count(); i++)
		sample(out, "vecgate_backend_in_rotation",
		       LABELS("backend", backend_at(i)->name, "role", config_role_name(backend_at(i)->view.role)), "%d",
		       backend_in_rotation(&backend_at(i)->view));
	evbuffer_add_printf(out, "# HELP vecgate_replica_lag_bytes WAL received but not replayed, from the replica.\n"
	                         "# TYPE vecgate_replica_lag_bytes gauge\n"
	                         "# HELP vecgate_replica_lag_seconds Age of the last replayed transaction while behind.\n"
	                         "# TYPE vecgate_replica_lag_seconds gauge\n");
	for (int i = 0; i < backend_count(); i++) {
		if (backend_at(i)->view.role != VG_ROLE_REPLICA)
			continue;
		sample(out, "vecgate_replica_lag_bytes", LABELS("backend", backend_at(i)->name), "%lld",
		       (long long)backend_at(i)->view.lag_bytes);
		sample(out, "vecgate_replica_lag_seconds", LABELS("backend", backend_at(i)->name), "%.3f",
		       backend_at(i)->view.lag_seconds);
	}
	evbuffer_add_printf(out, "# HELP vecgate_backend_current_role What the backend is now (primary, standby, "
	                         "read-only, unreachable, unknown).\n# TYPE vecgate_backend_current_role gauge\n"
	                         "# HELP vecgate_backend_readonly_refused_total Server sessions of a read-write primary "
	                         "backend not pooled because they were read-only.\n"
	                         "# TYPE vecgate_backend_readonly_refused_total counter\n");
	for (int i = 0; i < backend_count(); i++) {
		const struct backend_state *b = backend_at(i);
		sample(out, "vecgate_backend_current_role",
		       LABELS("backend", b->name, "current_role", backend_current_role(b)), "1");
		sample(out, "vecgate_backend_readonly_refused_total", LABELS("backend", b->name), "%llu",
		       (unsigned long long)b->readonly_refused);
	}
	evbuffer_add_printf(out, "# HELP vecgate_backend_reads_total Vector reads routed to a backend.\n"
	                         "# TYPE vecgate_backend_reads_total counter\n"
	                         "# HELP vecgate_backend_replays_total Routed reads re-run on the primary after this "
	                         "backend failed them.\n# TYPE vecgate_backend_replays_total counter\n");
	for (int i = 0; i < backend_count(); i++) {
		sample(out, "vecgate_backend_reads_total", LABELS("backend", backend_at(i)->name), "%llu",
		       (unsigned long long)backend_at(i)->routed_reads);
		sample(out, "vecgate_backend_replays_total", LABELS("backend", backend_at(i)->name), "%llu",
		       (unsigned long long)backend_at(i)->replayed_reads);
	}
}

static void routes_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_route_mode Route mode in force for a managed index's vector reads.\n"
	                         "# TYPE vecgate_route_mode gauge\n");
	for (int i = 0; i < route_count(); i++)
		for (int m = 0; m < VG_ROUTE_COUNT; m++)
			sample(out, "vecgate_route_mode",
			       LABELS("index", route_at(i)->name, "mode", config_route_mode_name((enum vg_route_mode)m)), "%d",
			       route_state_effective(route_at(i)) == (enum vg_route_mode)m);
	evbuffer_add_printf(out, "# HELP vecgate_route_queries_total Vector reads of a managed index by where they went.\n"
	                         "# TYPE vecgate_route_queries_total counter\n");
	for (int i = 0; i < route_count(); i++)
		for (int s = 0; s < ROUTE_STAT_COUNT; s++)
			sample(out, "vecgate_route_queries_total",
			       LABELS("index", route_at(i)->name, "target", route_stat_name((enum route_stat)s)), "%llu",
			       (unsigned long long)route_at(i)->stats[s]);
	evbuffer_add_printf(out, "# HELP vecgate_vector_query_seconds Vector reads of a managed index, from arrival to "
	                         "ReadyForQuery.\n# TYPE vecgate_vector_query_seconds histogram\n");
	for (int i = 0; i < route_count(); i++)
		hist_write(out, "vecgate_vector_query_seconds", route_at(i)->name, &route_at(i)->latency);
	evbuffer_add_printf(out, "# HELP vecgate_route_pin_reads_total Vector reads of a pinned index (swap_mode hint): "
	                         "pinned with a plan hint, or passed unpinned.\n"
	                         "# TYPE vecgate_route_pin_reads_total counter\n");
	for (int i = 0; i < route_count(); i++) {
		sample(out, "vecgate_route_pin_reads_total", LABELS("index", route_at(i)->name, "outcome", "pinned"), "%llu",
		       (unsigned long long)route_at(i)->pinned_reads);
		sample(out, "vecgate_route_pin_reads_total", LABELS("index", route_at(i)->name, "outcome", "unpinned"),
		       "%llu", (unsigned long long)route_at(i)->unpinned_reads);
	}
	evbuffer_add_printf(out, "# HELP vecgate_traffic_sample_vectors Query vectors held in a managed index's traffic "
	                         "sample.\n# TYPE vecgate_traffic_sample_vectors gauge\n");
	for (int i = 0; i < route_count(); i++)
		if (route_at(i)->sample)
			sample(out, "vecgate_traffic_sample_vectors", LABELS("index", route_at(i)->name), "%d",
			       route_at(i)->sample->n_filled);
}

static void errors_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_client_errors_total ErrorResponses sent to clients, by SQLSTATE "
	                         "(the server's and vecgate's own).\n# TYPE vecgate_client_errors_total counter\n");
	for (int i = 0; i < stats_error_count(); i++) {
		const char *code;
		uint64_t n = stats_error_at(i, &code);
		sample(out, "vecgate_client_errors_total", LABELS("sqlstate", code), "%llu", (unsigned long long)n);
	}
}

static void rebuild_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_rebuild_state Current state of the newest rebuild job per managed index.\n"
	                       "# TYPE vecgate_rebuild_state gauge\n");
	for (size_t i = 0; i < vg.cfg->n_indexes; i++) {
		const struct rebuild_job *job = rebuild_latest(vg.cfg->indexes[i].name);
		for (int st = 0; st < JOB_STATE_COUNT; st++)
			sample(b, "vecgate_rebuild_state",
			       LABELS("index", vg.cfg->indexes[i].name, "state", job_state_name((enum job_state)st)), "%d",
			       job && (int)job->state == st ? 1 : 0);
	}
	evbuffer_add_printf(b, "# HELP vecgate_rebuild_progress_percent Build progress of the newest job.\n"
	                       "# TYPE vecgate_rebuild_progress_percent gauge\n"
	                       "# HELP vecgate_recall Recall@k measured by the newest job (baseline = live index before).\n"
	                       "# TYPE vecgate_recall gauge\n"
	                       "# HELP vecgate_swap_lock_milliseconds Duration of the newest job's swap transaction.\n"
	                       "# TYPE vecgate_swap_lock_milliseconds gauge\n"
	                       "# HELP vecgate_eval_progress_percent Progress of the newest job's eval run (baseline, "
	                       "verify, watch), 0 when none runs.\n"
	                       "# TYPE vecgate_eval_progress_percent gauge\n"
	                       "# HELP vecgate_rebuild_blocked_seconds How long the newest job's build has waited for the "
	                       "backend named by its labels (0 = not waiting).\n"
	                       "# TYPE vecgate_rebuild_blocked_seconds gauge\n"
	                       "# HELP vecgate_rebuild_watch_index_scans idx_scan growth of the new and the retired index "
	                       "over the newest job's watch.\n"
	                       "# TYPE vecgate_rebuild_watch_index_scans gauge\n");
	for (const struct rebuild_job *job = rebuild_next(NULL); job; job = rebuild_next(job)) {
		if (job != rebuild_latest(job->index_name))
			continue;
		double pct = job_build_percent(job);
		struct eval_progress ep;
		bool evaluating = job_eval_progress(job, &ep);
		sample(b, "vecgate_eval_progress_percent", LABELS("index", job->index_name), "%.2f",
		       evaluating ? ep.percent : 0);
		const struct build_blocker *bl = job_waiting_for(job);
		if (bl) {
			char pid[16];
			snprintf(pid, sizeof(pid), "%d", bl->pid);
			sample(b, "vecgate_rebuild_blocked_seconds",
			       LABELS("index", job->index_name, "pid", pid, "user", bl->user, "application", bl->application),
			       "%.1f", now_sec() - job->blocked_since);
		} else {
			sample(b, "vecgate_rebuild_blocked_seconds", LABELS("index", job->index_name, "pid", "", "user", "",
			                                                     "application", ""), "0");
		}
		sample(b, "vecgate_rebuild_progress_percent", LABELS("index", job->index_name), "%.2f", pct);
		if (job->have_base)
			sample(b, "vecgate_recall", LABELS("index", job->index_name, "which", "baseline"), "%.6f",
			       job->base_recall);
		if (job->have_new)
			sample(b, "vecgate_recall", LABELS("index", job->index_name, "which", "candidate"), "%.6f",
			       job->new_recall);
		if (job->swap_tries)
			sample(b, "vecgate_swap_lock_milliseconds", LABELS("index", job->index_name), "%.3f", job->swap_ms);
		if (job->have_proof) {
			sample(b, "vecgate_rebuild_watch_index_scans", LABELS("index", job->index_name, "which", "new"), "%lld",
			       job->scans_new);
			sample(b, "vecgate_rebuild_watch_index_scans", LABELS("index", job->index_name, "which", "retired"),
			       "%lld", job->scans_old);
		}
	}
}

static void drift_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_drift_recall Recall@k of the live index, from the drift monitor.\n"
	                       "# TYPE vecgate_drift_recall gauge\n"
	                       "# HELP vecgate_drift_baseline Recall@k the drift monitor compares against.\n"
	                       "# TYPE vecgate_drift_baseline gauge\n"
	                       "# HELP vecgate_drift_alert 1 while recall is below baseline by more than drift_tolerance.\n"
	                       "# TYPE vecgate_drift_alert gauge\n");
	for (const struct drift_monitor *d = drift_next(NULL); d; d = drift_next(d)) {
		if (d->have_recall)
			sample(b, "vecgate_drift_recall", LABELS("index", d->name), "%.6f", d->recall);
		if (d->have_baseline)
			sample(b, "vecgate_drift_baseline", LABELS("index", d->name), "%.6f", d->baseline);
		sample(b, "vecgate_drift_alert", LABELS("index", d->name), "%d", d->alert);
	}
}

void view_metrics(struct evbuffer *out)
{
	pools_metrics(out);
	backends_metrics(out);
	routes_metrics(out);
	errors_metrics(out);
	rebuild_metrics(out);
	drift_metrics(out);
}
