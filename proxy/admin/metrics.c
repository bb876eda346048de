/*
 * The Prometheus text of /metrics, written from read-only views of the
 * pools, backends, routes, counters, rebuild jobs and drift monitors.
 */
#include "proxy/admin/views.h"
#include "proxy/backend_table.h"
#include "proxy/control/drift.h"
#include "proxy/control/rebuild/job.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/pool.h"
#include "proxy/route_table.h"
#include "proxy/runtime/runtime.h"
#include "proxy/runtime/stats.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

static void hist_write(struct evbuffer *out, const char *name, const char *labels, const struct latency_hist *h)
{
	uint64_t cum = 0;
	for (int b = 0; b < LATENCY_BUCKETS; b++) {
		cum += h->count[b];
		if (b < LATENCY_BUCKETS - 1)
			evbuffer_add_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, stats_bucket_bound(b), (unsigned long long)cum);
		else
			evbuffer_add_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
	}
	evbuffer_add_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
	                    (unsigned long long)h->total);
}

/* Proxy-wide series: clients, server connections and traffic per pool. */
static bool pool_connections(const struct pool_view *v, void *arg)
{
	struct evbuffer *b = arg;
	const char *states[] = {"idle", "active", "connecting"};
	int counts[] = {v->idle, v->active, v->connecting};
	for (int i = 0; i < 3; i++)
		evbuffer_add_printf(b, "vecgate_server_connections{database=\"%s\",user=\"%s\",backend=\"%s\",state=\"%s\"} %d\n",
		                    v->database, v->user, v->backend, states[i], counts[i]);
	return true;
}

static bool pool_traffic(const struct pool_view *v, void *arg)
{
	struct evbuffer *b = arg;
	char lbl[400];
	snprintf(lbl, sizeof(lbl), "database=\"%s\",user=\"%s\",backend=\"%s\"", v->database, v->user, v->backend);
	evbuffer_add_printf(b,
	                    "vecgate_requests_total{%s} %llu\n"
	                    "vecgate_errors_total{%s} %llu\n"
	                    "vecgate_request_seconds_total{%s} %.6f\n"
	                    "vecgate_waiting_clients{%s} %d\n",
	                    lbl, (unsigned long long)v->requests, lbl, (unsigned long long)v->errors, lbl, v->latency_sum,
	                    lbl, v->waiting);
	return true;
}

static void pools_metrics(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_clients Client connections.\n# TYPE vecgate_clients gauge\n"
	                       "vecgate_clients %d\n", vg.n_clients);
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
		evbuffer_add_printf(out, "vecgate_backend_up{backend=\"%s\",role=\"%s\"} %d\n", backend_at(i)->name,
		                    config_role_name(backend_at(i)->view.role), backend_at(i)->view.up);
	evbuffer_add_printf(out, "# HELP vecgate_backend_in_rotation Backend may take routed vector reads.\n"
	                         "# TYPE vecgate_backend_in_rotation gauge\n");
	for (int i = 0; i < backend_count(); i++)
		evbuffer_add_printf(out, "vecgate_backend_in_rotation{backend=\"%s\",role=\"%s\"} %d\n", backend_at(i)->name,
		                    config_role_name(backend_at(i)->view.role), backend_in_rotation(&backend_at(i)->view));
	evbuffer_add_printf(out, "# HELP vecgate_replica_lag_bytes WAL received but not replayed, from the replica.\n"
	                         "# TYPE vecgate_replica_lag_bytes gauge\n"
	                         "# HELP vecgate_replica_lag_seconds Age of the last replayed transaction while behind.\n"
	                         "# TYPE vecgate_replica_lag_seconds gauge\n");
	for (int i = 0; i < backend_count(); i++) {
		if (backend_at(i)->view.role != VG_ROLE_REPLICA)
			continue;
		evbuffer_add_printf(out,
		                    "vecgate_replica_lag_bytes{backend=\"%s\"} %lld\n"
		                    "vecgate_replica_lag_seconds{backend=\"%s\"} %.3f\n",
		                    backend_at(i)->name, (long long)backend_at(i)->view.lag_bytes, backend_at(i)->name,
		                    backend_at(i)->view.lag_seconds);
	}
	evbuffer_add_printf(out, "# HELP vecgate_backend_reads_total Vector reads routed to a backend.\n"
	                         "# TYPE vecgate_backend_reads_total counter\n"
	                         "# HELP vecgate_backend_replays_total Routed reads re-run on the primary after this "
	                         "backend failed them.\n# TYPE vecgate_backend_replays_total counter\n");
	for (int i = 0; i < backend_count(); i++)
		evbuffer_add_printf(out,
		                    "vecgate_backend_reads_total{backend=\"%s\"} %llu\n"
		                    "vecgate_backend_replays_total{backend=\"%s\"} %llu\n",
		                    backend_at(i)->name, (unsigned long long)backend_at(i)->routed_reads, backend_at(i)->name,
		                    (unsigned long long)backend_at(i)->replayed_reads);
}

static void routes_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_route_mode Route mode in force for a managed index's vector reads.\n"
	                         "# TYPE vecgate_route_mode gauge\n");
	for (int i = 0; i < route_count(); i++)
		for (int m = 0; m < VG_ROUTE_COUNT; m++)
			evbuffer_add_printf(out, "vecgate_route_mode{index=\"%s\",mode=\"%s\"} %d\n", route_at(i)->name,
			                    config_route_mode_name((enum vg_route_mode)m),
			                    route_state_effective(route_at(i)) == (enum vg_route_mode)m);
	evbuffer_add_printf(out, "# HELP vecgate_route_queries_total Vector reads of a managed index by where they went.\n"
	                         "# TYPE vecgate_route_queries_total counter\n");
	for (int i = 0; i < route_count(); i++)
		for (int s = 0; s < ROUTE_STAT_COUNT; s++)
			evbuffer_add_printf(out, "vecgate_route_queries_total{index=\"%s\",target=\"%s\"} %llu\n", route_at(i)->name,
			                    route_stat_name((enum route_stat)s), (unsigned long long)route_at(i)->stats[s]);
	evbuffer_add_printf(out, "# HELP vecgate_vector_query_seconds Vector reads of a managed index, from arrival to "
	                         "ReadyForQuery.\n# TYPE vecgate_vector_query_seconds histogram\n");
	for (int i = 0; i < route_count(); i++) {
		char labels[200];
		snprintf(labels, sizeof(labels), "index=\"%s\"", route_at(i)->name);
		hist_write(out, "vecgate_vector_query_seconds", labels, &route_at(i)->latency);
	}
}

static void errors_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_client_errors_total ErrorResponses sent to clients, by SQLSTATE "
	                         "(the server's and vecgate's own).\n# TYPE vecgate_client_errors_total counter\n");
	for (int i = 0; i < stats_error_count(); i++) {
		const char *code;
		uint64_t n = stats_error_at(i, &code);
		evbuffer_add_printf(out, "vecgate_client_errors_total{sqlstate=\"%s\"} %llu\n", code, (unsigned long long)n);
	}
}

static void rebuild_metrics(struct evbuffer *b)
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
	for (const struct rebuild_job *job = rebuild_next(NULL); job; job = rebuild_next(job)) {
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
			evbuffer_add_printf(b, "vecgate_drift_recall{index=\"%s\"} %.6f\n", d->name, d->recall);
		if (d->have_baseline)
			evbuffer_add_printf(b, "vecgate_drift_baseline{index=\"%s\"} %.6f\n", d->name, d->baseline);
		evbuffer_add_printf(b, "vecgate_drift_alert{index=\"%s\"} %d\n", d->name, d->alert);
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
