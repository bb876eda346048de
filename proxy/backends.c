/*
 * Backend health: one libpq session per configured backend, checked every
 * health_check.interval on the event loop.  A check reports whether the
 * server answers, whether it is in recovery, and a replica's own view of its
 * lag (WAL received but not replayed, in bytes, and the age of the last
 * replayed transaction while it is behind).  Routing reads the resulting
 * backend_view snapshots; a replica that is down or lags beyond its bounds
 * is out of rotation until a later check finds it healthy again.
 */
#include "proxy/backends.h"
#include "proxy/pgasync.h"
#include "proxy/vecgate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lag in seconds counts only while the replica is behind: an idle primary
 * writes nothing, and the last replay timestamp then ages without lag */
#define SQL_HEALTH                                                                                                 \
	"SELECT pg_is_in_recovery(),"                                                                                  \
	" CASE WHEN pg_is_in_recovery() THEN coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(),"                      \
	"   pg_last_wal_replay_lsn()), 0)::bigint ELSE 0 END,"                                                         \
	" CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"            \
	"   ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END,"                        \
	" CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END"

static struct backend_state *backends;
static int n_backends;
static struct event *timer;

static void mark_down(struct backend_state *b, const char *why)
{
	if (b->view.up || !b->checked)
		log_warn("backend %s (%s:%d) is down: %s", b->name, b->host, b->port, why);
	b->view.up = false;
	b->checked = true;
	b->in_flight = false;
	snprintf(b->last_error, sizeof(b->last_error), "%s", why);
	b->last_check = now_sec();
}

static void note_rotation(struct backend_state *b, bool was)
{
	bool now = backend_in_rotation(&b->view);
	if (b->view.role == VG_ROLE_PRIMARY || was == now)
		return;
	if (now)
		log_info("backend %s back in rotation (lag %lld bytes, %.1f s)", b->name, (long long)b->view.lag_bytes,
		         b->view.lag_seconds);
	else if (b->view.up)
		log_warn("backend %s out of rotation: lag %lld bytes / %.1f s (bounds %zu bytes / %.1f s)", b->name,
		         (long long)b->view.lag_bytes, b->view.lag_seconds, b->view.max_lag_bytes, b->view.max_lag_seconds);
}

static void check_result(void *arg, PGresult *res, const char *error)
{
	struct backend_state *b = arg;
	bool was = backend_in_rotation(&b->view);
	b->in_flight = false;
	if (error || !res || PQntuples(res) != 1) {
		mark_down(b, error ? error : "health check returned no row");
		note_rotation(b, was);
		return;
	}
	if (!b->view.up) {
		log_info("backend %s (%s:%d) is up", b->name, b->host, b->port);
		pools_backend_up(b->name);
	}
	b->view.up = true;
	b->checked = true;
	b->in_recovery = !strcmp(PQgetvalue(res, 0, 0), "t");
	b->view.lag_bytes = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	b->view.lag_seconds = strtod(PQgetvalue(res, 0, 2), NULL);
	b->replay_paused = !strcmp(PQgetvalue(res, 0, 3), "t");
	b->last_check = b->last_ok = now_sec();
	b->last_error[0] = 0;
	b->checks++;
	note_rotation(b, was);
}

static void send_check(struct backend_state *b)
{
	if (pg_session_query(b->session, SQL_HEALTH, 0, NULL, check_result, b) == 0) {
		b->in_flight = true;
		b->sent_at = now_sec();
	}
}

static void session_connected(void *arg, const char *error)
{
	struct backend_state *b = arg;
	if (error) {
		b->session = NULL; /* pgasync frees it after this callback */
		bool was = backend_in_rotation(&b->view);
		mark_down(b, error);
		note_rotation(b, was);
		return;
	}
	send_check(b);
}

static void session_lost(void *arg, const char *error)
{
	struct backend_state *b = arg;
	b->session = NULL;
	bool was = backend_in_rotation(&b->view);
	mark_down(b, error ? error : "connection lost");
	note_rotation(b, was);
}

static void open_session(struct backend_state *b)
{
	const struct vg_health_check *h = &vg.cfg->health;
	char port[16], timeout[16];
	snprintf(port, sizeof(port), "%d", b->port);
	snprintf(timeout, sizeof(timeout), "%d", (int)ceil(h->timeout));
	const char *kw[] = {"host", "port", "dbname", "user", "password", "application_name", "connect_timeout", NULL};
	const char *val[] = {b->host, port, h->dbname, h->user ? h->user : "postgres", h->password ? h->password : "",
	                     "vecgate health", timeout, NULL};
	b->session = pg_session_connect(vg.base, kw, val, h->timeout, session_connected, session_lost, b);
	if (!b->session)
		mark_down(b, "cannot start a connection");
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = now_sec();
	for (int i = 0; i < n_backends; i++) {
		struct backend_state *b = &backends[i];
		if (!b->session) {
			open_session(b);
			continue;
		}
		if (b->in_flight) {
			if (now - b->sent_at > vg.cfg->health.timeout) {
				bool was = backend_in_rotation(&b->view);
				pg_session_close(b->session);
				b->session = NULL;
				mark_down(b, "health check timed out");
				note_rotation(b, was);
			}
			continue;
		}
		if (pg_session_connected(b->session))
			send_check(b);
	}
}

static void stop_all(void)
{
	for (int i = 0; i < n_backends; i++) {
		pg_session_close(backends[i].session);
		free(backends[i].name);
		free(backends[i].host);
		free(backends[i].serves);
	}
	free(backends);
	backends = NULL;
	n_backends = 0;
}

static void start_all(void)
{
	const struct vg_config *cfg = vg.cfg;
	backends = calloc(cfg->n_backends, sizeof(*backends));
	if (!backends)
		return;
	for (size_t i = 0; i < cfg->n_backends; i++) {
		const struct vg_backend *be = &cfg->backends[i];
		struct backend_state *b = &backends[n_backends++];
		b->name = strdup(be->name);
		b->host = strdup(be->host);
		b->serves = be->serves ? strdup(be->serves) : NULL;
		b->port = be->port;
		b->view.role = be->role;
		b->view.max_lag_bytes = be->max_lag_bytes;
		b->view.max_lag_seconds = be->max_lag_seconds;
	}
	double iv = cfg->health.interval;
	struct timeval tv = {(long)iv, (long)((iv - (long)iv) * 1e6)};
	if (!timer)
		timer = event_new(vg.base, -1, EV_PERSIST, tick, NULL);
	event_add(timer, &tv);
	tick(-1, 0, NULL);
}

void backends_start(void)
{
	start_all();
}

void backends_stop(void)
{
	stop_all();
	if (timer)
		event_free(timer);
	timer = NULL;
}

/* Same backends (names, addresses, roles): keep sessions and counters, take
 * the new bounds.  Anything else: start over. */
void backends_reload(void)
{
	const struct vg_config *cfg = vg.cfg;
	bool same = (size_t)n_backends == cfg->n_backends;
	for (int i = 0; same && i < n_backends; i++) {
		const struct vg_backend *be = &cfg->backends[i];
		same = !strcmp(be->name, backends[i].name) && !strcmp(be->host, backends[i].host) &&
		       be->port == backends[i].port && be->role == backends[i].view.role &&
		       !be->serves == !backends[i].serves && (!be->serves || !strcmp(be->serves, backends[i].serves));
	}
	if (!same) {
		log_info("backends changed: restarting health checks");
		stop_all();
		start_all();
		return;
	}
	for (int i = 0; i < n_backends; i++) {
		backends[i].view.max_lag_bytes = cfg->backends[i].max_lag_bytes;
		backends[i].view.max_lag_seconds = cfg->backends[i].max_lag_seconds;
	}
	double iv = cfg->health.interval;
	struct timeval tv = {(long)iv, (long)((iv - (long)iv) * 1e6)};
	event_add(timer, &tv);
}

struct backend_state *backend_find(const char *name)
{
	for (int i = 0; i < n_backends; i++)
		if (!strcmp(backends[i].name, name))
			return &backends[i];
	return NULL;
}

int backends_serving(const char *primary, struct backend_state **out, struct backend_view *views, int max)
{
	int n = 0;
	for (int i = 0; i < n_backends && n < max; i++) {
		if (!backends[i].serves || strcmp(backends[i].serves, primary))
			continue;
		out[n] = &backends[i];
		views[n] = backends[i].view;
		n++;
	}
	return n;
}

static const char *status_of(const struct backend_state *b)
{
	if (!b->checked)
		return "unknown";
	if (!b->view.up)
		return "down";
	return backend_in_rotation(&b->view) ? "up" : "lagging";
}

void backends_json(struct json *j, const char *key)
{
	double now = now_sec();
	json_arr_begin(j, key);
	for (int i = 0; i < n_backends; i++) {
		const struct backend_state *b = &backends[i];
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
		json_str(j, "last_error", b->last_error[0] ? b->last_error : NULL);
		json_int(j, "routed_reads", (long long)b->routed_reads);
		json_int(j, "replayed_reads", (long long)b->replayed_reads);
		json_obj_end(j);
	}
	json_arr_end(j);
}

void backends_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP vecgate_backend_up Last health check answered (1) or not (0).\n"
	                         "# TYPE vecgate_backend_up gauge\n");
	for (int i = 0; i < n_backends; i++)
		evbuffer_add_printf(out, "vecgate_backend_up{backend=\"%s\",role=\"%s\"} %d\n", backends[i].name,
		                    config_role_name(backends[i].view.role), backends[i].view.up);
	evbuffer_add_printf(out, "# HELP vecgate_backend_in_rotation Backend may take routed vector reads.\n"
	                         "# TYPE vecgate_backend_in_rotation gauge\n");
	for (int i = 0; i < n_backends; i++)
		evbuffer_add_printf(out, "vecgate_backend_in_rotation{backend=\"%s\",role=\"%s\"} %d\n", backends[i].name,
		                    config_role_name(backends[i].view.role), backend_in_rotation(&backends[i].view));
	evbuffer_add_printf(out, "# HELP vecgate_replica_lag_bytes WAL received but not replayed, from the replica.\n"
	                         "# TYPE vecgate_replica_lag_bytes gauge\n"
	                         "# HELP vecgate_replica_lag_seconds Age of the last replayed transaction while behind.\n"
	                         "# TYPE vecgate_replica_lag_seconds gauge\n");
	for (int i = 0; i < n_backends; i++) {
		if (backends[i].view.role != VG_ROLE_REPLICA)
			continue;
		evbuffer_add_printf(out,
		                    "vecgate_replica_lag_bytes{backend=\"%s\"} %lld\n"
		                    "vecgate_replica_lag_seconds{backend=\"%s\"} %.3f\n",
		                    backends[i].name, (long long)backends[i].view.lag_bytes, backends[i].name,
		                    backends[i].view.lag_seconds);
	}
	evbuffer_add_printf(out, "# HELP vecgate_backend_reads_total Vector reads routed to a backend.\n"
	                         "# TYPE vecgate_backend_reads_total counter\n"
	                         "# HELP vecgate_backend_replays_total Routed reads re-run on the primary after this "
	                         "backend failed them.\n# TYPE vecgate_backend_replays_total counter\n");
	for (int i = 0; i < n_backends; i++)
		evbuffer_add_printf(out,
		                    "vecgate_backend_reads_total{backend=\"%s\"} %llu\n"
		                    "vecgate_backend_replays_total{backend=\"%s\"} %llu\n",
		                    backends[i].name, (unsigned long long)backends[i].routed_reads, backends[i].name,
		                    (unsigned long long)backends[i].replayed_reads);
}
