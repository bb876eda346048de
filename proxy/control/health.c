/*
 * Backend health: one libpq session per configured backend, checked every
 * health_check.interval on the event loop.  A check reports whether the
 * server answers, whether it is in recovery, and a replica's own view of its
 * lag (WAL received but not replayed, in bytes, and the age of the last
 * replayed transaction while it is behind).  Routing reads the resulting
 * backend_view snapshots; a replica that is down, lags beyond its bounds or
 * has been promoted (out of recovery) is out of rotation until a later
 * check finds it a healthy replica again.
 */
#include "proxy/control/health.h"
#include "proxy/backend_table.h"
#include "proxy/pool.h"
#include "proxy/route_table.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/pgconn_params.h"

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

static struct event *timer;
static struct quiet_pace pace;

bool quiet_pace_rest(struct quiet_pace *p, double now)
{
	bool quiet = vg_now == p->data_seen && !routes_read_off_primary();
	p->data_seen = vg_now;
	if (quiet && now - p->last_round < vg.cfg->health.quiet_interval)
		return true;
	p->last_round = now;
	return false;
}

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
	else if (b->view.up && !b->view.promoted) /* a promotion is logged as such */
		log_warn("backend %s out of rotation: lag %lld bytes / %.1f s (bounds %zu bytes / %.1f s)", b->name,
		         (long long)b->view.lag_bytes, b->view.lag_seconds, b->view.max_lag_bytes, b->view.max_lag_seconds);
}

/* A replica the check finds out of recovery has been promoted: its reads
 * would no longer be its primary's (it may be the new primary itself), so
 * it leaves the rotation, and comes back if a later check finds it in
 * recovery again (rebuilt as a replica).  Logged once each way. */
static void note_promotion(struct backend_state *b)
{
	bool promoted = b->view.role == VG_ROLE_REPLICA && !b->in_recovery;
	if (promoted == b->view.promoted)
		return;
	b->view.promoted = promoted;
	if (promoted)
		log_warn("backend %s (%s:%d), a replica, is out of recovery (promoted): no vector reads go there while it is",
		         b->name, b->host, b->port);
	else
		log_info("backend %s (%s:%d) is in recovery again: a replica", b->name, b->host, b->port);
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
	note_promotion(b);
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
	const char *kw[7 + PGCONN_TLS_MAX + 1] = {"host", "port", "dbname", "user", "password", "application_name",
	                                          "connect_timeout"};
	const char *val[7 + PGCONN_TLS_MAX + 1] = {b->host, port, h->dbname, h->user,
	                                           h->password ? h->password : "", "vecgate health", timeout};
	pgconn_add_tls(&vg.cfg->server_tls, b->host, kw, val, 7, sizeof(kw) / sizeof(*kw));
	b->session = pg_session_connect(vg.base, kw, val, h->timeout, session_connected, session_lost, b);
	if (!b->session)
		mark_down(b, pg_session_connect_error());
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = now_sec();
	const struct vg_health_check *h = &vg.cfg->health;
	if (!h->user)
		return; /* not configured: no guessed logins (replicas and fallbacks require it) */
	/* a check every interval matters while clients talk (a lagging replica
	 * serves at most that long) or reads leave the primary; with neither,
	 * a check costs more than everything else an idle vecgate does */
	bool rest = quiet_pace_rest(&pace, now);
	for (int i = 0; i < backend_count(); i++) {
		struct backend_state *b = backend_at(i);
		if (!b->session) {
			if (!rest)
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
		if (!rest && pg_session_connected(b->session))
			send_check(b);
	}
}

static void close_sessions(void)
{
	for (int i = 0; i < backend_count(); i++) {
		struct backend_state *b = backend_at(i);
		pg_session_close(b->session);
		b->session = NULL;
	}
}

static void arm_timer(void)
{
	struct timeval tv = timeval_of(vg.cfg->health.interval);
	if (!timer)
		timer = event_new(vg.base, -1, EV_PERSIST, tick, NULL);
	if (vg.cfg->health.user)
		event_add(timer, &tv);
	else
		event_del(timer); /* nothing to check until a reload names a user */
}

void health_start(void)
{
	if (!vg.cfg->health.user)
		log_info("health checks are off (no health_check.user): backends are not probed");
	backend_table_build();
	arm_timer();
	tick(-1, 0, NULL);
}

void health_stop(void)
{
	close_sessions();
	backend_table_free();
	if (timer)
		event_free(timer);
	timer = NULL;
}

/* Same backends (names, addresses, roles): keep sessions and counters, take
 * the new bounds.  Anything else: start over. */
void health_reload(void)
{
	if (backend_table_matches_config()) {
		backend_table_take_bounds();
		arm_timer();
		return;
	}
	log_info("backends changed: restarting health checks");
	close_sessions();
	backend_table_build();
	arm_timer();
	tick(-1, 0, NULL);
}
