/*
 * Admin HTTP API on libevent's evhttp, on its own port (loopback by
 * default).  Every request but /healthz needs "Authorization: Bearer
 * <token>", compared in constant time.  Answers are JSON; errors are JSON
 * objects with a message an operator can act on.
 *
 *   GET  /healthz, /readyz, /metrics (Prometheus text; no token: loopback by default)
 *   GET  /v1/indexes                      managed indexes + latest job
 *   GET  /v1/jobs[?index=NAME]            jobs, newest first
 *   GET  /v1/jobs/ID                      one job with progress and history
 *   POST /v1/indexes/NAME/rebuild         start a rebuild (202)
 *   POST /v1/jobs/ID/cancel | /rollback | /approve
 *   GET  /v1/routes                       route modes per managed index, counters
 *   POST /v1/routes/NAME?mode=M           set a route mode (or body {"mode": "M"})
 *   GET  /v1/backends                     health, lag, rotation of every backend
 */
#include "proxy/admin.h"
#include "proxy/backends.h"
#include "proxy/routes.h"
#include "proxy/stats.h"
#include "proxy/json.h"
#include "proxy/rebuild.h"
#include "proxy/vecgate.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct evhttp *http;

static void reply(struct evhttp_request *req, int code, const char *reason, struct json *j)
{
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, j->buf ? j->buf : "{}", j->buf ? j->len : 2);
	evbuffer_add(out, "\n", 1);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
	json_free(j);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason, const char *message)
{
	struct json j;
	json_init(&j);
	json_obj_begin(&j, NULL);
	json_str(&j, "error", message);
	json_int(&j, "status", code);
	json_obj_end(&j);
	reply(req, code, reason, &j);
}

/* Constant time whatever the lengths: compare digests, not strings. */
static bool token_ok(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *want = vg.cfg->admin.token;
	if (!h || !want || strncmp(h, "Bearer ", 7) != 0)
		return false;
	unsigned char a[32], b[32];
	unsigned int la = 0, lb = 0;
	EVP_Digest(h + 7, strlen(h + 7), a, &la, EVP_sha256(), NULL);
	EVP_Digest(want, strlen(want), b, &lb, EVP_sha256(), NULL);
	return CRYPTO_memcmp(a, b, 32) == 0;
}

/* Proxy-wide series: clients, server connections and traffic per pool. */
static void metrics_write(struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP vecgate_clients Client connections.\n# TYPE vecgate_clients gauge\n"
	                       "vecgate_clients %d\n", vg.n_clients);
	evbuffer_add_printf(b, "# HELP vecgate_server_connections Server connections per pool and state.\n"
	                       "# TYPE vecgate_server_connections gauge\n");
	for (struct pool *p = vg.pools; p; p = p->next) {
		int idle = 0, active = 0;
		struct server_conn *s;
		TAILQ_FOREACH(s, &p->servers, link) {
			if (s->state == SV_IDLE)
				idle++;
			else if (s->state == SV_ACTIVE)
				active++;
		}
		const char *states[] = {"idle", "active", "connecting"};
		int counts[] = {idle, active, p->n_connecting};
		for (int i = 0; i < 3; i++)
			evbuffer_add_printf(b, "vecgate_server_connections{database=\"%s\",user=\"%s\",backend=\"%s\",state=\"%s\"} %d\n",
			                    p->db_name, p->user, p->be_name, states[i], counts[i]);
	}
	evbuffer_add_printf(b, "# HELP vecgate_requests_total Request cycles answered (ReadyForQuery) per pool.\n"
	                       "# TYPE vecgate_requests_total counter\n"
	                       "# HELP vecgate_errors_total ErrorResponses delivered to clients per pool.\n"
	                       "# TYPE vecgate_errors_total counter\n"
	                       "# HELP vecgate_request_seconds_total Time from request to ReadyForQuery, summed.\n"
	                       "# TYPE vecgate_request_seconds_total counter\n"
	                       "# HELP vecgate_waiting_clients Clients queued for a server.\n"
	                       "# TYPE vecgate_waiting_clients gauge\n");
	for (struct pool *p = vg.pools; p; p = p->next) {
		int waiting = 0;
		struct client_conn *c;
		TAILQ_FOREACH(c, &p->waiting, pool_link)
			waiting++;
		char lbl[400];
		snprintf(lbl, sizeof(lbl), "database=\"%s\",user=\"%s\",backend=\"%s\"", p->db_name, p->user, p->be_name);
		evbuffer_add_printf(b,
		                    "vecgate_requests_total{%s} %llu\n"
		                    "vecgate_errors_total{%s} %llu\n"
		                    "vecgate_request_seconds_total{%s} %.6f\n"
		                    "vecgate_waiting_clients{%s} %d\n",
		                    lbl, (unsigned long long)p->stat_requests, lbl, (unsigned long long)p->stat_errors, lbl,
		                    p->stat_latency_sum, lbl, waiting);
	}
}

static void index_json(struct json *j, const struct vg_managed_index *mi)
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
		rebuild_job_json(j, "latest_job", job);
	else
		json_str(j, "latest_job", NULL);
	rebuild_drift_json(j, "drift", mi->name);
	json_obj_end(j);
}

/* ?mode=M, or a JSON body {"mode": "M"} */
static void route_mode_from_request(struct evhttp_request *req, const struct evhttp_uri *u, char *out, size_t outlen)
{
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(u);
	if (query && evhttp_parse_query_str(query, &q) == 0) {
		const char *m = evhttp_find_header(&q, "mode");
		if (m)
			snprintf(out, outlen, "%s", m);
	}
	evhttp_clear_headers(&q);
	if (out[0])
		return;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	if (!len || len > 4096)
		return;
	char *text = malloc(len + 1);
	if (!text)
		return;
	evbuffer_copyout(body, text, len);
	text[len] = 0;
	struct jnode *doc = json_parse(text);
	const char *m = doc ? json_get_str(doc, "mode") : NULL;
	if (m)
		snprintf(out, outlen, "%s", m);
	json_node_free(doc);
	free(text);
}

static int path_id(const char *s, const char **rest)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || v <= 0 || v > 1000000000)
		return -1;
	*rest = end;
	return (int)v;
}

static void handle(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evhttp_uri *u = evhttp_uri_parse(uri);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct json j;
	json_init(&j);
	char err[512];
	if (!path) {
		reply_error(req, 400, "Bad Request", "malformed request URI");
		goto done;
	}
	if (!strcmp(path, "/healthz")) {
		json_obj_begin(&j, NULL);
		json_str(&j, "status", vg.shutting_down ? "draining" : "ok");
		json_obj_end(&j);
		reply(req, vg.shutting_down ? 503 : 200, vg.shutting_down ? "Service Unavailable" : "OK", &j);
		goto done;
	}
	if (!strcmp(path, "/readyz")) {
		bool ready = !vg.shutting_down && vg.listeners;
		json_obj_begin(&j, NULL);
		json_bool(&j, "ready", ready);
		json_int(&j, "clients", vg.n_clients);
		json_obj_end(&j);
		reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", &j);
		goto done;
	}
	if (!strcmp(path, "/metrics")) {
		struct evbuffer *out = evbuffer_new();
		metrics_write(out);
		backends_metrics(out);
		routes_metrics(out);
		stats_metrics(out);
		rebuild_metrics(out);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
		goto done;
	}
	if (!token_ok(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "missing or wrong bearer token (Authorization: Bearer <admin.token>)");
		goto done;
	}
	if (!strcmp(path, "/v1/indexes") && cmd == EVHTTP_REQ_GET) {
		json_obj_begin(&j, NULL);
		json_arr_begin(&j, "indexes");
		for (size_t i = 0; i < vg.cfg->n_indexes; i++)
			index_json(&j, &vg.cfg->indexes[i]);
		json_arr_end(&j);
		json_obj_end(&j);
		reply(req, 200, "OK", &j);
		goto done;
	}
	if (!strcmp(path, "/v1/jobs") && cmd == EVHTTP_REQ_GET) {
		struct evkeyvalq q;
		TAILQ_INIT(&q);
		const char *query = evhttp_uri_get_query(u);
		if (query)
			evhttp_parse_query_str(query, &q);
		json_obj_begin(&j, NULL);
		rebuild_jobs_json(&j, "jobs", evhttp_find_header(&q, "index"));
		json_obj_end(&j);
		evhttp_clear_headers(&q);
		reply(req, 200, "OK", &j);
		goto done;
	}
	/* plain listings: {"<key>": [...]} */
	static const struct {
		const char *path, *key;
		void (*list)(struct json *, const char *);
	} listings[] = {{"/v1/routes", "routes", routes_json}, {"/v1/backends", "backends", backends_json}};
	for (size_t i = 0; i < sizeof(listings) / sizeof(*listings); i++) {
		if (strcmp(path, listings[i].path) || cmd != EVHTTP_REQ_GET)
			continue;
		json_obj_begin(&j, NULL);
		listings[i].list(&j, listings[i].key);
		json_obj_end(&j);
		reply(req, 200, "OK", &j);
		goto done;
	}
	if (!strncmp(path, "/v1/routes/", 11)) {
		if (cmd != EVHTTP_REQ_POST) {
			reply_error(req, 405, "Method Not Allowed", "use POST with ?mode=primary|replica|fallback|refuse");
			goto done;
		}
		char *name = evhttp_uridecode(path + 11, 0, NULL);
		char mode[32] = "";
		route_mode_from_request(req, u, mode, sizeof(mode));
		int m = config_route_mode_parse(mode);
		struct route_state *r = name ? route_find(name) : NULL;
		if (!r) {
			reply_error(req, 404, "Not Found", "no managed index of that name; see GET /v1/routes");
		} else if (m < 0) {
			reply_error(req, 400, "Bad Request", "mode must be one of primary, replica, fallback, refuse");
		} else {
			routes_set_mode(r->name, (enum vg_route_mode)m, "admin API");
			route_json(&j, NULL, r);
			reply(req, 200, "OK", &j);
		}
		free(name);
		goto done;
	}
	if (!strncmp(path, "/v1/indexes/", 12)) {
		const char *name = path + 12;
		const char *slash = strrchr(name, '/');
		if (!slash || strcmp(slash, "/rebuild") != 0) {
			reply_error(req, 404, "Not Found", "unknown path; see GET /v1/indexes");
			goto done;
		}
		if (cmd != EVHTTP_REQ_POST) {
			reply_error(req, 405, "Method Not Allowed", "use POST to start a rebuild");
			goto done;
		}
		char iname[256];
		snprintf(iname, sizeof(iname), "%.*s", (int)(slash - name), name);
		char *decoded = evhttp_uridecode(iname, 0, NULL);
		int id = rebuild_start(decoded ? decoded : iname, err, sizeof(err));
		free(decoded);
		if (id < 0) {
			reply_error(req, strstr(err, "no managed index") ? 404 : 409,
			            strstr(err, "no managed index") ? "Not Found" : "Conflict", err);
			goto done;
		}
		rebuild_job_json(&j, NULL, rebuild_find(id));
		reply(req, 202, "Accepted", &j);
		goto done;
	}
	if (!strncmp(path, "/v1/jobs/", 9)) {
		const char *rest;
		int id = path_id(path + 9, &rest);
		const struct rebuild_job *job = id > 0 ? rebuild_find(id) : NULL;
		if (!job) {
			reply_error(req, 404, "Not Found", "no such job; see GET /v1/jobs");
			goto done;
		}
		if (!*rest && cmd == EVHTTP_REQ_GET) {
			rebuild_job_json(&j, NULL, job);
			reply(req, 200, "OK", &j);
			goto done;
		}
		if (!strcmp(rest, "/approve")) {
			if (cmd != EVHTTP_REQ_POST) {
				reply_error(req, 405, "Method Not Allowed", "use POST");
				goto done;
			}
			if (rebuild_approve(id, err, sizeof(err)) < 0) {
				reply_error(req, 409, "Conflict", err);
				goto done;
			}
			rebuild_job_json(&j, NULL, job);
			reply(req, 202, "Accepted", &j);
			goto done;
		}
		enum job_event ev;
		if (!strcmp(rest, "/cancel"))
			ev = JEV_CANCEL;
		else if (!strcmp(rest, "/rollback"))
			ev = JEV_ROLLBACK;
		else {
			reply_error(req, 404, "Not Found", "unknown job action; use /cancel, /rollback or /approve");
			goto done;
		}
		if (cmd != EVHTTP_REQ_POST) {
			reply_error(req, 405, "Method Not Allowed", "use POST");
			goto done;
		}
		if (rebuild_signal(id, ev, err, sizeof(err)) < 0) {
			reply_error(req, 409, "Conflict", err);
			goto done;
		}
		rebuild_job_json(&j, NULL, job);
		reply(req, 202, "Accepted", &j);
		goto done;
	}
	reply_error(req, 404, "Not Found", "unknown path; try /v1/indexes, /v1/jobs, /v1/routes or /v1/backends");
done:
	json_free(&j);
	if (u)
		evhttp_uri_free(u);
}

int admin_start(void)
{
	const struct vg_admin *a = &vg.cfg->admin;
	if (!a->port)
		return 0;
	http = evhttp_new(vg.base);
	if (!http)
		return -1;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_body_size(http, 65536);
	evhttp_set_timeout(http, 30);
	evhttp_set_gencb(http, handle, NULL);
	if (!evhttp_bind_socket_with_handle(http, a->host, (ev_uint16_t)a->port)) {
		log_error("admin API: cannot listen on %s:%d", a->host, a->port);
		evhttp_free(http);
		http = NULL;
		return -1;
	}
	log_info("admin API listening on http://%s:%d", a->host, a->port);
	return 0;
}

void admin_stop(void)
{
	if (http)
		evhttp_free(http);
	http = NULL;
}
