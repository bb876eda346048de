/*
 * The admin HTTP API on libevent's evhttp, on its own port (loopback by
 * default).  Requests are matched against one dispatch table; every route
 * but the probes needs "Authorization: Bearer <token>", compared in
 * constant time; /metrics too unless admin.metrics_without_token is set.
 * Answers are JSON; errors are JSON objects with a message an operator can
 * act on, and their HTTP status comes from the operation's typed outcome,
 * never from its text.
 *
 *   GET  /healthz, /readyz                probes, no token
 *   GET  /metrics                         Prometheus text (token unless admin.metrics_without_token)
 *   GET  /v1/indexes                      managed indexes + latest job
 *   GET  /v1/jobs[?index=NAME]            jobs, newest first
 *   GET  /v1/jobs/ID                      one job with progress and history
 *   POST /v1/indexes/NAME/rebuild         start a rebuild (202)
 *   GET  /v1/indexes/NAME/plan            the newest build plan (one is started when there is none: 202)
 *   POST /v1/indexes/NAME/plan            start a build plan (202; 409 while one runs)
 *   POST /v1/jobs/ID/cancel | /rollback | /approve[?override=true]
 *   GET  /v1/routes                       route modes per managed index, counters
 *   POST /v1/routes/NAME?mode=M           set a route mode (or body {"mode": "M"})
 *   GET  /v1/backends                     health, lag, rotation of every backend
 */
#include "proxy/admin/admin.h"
#include "proxy/admin/views.h"
#include "proxy/control/plan.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/control/route_sync.h"
#include "proxy/route_table.h"
#include "proxy/runtime/runtime.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct evhttp *http;

/* One request being answered: what the route handlers need. */
struct admin_request {
	struct evhttp_request *req;
	const struct evhttp_uri *uri;
	const char *arg; /* the {} segment of the route's path, still URI-encoded */
	struct json j;
};

static void reply(struct admin_request *r, int code, const char *reason)
{
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, r->j.buf ? r->j.buf : "{}", r->j.buf ? r->j.len : 2);
	evbuffer_add(out, "\n", 1);
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", "application/json");
	evhttp_send_reply(r->req, code, reason, out);
	evbuffer_free(out);
}

static void reply_error(struct admin_request *r, int code, const char *message)
{
	const char *reason = code == 400   ? "Bad Request"
	                     : code == 401 ? "Unauthorized"
	                     : code == 404 ? "Not Found"
	                     : code == 405 ? "Method Not Allowed"
	                     : code == 409 ? "Conflict"
	                                   : "Error";
	json_free(&r->j);
	json_init(&r->j);
	json_obj_begin(&r->j, NULL);
	json_str(&r->j, "error", message);
	json_int(&r->j, "status", code);
	json_obj_end(&r->j);
	reply(r, code, reason);
}

static int status_of(enum op_status st)
{
	switch (st) {
	case OP_NOT_FOUND:
		return 404;
	case OP_INVALID:
		return 400;
	case OP_CONFLICT:
		return 409;
	default:
		return 200;
	}
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

/* ?name=value of the request, or NULL; copied into out. */
static const char *query_param(const struct evhttp_uri *u, const char *name, char *out, size_t outlen)
{
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(u);
	const char *v = NULL;
	if (query && evhttp_parse_query_str(query, &q) == 0 && (v = evhttp_find_header(&q, name)))
		snprintf(out, outlen, "%s", v);
	evhttp_clear_headers(&q);
	return v ? out : NULL;
}

/* ?mode=M, or a JSON body {"mode": "M"} */
static void route_mode_from_request(struct admin_request *r, char *out, size_t outlen)
{
	if (query_param(r->uri, "mode", out, outlen))
		return;
	struct evbuffer *body = evhttp_request_get_input_buffer(r->req);
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

/* ---- handlers ---- */

static void get_healthz(struct admin_request *r)
{
	json_obj_begin(&r->j, NULL);
	json_str(&r->j, "status", vg.shutting_down ? "draining" : "ok");
	json_obj_end(&r->j);
	reply(r, vg.shutting_down ? 503 : 200, vg.shutting_down ? "Service Unavailable" : "OK");
}

static void get_readyz(struct admin_request *r)
{
	bool ready = !vg.shutting_down && vg.listeners;
	json_obj_begin(&r->j, NULL);
	json_bool(&r->j, "ready", ready);
	json_int(&r->j, "clients", vg.n_clients);
	json_obj_end(&r->j);
	reply(r, ready ? 200 : 503, ready ? "OK" : "Service Unavailable");
}

static void get_metrics(struct admin_request *r)
{
	struct evbuffer *out = evbuffer_new();
	view_metrics(out);
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(r->req, 200, "OK", out);
	evbuffer_free(out);
}

static void get_indexes(struct admin_request *r)
{
	json_obj_begin(&r->j, NULL);
	json_arr_begin(&r->j, "indexes");
	for (size_t i = 0; i < vg.cfg->n_indexes; i++)
		view_index(&r->j, &vg.cfg->indexes[i]);
	json_arr_end(&r->j);
	json_obj_end(&r->j);
	reply(r, 200, "OK");
}

static void get_jobs(struct admin_request *r)
{
	char index[256];
	json_obj_begin(&r->j, NULL);
	view_jobs(&r->j, "jobs", query_param(r->uri, "index", index, sizeof(index)));
	json_obj_end(&r->j);
	reply(r, 200, "OK");
}

static void get_routes(struct admin_request *r)
{
	json_obj_begin(&r->j, NULL);
	view_routes(&r->j, "routes");
	json_obj_end(&r->j);
	reply(r, 200, "OK");
}

static void get_backends(struct admin_request *r)
{
	json_obj_begin(&r->j, NULL);
	view_backends(&r->j, "backends");
	json_obj_end(&r->j);
	reply(r, 200, "OK");
}

static void post_route(struct admin_request *r)
{
	char *name = evhttp_uridecode(r->arg, 0, NULL);
	char mode[32] = "";
	route_mode_from_request(r, mode, sizeof(mode));
	int m = config_route_mode_parse(mode);
	struct route_state *rs = name ? route_find(name) : NULL;
	if (!rs) {
		reply_error(r, 404, "no managed index of that name; see GET /v1/routes");
	} else if (m < 0) {
		reply_error(r, 400, "mode must be one of primary, replica, fallback, refuse");
	} else {
		routes_set_mode(rs->name, (enum vg_route_mode)m, "admin API");
		view_route(&r->j, NULL, rs);
		reply(r, 200, "OK");
	}
	free(name);
}

static void post_rebuild(struct admin_request *r)
{
	char err[512];
	char *name = evhttp_uridecode(r->arg, 0, NULL);
	enum op_status why = OP_OK;
	int id = name ? rebuild_start(name, &why, err, sizeof(err)) : -1;
	free(name);
	if (id < 0) {
		reply_error(r, name ? status_of(why) : 400, name ? err : "malformed index name");
		return;
	}
	view_job(&r->j, NULL, rebuild_find(id));
	reply(r, 202, "Accepted");
}

/* A build plan: trial builds on samples take seconds to minutes, so the
 * request answers at once (202) and the plan is read as it goes. */
static void plan_request(struct admin_request *r, bool fresh)
{
	char *name = evhttp_uridecode(r->arg, 0, NULL);
	const struct vg_managed_index *mi = name ? config_find_index(vg.cfg, name) : NULL;
	free(name);
	if (!mi) {
		reply_error(r, 404, "no managed index of that name; see GET /v1/indexes");
		return;
	}
	const struct build_plan *p = plan_latest(mi->name);
	if (p && !fresh) {
		view_plan(&r->j, NULL, p);
		reply(r, 200, "OK");
		return;
	}
	char err[400];
	p = plan_start(mi, plan_eval_queries(mi), NULL, NULL, err, sizeof(err));
	if (!p) {
		reply_error(r, 409, err);
		return;
	}
	view_plan(&r->j, NULL, p);
	reply(r, 202, "Accepted");
}

static void get_plan(struct admin_request *r)
{
	plan_request(r, false);
}

static void post_plan(struct admin_request *r)
{
	plan_request(r, true);
}

/* The job of /v1/jobs/{id}/..., or NULL after answering 404. */
static const struct rebuild_job *path_job(struct admin_request *r, int *id)
{
	char *end;
	long v = strtol(r->arg, &end, 10);
	const struct rebuild_job *job = end != r->arg && !*end && v > 0 && v <= 1000000000 ? rebuild_find((int)v) : NULL;
	if (!job)
		reply_error(r, 404, "no such job; see GET /v1/jobs");
	*id = (int)v;
	return job;
}

static void get_job(struct admin_request *r)
{
	int id;
	const struct rebuild_job *job = path_job(r, &id);
	if (!job)
		return;
	view_job(&r->j, NULL, job);
	reply(r, 200, "OK");
}

static void job_action(struct admin_request *r, enum op_status (*act)(int id, char *err, size_t errlen))
{
	int id;
	const struct rebuild_job *job = path_job(r, &id);
	if (!job)
		return;
	char err[512];
	enum op_status st = act(id, err, sizeof(err));
	if (st != OP_OK) {
		reply_error(r, status_of(st), err);
		return;
	}
	view_job(&r->j, NULL, job);
	reply(r, 202, "Accepted");
}

static enum op_status cancel_job(int id, char *err, size_t errlen)
{
	return rebuild_signal(id, JEV_CANCEL, err, errlen);
}

static enum op_status rollback_job(int id, char *err, size_t errlen)
{
	return rebuild_signal(id, JEV_ROLLBACK, err, errlen);
}

/* ?override=true (or {"override": true}): swap a candidate the gate refused */
static bool override_requested(struct admin_request *r)
{
	char v[16] = "";
	if (query_param(r->uri, "override", v, sizeof(v)))
		return !strcmp(v, "true") || !strcmp(v, "1");
	struct evbuffer *body = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(body);
	if (!len || len > 4096)
		return false;
	char *text = malloc(len + 1);
	if (!text)
		return false;
	evbuffer_copyout(body, text, len);
	text[len] = 0;
	struct jnode *doc = json_parse(text);
	bool yes = doc && json_get_bool(doc, "override");
	json_node_free(doc);
	free(text);
	return yes;
}

static enum op_status approve_plain(int id, char *err, size_t errlen)
{
	return rebuild_approve(id, false, err, errlen);
}

static enum op_status approve_override(int id, char *err, size_t errlen)
{
	return rebuild_approve(id, true, err, errlen);
}

static void post_approve(struct admin_request *r)
{
	job_action(r, override_requested(r) ? approve_override : approve_plain);
}

static void post_cancel(struct admin_request *r)
{
	job_action(r, cancel_job);
}

static void post_rollback(struct admin_request *r)
{
	job_action(r, rollback_job);
}

/* ---- dispatch ---- */

enum {
	OPEN,    /* no token */
	TOKEN,   /* Authorization: Bearer <admin.token> */
	METRICS, /* TOKEN, or OPEN with admin.metrics_without_token (read per request: follows SIGHUP) */
};

/* A path is literal but for at most one "{}" segment, handed to the handler. */
static const struct admin_route {
	const char *path;
	enum evhttp_cmd_type method;
	int auth;
	void (*handle)(struct admin_request *r);
	const char *wrong_method; /* the 405 message */
} routes[] = {
	{"/healthz", EVHTTP_REQ_GET, OPEN, get_healthz, "use GET"},
	{"/readyz", EVHTTP_REQ_GET, OPEN, get_readyz, "use GET"},
	{"/metrics", EVHTTP_REQ_GET, METRICS, get_metrics, "use GET"},
	{"/v1/indexes", EVHTTP_REQ_GET, TOKEN, get_indexes, "use GET"},
	{"/v1/indexes/{}/rebuild", EVHTTP_REQ_POST, TOKEN, post_rebuild, "use POST to start a rebuild"},
	{"/v1/indexes/{}/plan", EVHTTP_REQ_GET, TOKEN, get_plan, "use GET to read, POST to start a build plan"},
	{"/v1/indexes/{}/plan", EVHTTP_REQ_POST, TOKEN, post_plan, "use GET to read, POST to start a build plan"},
	{"/v1/jobs", EVHTTP_REQ_GET, TOKEN, get_jobs, "use GET"},
	{"/v1/jobs/{}", EVHTTP_REQ_GET, TOKEN, get_job, "use GET"},
	{"/v1/jobs/{}/approve", EVHTTP_REQ_POST, TOKEN, post_approve, "use POST"},
	{"/v1/jobs/{}/cancel", EVHTTP_REQ_POST, TOKEN, post_cancel, "use POST"},
	{"/v1/jobs/{}/rollback", EVHTTP_REQ_POST, TOKEN, post_rollback, "use POST"},
	{"/v1/routes", EVHTTP_REQ_GET, TOKEN, get_routes, "use GET"},
	{"/v1/routes/{}", EVHTTP_REQ_POST, TOKEN, post_route, "use POST with ?mode=primary|replica|fallback|refuse"},
	{"/v1/backends", EVHTTP_REQ_GET, TOKEN, get_backends, "use GET"},
};

/* Does `path` match `pattern`?  The {} segment is copied into arg. */
static bool path_matches(const char *pattern, const char *path, char *arg, size_t arglen)
{
	const char *hole = strstr(pattern, "{}");
	if (!hole)
		return !strcmp(pattern, path);
	size_t pre = (size_t)(hole - pattern);
	const char *post = hole + 2;
	if (strncmp(path, pattern, pre))
		return false;
	const char *seg = path + pre;
	size_t seglen = strcspn(seg, "/");
	if (!seglen || seglen >= arglen || strcmp(seg + seglen, post))
		return false;
	memcpy(arg, seg, seglen);
	arg[seglen] = 0;
	return true;
}

/* A path under a known prefix that no route takes gets a pointed hint. */
static const char *unknown_path_hint(const char *path)
{
	if (!strncmp(path, "/v1/indexes/", 12))
		return "unknown path; see GET /v1/indexes";
	if (!strncmp(path, "/v1/jobs/", 9))
		return "unknown job action; use /cancel, /rollback or /approve";
	return "unknown path; try /v1/indexes, /v1/jobs, /v1/routes or /v1/backends";
}

static void handle(struct evhttp_request *req, void *unused)
{
	(void)unused;
	struct evhttp_uri *u = evhttp_uri_parse(evhttp_request_get_uri(req));
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	char arg[256] = "";
	struct admin_request r = {.req = req, .uri = u, .arg = arg};
	json_init(&r.j);
	if (!path) {
		reply_error(&r, 400, "malformed request URI");
		goto done;
	}
	const struct admin_route *hit = NULL;
	/* a path may take several methods: the route of the request's method,
	 * else the path's first (its 405 message) */
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++)
		if (path_matches(routes[i].path, path, arg, sizeof(arg)) &&
		    (!hit || (hit->method != evhttp_request_get_command(req) && routes[i].method == evhttp_request_get_command(req))))
			hit = &routes[i];
	bool open = hit && (hit->auth == OPEN || (hit->auth == METRICS && vg.cfg->admin.metrics_without_token));
	if (open && evhttp_request_get_command(req) == hit->method) {
		hit->handle(&r);
		goto done;
	}
	if (!token_ok(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		reply_error(&r, 401, "missing or wrong bearer token (Authorization: Bearer <admin.token>)");
		goto done;
	}
	if (!hit)
		reply_error(&r, 404, unknown_path_hint(path));
	else if (evhttp_request_get_command(req) != hit->method)
		reply_error(&r, 405, hit->wrong_method);
	else
		hit->handle(&r);
done:
	json_free(&r.j);
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
