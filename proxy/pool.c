/*
 * Pools: one per (database, user) pair, holding that pair's server
 * connections.  Hands idle servers to clients (most recently used first, so
 * surplus connections age out), queues clients when every server is busy,
 * opens connections up to pool_size, resets servers that come back, and runs
 * the periodic janitor for every timeout.
 */
#include "proxy/pool.h"
#include "proxy/backend_table.h"
#include "proxy/client.h"
#include "proxy/read_route.h"
#include "proxy/server.h"
#include "protocol/md5auth.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static bool is_plaintext(const char *secret)
{
	return secret && !md5_is_stored(secret) && strncmp(secret, "SCRAM-SHA-256$", 14) != 0;
}

static void pool_set_credentials(struct pool *p, const struct vg_database *db, const struct vg_user *u,
                                 const char *authq_secret)
{
	free(p->be_password);
	free(p->be_md5);
	p->be_password = p->be_md5 = NULL;
	if (db->user) {
		p->be_password = dup_or_null(db->password);
		return;
	}
	if (u && u->server_password)
		p->be_password = strdup(u->server_password);
	else if (u && is_plaintext(u->password))
		p->be_password = strdup(u->password);
	else if (u && md5_is_stored(u->password))
		p->be_md5 = strdup(u->password);
	else if (!u && authq_secret && md5_is_stored(authq_secret))
		p->be_md5 = strdup(authq_secret);
}

/* A reload made the pool read-write: what it pooled before was never
 * asked (nor were its sessions' hints heeded), so idle sessions close and
 * the ones in use are checked as they come back (pool_server_available). */
static void pool_start_writable_only(struct pool *p)
{
	struct server_conn *s, *tmp;
	TAILQ_FOREACH_SAFE(s, &p->servers, link, tmp) {
		if (s->state == SV_IDLE)
			server_close(s, "target_session_attrs is read-write now");
		else if (s->state != SV_CLOSING && s->rw == SRW_WRITABLE)
			server_rw_set(s, SRW_SUSPECT);
	}
}

static void pool_set_limits(struct pool *p, const struct vg_database *db)
{
	p->mode = db->pool_mode;
	p->pool_size = db->pool_size > 0 ? db->pool_size : 1;
	p->min_pool_size = db->min_pool_size;
	p->max_db_connections = db->max_db_connections;
	const struct vg_backend *be = config_find_backend(vg.cfg, p->be_name);
	enum vg_session_attrs was = p->session_attrs;
	p->session_attrs = be ? be->target_session_attrs : VG_TSA_ANY;
	if (was == VG_TSA_ANY && pool_writable_only(p))
		pool_start_writable_only(p);
}

/* A pool for (db_name, user) on backend `be`, linked into vg.pools, with
 * its own statement registry (a routed sibling points at its family's). */
static struct pool *pool_new(const char *db_name, const char *user, const char *be_dbname, const char *be_user,
                             const struct vg_backend *be)
{
	struct pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	TAILQ_INIT(&p->servers);
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->waiting);
	TAILQ_INIT(&p->welcome);
	p->db_name = strdup(db_name);
	p->user = strdup(user);
	p->be_dbname = strdup(be_dbname);
	p->be_user = strdup(be_user);
	p->be_host = strdup(be->host);
	p->be_port = be->port;
	p->be_name = strdup(be->name);
	p->session_attrs = VG_TSA_ANY; /* routed siblings: vector reads; client pools: pool_set_limits says */
	p->reg = &p->registry;
	p->registry.dbname = p->be_dbname;
	p->next = vg.pools;
	vg.pools = p;
	return p;
}

struct pool *pool_find_or_create(const struct vg_database *db, const char *dbname, const char *user,
                                 struct client_conn *c)
{
	for (struct pool *p = vg.pools; p; p = p->next)
		if (!p->family && !strcmp(p->db_name, dbname) && !strcmp(p->user, user))
			return p;
	const struct vg_backend *be = config_find_backend(vg.cfg, db->backend ? db->backend : "primary");
	if (!be)
		return NULL;
	struct pool *p = pool_new(dbname, user, db->dbname && strcmp(db->dbname, "*") ? db->dbname : dbname,
	                          db->user ? db->user : user, be);
	if (!p)
		return NULL;
	pool_set_credentials(p, db, config_find_user(vg.cfg, user), c && c->login ? c->login->authq_secret : NULL);
	pool_set_limits(p, db);
	log_debug("new pool %s/%s -> %s@%s:%d/%s (%s, size %d)", dbname, user, p->be_user, p->be_host,
	          p->be_port, p->be_dbname, config_pool_mode_name(p->mode), p->pool_size);
	return p;
}

static void copy_if_changed(char **dst, const char *src)
{
	if (!*dst != !src || (src && strcmp(*dst, src))) {
		free(*dst);
		*dst = dup_or_null(src);
	}
}

struct pool *pool_sibling(struct pool *p, const char *backend_name)
{
	assert(!p->family);
	struct pool *q;
	for (q = vg.pools; q; q = q->next)
		if (q->family == p && !strcmp(q->be_name, backend_name))
			break;
	if (!q) {
		const struct vg_backend *be = config_find_backend(vg.cfg, backend_name);
		if (!be || !(q = pool_new(p->db_name, p->user, p->be_dbname, p->be_user, be)))
			return NULL;
		q->family = p;
		q->reg = p->reg;
		q->welcome_ready = true; /* clients log in through the client pool */
		log_info("routing: new pool %s/%s on backend %s (%s:%d)", q->db_name, q->user, q->be_name, q->be_host,
		         q->be_port);
	}
	/* credentials and limits follow the client pool (reloads, SCRAM keys) */
	copy_if_changed(&q->be_password, p->be_password);
	copy_if_changed(&q->be_md5, p->be_md5);
	if (p->have_scram_keys && !q->have_scram_keys) {
		memcpy(q->scram_client_key, p->scram_client_key, SCRAM_KEY_LEN);
		memcpy(q->scram_server_key, p->scram_server_key, SCRAM_KEY_LEN);
		q->have_scram_keys = true;
	}
	q->mode = p->mode;
	q->pool_size = p->pool_size;
	q->min_pool_size = 0;
	q->max_db_connections = p->max_db_connections;
	return q;
}

static int db_connections(const struct pool *p)
{
	int n = 0;
	for (struct pool *q = vg.pools; q; q = q->next)
		if (!strcmp(q->be_dbname, p->be_dbname) && !strcmp(q->be_host, p->be_host) && q->be_port == p->be_port)
			n += q->n_servers;
	return n;
}

/* ---- logins after failures ----
 * A backend that refuses logins (restarting, in recovery, out of
 * connection slots) gets one login attempt at a time, each after a backoff
 * that starts at LOGIN_BACKOFF_MIN and doubles up to server_login_retry,
 * jittered by +-25% so that pools and instances do not retry in step.
 * Clients keep waiting (within query_wait) and are served by the first login
 * that works; only a permanent refusal (password, database, privileges)
 * fails them at once. */
#define LOGIN_BACKOFF_MIN 0.025

static double login_backoff(int failures)
{
	double cap = vg.cfg->timeouts.server_login_retry > LOGIN_BACKOFF_MIN ? vg.cfg->timeouts.server_login_retry
	                                                                     : LOGIN_BACKOFF_MIN;
	double d = LOGIN_BACKOFF_MIN;
	for (int i = 1; i < failures && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	uint32_t r;
	random_bytes(&r, sizeof(r));
	return d * (0.75 + 0.5 * (double)r / 4294967295.0);
}

/* Failing logins a client should hear about at once rather than wait out. */
static bool login_error_permanent(const char *sqlstate)
{
	return sqlstate && (!strncmp(sqlstate, "28", 2) || !strcmp(sqlstate, "3D000") || !strncmp(sqlstate, "42", 2));
}

/* Not now: a failing backend takes one login at a time, after its backoff. */
static bool login_allowed(const struct pool *p, double now)
{
	return p->login_failures == 0 || (p->n_connecting == 0 && now >= p->next_login_at);
}

static bool failing(const struct pool *p)
{
	return p->login_failures > 0 && p->n_servers - p->n_connecting <= 0;
}

static void login_timer_cb(evutil_socket_t fd, short what, void *arg);

static void arm_login_timer(struct pool *p, double now)
{
	if (!p->login_timer && !(p->login_timer = evtimer_new(vg.base, login_timer_cb, p)))
		return;
	struct timeval tv = timeval_of(p->next_login_at > now ? p->next_login_at - now : 0);
	evtimer_add(p->login_timer, &tv);
}

void pools_backend_up(const char *backend_name)
{
	double now = now_sec();
	for (struct pool *p = vg.pools; p; p = p->next) {
		if (!p->family || strcmp(p->be_name, backend_name) || !p->login_failures)
			continue;
		/* a health check just logged in there: logins work again */
		p->login_failures = 0;
		p->next_login_at = now;
		if (!TAILQ_EMPTY(&p->waiting))
			arm_login_timer(p, now);
	}
}

/* May a routed read try this sibling now?  Not while its logins fail,
 * except as the probe once its backoff is over (a failed probe is replayed
 * on the primary). */
bool pool_usable(const struct pool *p)
{
	return !failing(p) || (p->n_connecting == 0 && now_sec() >= p->next_login_at);
}

static bool may_launch(const struct pool *p, double now)
{
	if (p->n_servers >= p->pool_size)
		return false;
	if (p->max_db_connections > 0 && db_connections(p) >= p->max_db_connections)
		return false;
	/* the backend ran out of slots at held_limit: grow one probe at a time */
	if (p->held_limit && p->n_servers >= p->held_limit && (p->n_connecting > 0 || now < p->next_login_at))
		return false;
	return true;
}

static int count_waiting(const struct pool *p)
{
	int n = 0;
	struct client_conn *c;
	TAILQ_FOREACH(c, &p->waiting, pool_link)
		n++;
	return n;
}

/* Open servers for queued clients, as many as the pool allows (one at a
 * time while logins fail). */
static void launch_for_waiters(struct pool *p)
{
	double now = now_sec();
	if (!login_allowed(p, now)) {
		if (p->n_connecting == 0)
			arm_login_timer(p, now);
		return;
	}
	int want = count_waiting(p) + (TAILQ_EMPTY(&p->welcome) ? 0 : 1);
	if (p->login_failures && want > 1)
		want = 1;
	while (p->n_connecting < want && may_launch(p, now)) {
		if (!server_new(p))
			break;
	}
	if (p->n_connecting == 0 && want > 0 && (p->login_failures || p->held_limit))
		arm_login_timer(p, now); /* held back by the limit: try again later */
}

static void login_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pool *p = arg;
	if (!vg.shutting_down)
		launch_for_waiters(p);
}

static void fail_client_with_login_error(struct pool *p, struct client_conn *c)
{
	if (p->last_login_error) {
		io_write(&c->io, p->last_login_error, p->last_login_error_len);
		client_close(c, "server login failed");
	} else {
		client_fatal(c, "08006", "could not log in to the backend server", NULL);
	}
}

void pool_client_login(struct pool *p, struct client_conn *c)
{
	if (p->welcome_ready) {
		client_login_done(c);
		return;
	}
	if (failing(p) && p->login_error_permanent && (p->permanent_until == 0 || now_sec() < p->permanent_until)) {
		fail_client_with_login_error(p, c);
		return;
	}
	c->state = CL_WAIT_WELCOME;
	c->wait_start = now_sec();
	janitor_hurry(); /* query_wait runs from now */
	TAILQ_INSERT_TAIL(&p->welcome, c, pool_link);
	c->in_pool_queue = true;
	c->wait_pool = p;
	if (p->n_connecting == 0 && TAILQ_EMPTY(&p->idle))
		launch_for_waiters(p);
}

bool pool_checkout(struct pool *p, struct client_conn *c)
{
	struct server_conn *s = TAILQ_FIRST(&p->idle);
	if (s) {
		TAILQ_REMOVE(&p->idle, s, idle_link);
		s->in_idle = false;
		server_link(s, c);
		c->state = CL_ACTIVE;
		return true;
	}
	c->state = CL_WAITING;
	c->wait_start = now_sec();
	janitor_hurry(); /* query_wait runs from now */
	TAILQ_INSERT_TAIL(&p->waiting, c, pool_link);
	c->in_pool_queue = true;
	c->wait_pool = p;
	launch_for_waiters(p);
	return false;
}

void pool_dequeue(struct client_conn *c)
{
	assert(c->in_pool_queue && c->wait_pool);
	if (c->state == CL_WAIT_WELCOME)
		TAILQ_REMOVE(&c->wait_pool->welcome, c, pool_link);
	else
		TAILQ_REMOVE(&c->wait_pool->waiting, c, pool_link);
	c->in_pool_queue = false;
}

void pool_server_available(struct server_conn *s)
{
	struct pool *p = s->pool;
	assert(!s->client);
	/* every way back into the pool (login, transaction end, reset done)
	 * passes here: a read-write pool pools writable sessions only */
	if (pool_writable_only(p)) {
		switch (s->rw) {
		case SRW_STANDBY:
		case SRW_READ_ONLY:
			server_close(s, "the backend is read-only: not pooled");
			return;
		case SRW_UNKNOWN: /* pooled while the pool took any session (before a reload) */
		case SRW_SUSPECT:
			server_check_role(s); /* pooled (or closed) once answered */
			s->state = SV_RESET;
			return;
		case SRW_CHECKING:
		case SRW_WRITABLE:
			break;
		}
		assert(s->rw == SRW_WRITABLE);
	}
	s->last_used = now_cached(); /* the read event's time: idle timeouts are coarse */
	struct client_conn *c = TAILQ_FIRST(&p->waiting);
	if (c) {
		TAILQ_REMOVE(&p->waiting, c, pool_link);
		c->in_pool_queue = false;
		server_link(s, c);
		client_linked(c);
		return;
	}
	s->state = SV_IDLE;
	if (p->n_servers > p->pool_size) {
		/* the pool shrank on reload */
		server_close(s, "pool_size reduced");
		return;
	}
	TAILQ_INSERT_HEAD(&p->idle, s, idle_link);
	s->in_idle = true;
}

void pool_release(struct server_conn *s)
{
	struct pool *p = s->pool;
	const char *reset = vg.cfg->pool.server_reset_query;
	bool need_reset = reset && reset[0] &&
	                  (p->mode == VG_POOL_SESSION || vg.cfg->pool.server_reset_query_always);
	if (need_reset) {
		server_send_internal(s, reset);
		/* DISCARD ALL forgets prepared statements and SETs alike */
		id_set_clear(&s->prepared);
		varcache_copy(&s->vars, &s->login_vars);
	}
	if (s->close_needed) {
		server_close(s, "server is not reusable");
		return;
	}
	if (s->pending.count > 0) {
		s->state = SV_RESET;
		return;
	}
	pool_server_available(s);
}

void pool_server_login_ok(struct server_conn *s)
{
	struct pool *p = s->pool;
	double now = now_sec();
	assert(!pool_writable_only(p) || s->rw == SRW_WRITABLE);
	/* refusals of read-only sessions are the backend's failover, logged there */
	if (p->login_failures > p->readonly_refusals)
		log_info("backend %s (%s:%d): logins work again after %d failed attempts in %.1f s", p->be_name, p->be_host,
		         p->be_port, p->login_failures, now - p->failing_since);
	if (pool_writable_only(p))
		backend_write_seen(p->be_name, BW_WRITABLE, "a writable session logged in");
	p->readonly_refusals = 0;
	p->n_ro_addrs = 0;
	if (p->held_limit && p->n_servers > p->held_limit) {
		p->held_limit = p->n_servers; /* the growth probe got a slot */
		p->next_login_at = now + login_backoff(1);
	}
	p->login_failures = 0;
	p->login_error_permanent = false;
	p->permanent_until = 0;
	free(p->last_login_error);
	p->last_login_error = NULL;
	if (!p->welcome_ready) {
		p->welcome_names = calloc((size_t)s->n_ps + 1, sizeof(char *));
		p->welcome_values = calloc((size_t)s->n_ps + 1, sizeof(char *));
		if (p->welcome_names && p->welcome_values) {
			for (int i = 0; i < s->n_ps; i++) {
				p->welcome_names[i] = strdup(s->ps_names[i]);
				p->welcome_values[i] = strdup(s->ps_values[i]);
			}
			p->n_welcome = s->n_ps;
			p->welcome_ready = true;
		}
	}
	pool_server_available(s);
	/* finish logins only now: their first query may take this server */
	struct client_conn *c;
	while (p->welcome_ready && (c = TAILQ_FIRST(&p->welcome))) {
		TAILQ_REMOVE(&p->welcome, c, pool_link);
		c->in_pool_queue = false;
		client_login_done(c);
	}
}

/* A connection failure (nothing answered, or only "starting up / shutting
 * down"): for a primary's failover log, the server is unreachable. */
static bool login_unreachable(const char *sqlstate, bool transient)
{
	return sqlstate ? !strcmp(sqlstate, "57P03") || !strcmp(sqlstate, "57P01") : transient;
}

/* A login did not give the pool a server (err_msg: the backend's
 * ErrorResponse, else `text` becomes one): back off, keep the error for
 * the clients, and fail them now when waiting cannot help.  `until`: a
 * permanent failure holds until then (0: for good). */
static void login_setback(struct pool *p, const struct pg_error_fields *ef, const uint8_t *err_msg, size_t len,
                          const char *text, bool transient, double until)
{
	double now = now_sec();
	if (p->login_failures++ == 0)
		p->failing_since = now;
	p->login_error_permanent = ef->sqlstate ? login_error_permanent(ef->sqlstate) : !transient;
	p->permanent_until = until;
	p->next_login_at = now + login_backoff(p->login_failures);
	if (ef->sqlstate && !strcmp(ef->sqlstate, "53300")) {
		/* out of connection slots: this pool holds what the backend can give */
		int held = p->n_servers - p->n_connecting;
		p->held_limit = held > 0 ? held : 1;
	}
	free(p->last_login_error);
	p->last_login_error = NULL;
	struct pg_buf b;
	buf_init(&b);
	if (err_msg && len) {
		buf_put_bytes(&b, err_msg, len);
	} else {
		char msg[400];
		snprintf(msg, sizeof(msg), "vecgate could not connect to the server: %s", text);
		build_error(&b, "FATAL", "08006", msg, NULL, NULL);
	}
	if (!b.oom) {
		p->last_login_error = malloc(b.len);
		if (p->last_login_error) {
			memcpy(p->last_login_error, b.data, b.len);
			p->last_login_error_len = b.len;
		}
	}
	buf_free(&b);
	/* The failing server is still counted in n_servers and n_connecting.
	 * While another server is logged in, queued clients will be served;
	 * a transient failure (restart, recovery, no slots) is waited out by
	 * the clients, within query_wait; a permanent one is told at once. */
	if (p->n_servers - p->n_connecting > 0)
		return;
	if (!p->login_error_permanent) {
		if (!TAILQ_EMPTY(&p->waiting) || !TAILQ_EMPTY(&p->welcome))
			arm_login_timer(p, now);
		if (!p->family)
			return;
	}
	struct client_conn *c;
	if (p->family) {
		/* a routed read never fails for a replica's sake: the primary takes it */
		while ((c = TAILQ_FIRST(&p->waiting))) {
			TAILQ_REMOVE(&p->waiting, c, pool_link);
			c->in_pool_queue = false;
			client_replay_on_primary(c, text);
		}
		return;
	}
	while ((c = TAILQ_FIRST(&p->welcome))) {
		TAILQ_REMOVE(&p->welcome, c, pool_link);
		c->in_pool_queue = false;
		fail_client_with_login_error(p, c);
	}
	while ((c = TAILQ_FIRST(&p->waiting))) {
		TAILQ_REMOVE(&p->waiting, c, pool_link);
		c->in_pool_queue = false;
		fail_client_with_login_error(p, c);
	}
}

void pool_server_login_failed(struct pool *p, const uint8_t *err_msg, size_t len, const char *text, bool transient)
{
	struct pg_error_fields ef = {0};
	if (err_msg && len > PG_HDR_LEN)
		parse_error_fields(err_msg + PG_HDR_LEN, len - PG_HDR_LEN, &ef);
	if (p->login_failures == 0)
		log_warn("backend %s (%s:%d): login as %s failed: %s; retrying with backoff (up to %.1f s apart)",
		         p->be_name, p->be_host, p->be_port, p->be_user, text, vg.cfg->timeouts.server_login_retry);
	if (pool_writable_only(p) && login_unreachable(ef.sqlstate, transient))
		backend_write_seen(p->be_name, BW_UNREACHABLE, text);
	login_setback(p, &ef, err_msg, len, text, transient, 0);
}

void pool_server_unresolved(struct pool *p, const char *text)
{
	/* clients hear it now rather than after query_wait: a name that does
	 * not resolve will not start resolving within a login backoff; the
	 * pool asks again once the resolver would (dns.nxdomain_ttl); the
	 * resolver logged it */
	struct pg_error_fields ef = {0};
	login_setback(p, &ef, NULL, 0, text, false, now_sec() + vg.cfg->dns.nxdomain_ttl);
}

/* Every read-write pool on backend `be_name`: idle sessions close now,
 * sessions with a client close once its transaction ends (the client gets
 * whatever the server answers until then, unchanged). */
static void pools_unwritable(const char *be_name, enum server_rw rw)
{
	for (struct pool *p = vg.pools; p; p = p->next) {
		if (!pool_writable_only(p) || strcmp(p->be_name, be_name))
			continue;
		struct server_conn *s, *tmp;
		TAILQ_FOREACH_SAFE(s, &p->servers, link, tmp) {
			if (s->state == SV_IDLE)
				server_close(s, "the backend is read-only now");
			else if (s->state != SV_CLOSING && (s->rw == SRW_WRITABLE || s->rw == SRW_SUSPECT))
				server_rw_set(s, rw);
		}
	}
}

void pool_server_read_only(struct server_conn *s)
{
	struct pool *p = s->pool;
	assert(pool_writable_only(p) && (s->rw == SRW_STANDBY || s->rw == SRW_READ_ONLY));
	bool standby = s->rw == SRW_STANDBY;
	const char *why = standby ? "a hot standby, in recovery" : "default_transaction_read_only is on";
	struct backend_state *be = backend_find(p->be_name);
	if (be)
		be->readonly_refused++;
	backend_write_seen(p->be_name, standby ? BW_STANDBY : BW_READ_ONLY, why);
	/* waiting helps (a promotion, a restart, a reload): the clients wait
	 * within query_wait, then get this */
	char msg[400];
	snprintf(msg, sizeof(msg),
	         "backend %s (%s:%d) is read-only (%s); no writable server answered within timeouts.query_wait",
	         p->be_name, p->be_host, p->be_port, why);
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, "FATAL", "08006", msg, NULL,
	            "vecgate pools only writable sessions of this backend (its target_session_attrs is read-write)");
	struct pg_error_fields ef = {.sqlstate = "08006"};
	p->readonly_refusals++;
	login_setback(p, &ef, b.oom ? NULL : b.data, b.oom ? 0 : b.len, msg, true, 0);
	/* a name that lists other addresses (the old primary, read-only now,
	 * listed before the new one): the next connect goes to the next one,
	 * at once while it serves one not refused in this episode (a name whose
	 * every address is read-only backs off as usual) */
	resolver_connect_failed(p->be_host, (struct sockaddr *)&s->addr);
	int i = 0;
	while (i < p->n_ro_addrs && memcmp(&p->ro_addrs[i], &s->addr, sizeof(s->addr)))
		i++;
	if (i == p->n_ro_addrs && p->n_ro_addrs < (int)(sizeof(p->ro_addrs) / sizeof(*p->ro_addrs)))
		p->ro_addrs[p->n_ro_addrs++] = s->addr;
	if (resolver_serves_other(p->be_host, p->ro_addrs, p->n_ro_addrs)) {
		p->next_login_at = now_sec();
		if (!TAILQ_EMPTY(&p->waiting) || !TAILQ_EMPTY(&p->welcome))
			arm_login_timer(p, p->next_login_at);
	}
	buf_free(&b);
	pools_unwritable(p->be_name, s->rw);
}

void pool_server_gone(struct server_conn *s)
{
	struct pool *p = s->pool;
	if (s->in_idle) {
		TAILQ_REMOVE(&p->idle, s, idle_link);
		s->in_idle = false;
	}
	TAILQ_REMOVE(&p->servers, s, link);
	p->n_servers--;
	if (!TAILQ_EMPTY(&p->waiting) && !vg.shutting_down)
		launch_for_waiters(p);
}

bool pool_has_credentials(const struct pool *p)
{
	return p->be_password || p->be_md5 || p->have_scram_keys;
}

void pools_apply_config(void)
{
	for (struct pool *p = vg.pools; p; p = p->next) {
		const struct vg_database *db = config_find_database(vg.cfg, p->db_name);
		if (!db || p->family)
			continue; /* removed: existing clients finish on what they have; siblings follow at use */
		enum vg_pool_mode old = p->mode;
		pool_set_limits(p, db);
		if (p->n_clients > 0 && old != p->mode) {
			log_warn("pool %s/%s: pool_mode change applies once its clients have left", p->db_name, p->user);
			p->mode = old;
		}
		const struct vg_user *u = config_find_user(vg.cfg, p->user);
		if (u || db->user)
			pool_set_credentials(p, db, u, NULL);
	}
}

/* The janitor's pace: every 200 ms while a deadline that close may run out
 * (a login, a client waiting for a server, a connect in progress, a pool
 * below its minimum), else once a second, as PgBouncer's maintenance runs a
 * few times a second: an idle pooler mostly sleeps.  Whatever starts such a
 * deadline calls janitor_hurry. */
#define JANITOR_FAST 0.2
#define JANITOR_CALM 1.0
static bool janitor_calm;

static void janitor_arm(bool calm)
{
	janitor_calm = calm;
	if (!vg.janitor)
		return;
	struct timeval tv = timeval_of(calm ? JANITOR_CALM : JANITOR_FAST);
	event_add(vg.janitor, &tv);
}

void janitor_start(void)
{
	janitor_arm(false); /* fast until a pass finds nothing due */
}

void janitor_hurry(void)
{
	if (janitor_calm)
		janitor_arm(false);
}

void janitor_pace(bool busy)
{
	if (busy == janitor_calm) /* busy and calm, or calm enough and fast */
		janitor_arm(!busy);
}

bool pool_janitor(double now)
{
	const struct vg_timeouts *t = &vg.cfg->timeouts;
	bool busy = false;
	struct client_conn *c, *ctmp;
	TAILQ_FOREACH_SAFE(c, &vg.clients, link, ctmp) {
		if (c->state < CL_IDLE || c->state == CL_WAITING)
			busy = true;
		if (c->state < CL_WAIT_WELCOME && t->client_login > 0 && now - c->connect_time > t->client_login) {
			if (c->state == CL_STARTUP)
				client_close(c, "client_login_timeout (startup packet not received in time)");
			else
				client_fatal(c, "08P01", "client_login_timeout", "login did not complete within timeouts.client_login");
		} else if ((c->state == CL_WAITING || c->state == CL_WAIT_WELCOME) && t->query_wait > 0 &&
		           now - c->wait_start > t->query_wait) {
			struct pool *wp = c->wait_pool ? c->wait_pool : c->pool;
			if (wp && failing(wp) && wp->last_login_error) {
				pool_dequeue(c);
				fail_client_with_login_error(wp, c); /* the backend's own words */
			} else {
				client_fatal(c, "08P01", "query_wait_timeout",
				             "no server connection became free within timeouts.query_wait");
			}
		} else if (c->state == CL_IDLE && t->client_idle > 0 && now - c->last_active > t->client_idle) {
			client_fatal(c, "08P01", "client_idle_timeout", NULL);
		}
	}
	for (struct pool *p = vg.pools; p; p = p->next) {
		struct server_conn *s, *stmp;
		TAILQ_FOREACH_SAFE(s, &p->servers, link, stmp) {
			bool connecting = s->state == SV_RESOLVING || s->state == SV_CONNECTING || s->state == SV_SSL_REQ ||
			                  s->state == SV_LOGIN;
			busy |= connecting;
			if (connecting && t->server_connect > 0 && now - s->connect_time > t->server_connect) {
				if (s->state == SV_CONNECTING) /* no answer from that address: the name may have moved */
					resolver_connect_failed(p->be_host, (struct sockaddr *)&s->addr);
				pool_server_login_failed(p, NULL, 0, "server_connect_timeout", true);
				server_close(s, "server_connect_timeout");
			} else if (s->state == SV_IDLE && t->server_lifetime > 0 && now - s->connect_time > t->server_lifetime) {
				server_close(s, "server_lifetime reached");
			} else if (s->state == SV_IDLE && t->server_idle > 0 && now - s->last_used > t->server_idle &&
			           p->n_servers > p->min_pool_size) {
				server_close(s, "server_idle_timeout");
			}
		}
		if (vg.shutting_down)
			continue;
		if (!TAILQ_EMPTY(&p->waiting) || !TAILQ_EMPTY(&p->welcome)) {
			busy = true;
			launch_for_waiters(p);
		}
		while (p->n_servers < p->min_pool_size && pool_has_credentials(p) && login_allowed(p, now) &&
		       may_launch(p, now) && !(p->login_failures && p->n_connecting))
			if (!server_new(p))
				break;
		busy |= p->n_servers < p->min_pool_size && pool_has_credentials(p);
	}
	return busy;
}

void pools_traffic(const char *dbname, struct traffic_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (struct pool *p = vg.pools; p; p = p->next) {
		if (strcmp(p->be_dbname, dbname))
			continue;
		out->requests += p->stat_requests;
		out->errors += p->stat_errors;
		out->latency_sum += p->stat_latency_sum;
	}
}

void pools_free(void)
{
	while (vg.pools) {
		struct pool *p = vg.pools;
		vg.pools = p->next;
		struct server_conn *s;
		while ((s = TAILQ_FIRST(&p->servers)))
			server_close(s, "shutting down");
		for (int i = 0; i < p->n_welcome; i++) {
			free(p->welcome_names[i]);
			free(p->welcome_values[i]);
		}
		free(p->welcome_names);
		free(p->welcome_values);
		free(p->db_name);
		free(p->user);
		free(p->be_dbname);
		free(p->be_user);
		free(p->be_host);
		free(p->be_name);
		free(p->be_password);
		free(p->be_md5);
		free(p->last_login_error);
		if (p->login_timer)
			event_free(p->login_timer);
		if (!p->family)
			registry_free(&p->registry);
		/* dead servers still point at the pool until reaped */
		struct server_conn *d;
		TAILQ_FOREACH(d, &vg.dead_servers, link)
			if (d->pool == p)
				d->pool = NULL;
		free(p);
	}
}

void pools_foreach_view(bool (*fn)(const struct pool_view *v, void *arg), void *arg)
{
	for (struct pool *p = vg.pools; p; p = p->next) {
		struct pool_view v = {.database = p->db_name, .user = p->user, .backend = p->be_name,
		                      .connecting = p->n_connecting, .requests = p->stat_requests,
		                      .errors = p->stat_errors + p->stat_outage_errors, .latency_sum = p->stat_latency_sum};
		struct server_conn *s;
		TAILQ_FOREACH(s, &p->servers, link) {
			if (s->state == SV_IDLE)
				v.idle++;
			else if (s->state == SV_ACTIVE)
				v.active++;
		}
		struct client_conn *c;
		TAILQ_FOREACH(c, &p->waiting, pool_link)
			v.waiting++;
		if (!fn(&v, arg))
			return;
	}
}
