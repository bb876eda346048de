/*
 * Server connections: connect (optionally TLS), log in with the pool's
 * credentials (trust, cleartext, md5 or SCRAM, including SCRAM passthrough of
 * a client's keys), then stream responses to the linked client (straight
 * from the read to its socket when nothing is queued).  The pending
 * queue says which response belongs to which request, so vecgate can swallow
 * answers to requests it injected, answer the ones it skipped, and know when
 * a transaction-mode server is free again.
 */
#include "proxy/server.h"
#include "proxy/backend_table.h"
#include "proxy/cancel.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/read_route.h"
#include "proxy/reaper.h"
#include "proxy/runtime/stats.h"
#include "protocol/md5auth.h"

#include <assert.h>
#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void server_read_cb(void *arg);
static size_t server_chunk_cb(void *arg, const uint8_t *p, size_t len);
static void resume_client(struct server_conn *s);
static void server_write_cb(void *arg);
static void server_event_cb(short what, void *arg);

/* A server that cannot reach its backend: the pool hears why (and tells its
 * clients), then the server goes. */
static void connect_failed(struct server_conn *s, const char *err, bool unresolved)
{
	log_debug("S-%llu: %s", (unsigned long long)s->id, err);
	if (unresolved)
		pool_server_unresolved(s->pool, err); /* the resolver logged it, once for every pool */
	else
		pool_server_login_failed(s->pool, NULL, 0, err, true);
	server_close(s, err);
}

/* The address is known: connect.  Returns false when the server was closed. */
static bool server_connect(struct server_conn *s)
{
	struct pool *p = s->pool;
	s->state = SV_CONNECTING;
	if (io_connect(&s->io, (struct sockaddr *)&s->addr, s->addrlen) < 0) {
		char err[300];
		snprintf(err, sizeof(err), "cannot connect to %s:%d: %s", p->be_host, p->be_port, strerror(errno));
		resolver_connect_failed(p->be_host, (struct sockaddr *)&s->addr);
		connect_failed(s, err, false);
		return false;
	}
	log_debug("S-%llu: connecting to %s:%d for %s/%s", (unsigned long long)s->id, p->be_host, p->be_port,
	          p->be_user, p->be_dbname);
	return true;
}

static void server_resolved(void *arg, const struct sockaddr *sa, socklen_t len, const char *error)
{
	struct server_conn *s = arg;
	assert(s->state == SV_RESOLVING);
	if (!sa) {
		connect_failed(s, error, true);
		return;
	}
	assert(len <= sizeof(s->addr));
	memcpy(&s->addr, sa, len);
	s->addrlen = len;
	server_connect(s);
}

struct server_conn *server_new(struct pool *p)
{
	struct server_conn *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pool = p;
	s->id = ++vg.next_id;
	s->state = SV_RESOLVING;
	s->connect_time = s->last_used = now_sec();
	janitor_hurry(); /* server_connect runs from now */
	s->txn_status = 'I';
	io_init(&s->io, -1, server_read_cb, server_write_cb, server_event_cb, s);
	s->io.on_chunk = server_chunk_cb;
	s->io.want_read = true;
	TAILQ_INSERT_TAIL(&p->servers, s, link);
	p->n_servers++;
	p->n_connecting++;

	/* a host name is never looked up here: a cached address connects at
	 * once, else the server waits for the resolver (timeouts.server_connect
	 * counts the wait) while the loop serves everyone else */
	char err[RESOLVER_ERR_LEN];
	switch (resolver_lookup(p->be_host, p->be_port, &s->addr, &s->addrlen, &s->dns, server_resolved, s, err,
	                        sizeof(err))) {
	case RESOLVE_OK:
		return server_connect(s) ? s : NULL;
	case RESOLVE_PENDING:
		log_debug("S-%llu: waiting for the address of %s", (unsigned long long)s->id, p->be_host);
		return s;
	case RESOLVE_FAILED:
		break;
	}
	s->addrlen = 0;
	connect_failed(s, err, resolver_is_name(p->be_host));
	return NULL;
}

static void send_startup(struct server_conn *s)
{
	const char *names[] = {"user", "database"};
	const char *values[] = {s->pool->be_user, s->pool->be_dbname};
	struct pg_buf b;
	buf_init(&b);
	build_startup(&b, names, values, 2);
	io_write(&s->io, b.data, b.len);
	buf_free(&b);
	s->state = SV_LOGIN;
}

/* transient: the connection was refused or lost on the way (a restart);
 * otherwise the failure is the configuration's (TLS, auth method) or, with
 * an ErrorResponse, whatever its SQLSTATE says. */
static void login_failed_as(struct server_conn *s, const uint8_t *msg, size_t len, const char *text, bool transient)
{
	/* the pool logs the first failure and the recovery, not every retry */
	log_debug("S-%llu: login to %s:%d as %s failed: %s", (unsigned long long)s->id, s->pool->be_host,
	          s->pool->be_port, s->pool->be_user, text);
	pool_server_login_failed(s->pool, msg, len, text, transient);
	server_close(s, "login failed");
}

static void login_failed(struct server_conn *s, const uint8_t *msg, size_t len, const char *text)
{
	login_failed_as(s, msg, len, text, false);
}

static bool upgrade_to_tls(struct server_conn *s)
{
	SSL *ssl = SSL_new(vg.server_tls);
	if (!ssl)
		return false;
	const char *host = s->pool->be_host;
	if (host[0] != '/') {
		SSL_set_tlsext_host_name(ssl, host);
		if (vg.cfg->server_tls.mode == VG_STLS_VERIFY_FULL) {
			X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
			if (!X509_VERIFY_PARAM_set1_ip_asc(param, host))
				SSL_set1_host(ssl, host);
		}
	}
	s->tls = true;
	if (io_start_tls(&s->io, ssl, BUFFEREVENT_SSL_CONNECTING) < 0) {
		SSL_free(ssl);
		return false;
	}
	return true;
}

static void send_internal(struct server_conn *s, const char *sql, enum pending_kind kind)
{
	struct pg_buf b;
	buf_init(&b);
	build_query(&b, sql);
	io_write(&s->io, b.data, b.len);
	buf_free(&b);
	struct pending p = {.kind = kind, .req = 'Q'};
	pq_push(&s->pending, p);
}

void server_send_internal(struct server_conn *s, const char *sql)
{
	send_internal(s, sql, PD_INTERNAL);
}

static bool is_internal(const struct pending *h)
{
	return h && (h->kind == PD_INTERNAL || h->kind == PD_ROLE_CHECK);
}

/* ---- may this session take writes (read-write pools) ---- */

static inline bool rw_transition_ok(enum server_rw from, enum server_rw to)
{
	switch (to) {
	case SRW_UNKNOWN:
		return false;
	case SRW_CHECKING: /* a login that did not say, a hint, a session pooled before read-write was asked */
		return from == SRW_UNKNOWN || from == SRW_SUSPECT;
	case SRW_WRITABLE: /* the login's in_hot_standby, or the check's answer */
		return from == SRW_UNKNOWN || from == SRW_CHECKING;
	case SRW_SUSPECT:
		return from == SRW_WRITABLE;
	case SRW_STANDBY: /* the login, the check, or the backend found so through another session */
		return from != SRW_STANDBY;
	case SRW_READ_ONLY:
		return from != SRW_STANDBY && from != SRW_READ_ONLY;
	}
	return false;
}

void server_rw_set(struct server_conn *s, enum server_rw to)
{
	assert(rw_transition_ok(s->rw, to));
	s->rw = to;
}

/* One row, one column.  reset_val is what the server's configuration (the
 * file, ALTER SYSTEM, ALTER DATABASE/ROLE ... SET) gives a new session, not
 * a SET some client left in this one; names are schema-qualified against a
 * client's search_path. */
#define SQL_ROLE_CHECK                                                                                                 \
	"SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'standby' WHEN s.reset_val = 'on' THEN 'read-only'"           \
	" ELSE 'writable' END FROM pg_catalog.pg_settings s WHERE s.name = 'default_transaction_read_only'"

void server_check_role(struct server_conn *s)
{
	server_rw_set(s, SRW_CHECKING);
	send_internal(s, SQL_ROLE_CHECK, PD_ROLE_CHECK);
}

/* The check's DataRow: its one value says what the session is. */
static void role_check_row(struct server_conn *s, const uint8_t *body, size_t len)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	if (rd_int16(&rd) != 1 || s->rw != SRW_CHECKING)
		return;
	int32_t n = rd_int32(&rd);
	const uint8_t *v = n > 0 ? rd_bytes(&rd, (size_t)n) : NULL;
	if (!v)
		return;
	if (n == 8 && !memcmp(v, "writable", 8))
		server_rw_set(s, SRW_WRITABLE);
	else if (n == 7 && !memcmp(v, "standby", 7))
		server_rw_set(s, SRW_STANDBY);
	else if (n == 9 && !memcmp(v, "read-only", 9))
		server_rw_set(s, SRW_READ_ONLY);
}

/* A ParameterStatus of a session at login: PostgreSQL 14+ reports both
 * (GUC_REPORT), so the login itself says whether the session takes writes,
 * as libpq's target_session_attrs=read-write reads it. */
static void rw_login_param(struct server_conn *s, const char *name, const char *value)
{
	bool on = !strcmp(value, "on");
	if (!strcmp(name, "in_hot_standby")) {
		if (on)
			server_rw_set(s, SRW_STANDBY);
		else if (s->rw == SRW_UNKNOWN)
			server_rw_set(s, SRW_WRITABLE);
	} else if (!strcmp(name, "default_transaction_read_only") && on && s->rw != SRW_STANDBY) {
		server_rw_set(s, SRW_READ_ONLY);
	}
}

/* After login, the session hints that the server may have stopped taking
 * writes: a reload set default_transaction_read_only (reported as it
 * changes), or a write failed with 25006.  Either may also be the client's
 * own doing (SET, BEGIN READ ONLY), so the check decides, after the
 * client's transaction (pool_server_available). */
static void rw_hint(struct server_conn *s, const char *why)
{
	if (!pool_writable_only(s->pool) || s->rw != SRW_WRITABLE)
		return;
	log_debug("S-%llu: %s: checked before it is pooled again", (unsigned long long)s->id, why);
	server_rw_set(s, SRW_SUSPECT);
}

static bool rw_param_hint(const char *name, const char *value)
{
	return !strcmp(value, "on") && (!strcmp(name, "in_hot_standby") || !strcmp(name, "default_transaction_read_only"));
}

/* The check's ReadyForQuery: false when the session was read-only (then
 * closed) or the check failed (closed at its ReadyForQuery as any internal
 * query that failed). */
static bool role_check_done(struct server_conn *s)
{
	switch (s->rw) {
	case SRW_WRITABLE:
		backend_write_seen(s->pool->be_name, BW_WRITABLE, "a session checked writable");
		return true;
	case SRW_STANDBY:
	case SRW_READ_ONLY:
		pool_server_read_only(s);
		server_close(s, "the backend is read-only");
		return false;
	default:
		if (!s->close_needed) /* an error is logged as it comes */
			log_warn("S-%llu: the role check answered no row: not pooled", (unsigned long long)s->id);
		s->close_needed = true;
		return true;
	}
}

bool server_is_clean(const struct server_conn *s)
{
	return s->pending.count == 0 && s->fwd_remaining == 0 && s->txn_status == 'I' && !s->close_needed;
}

void server_link(struct server_conn *s, struct client_conn *c)
{
	assert(!s->client && !c->server);
	s->client = c;
	c->server = s;
	s->state = SV_ACTIVE;
	s->last_used = now_cached();
	s->holding = false;
	if (s->hold)
		evbuffer_drain(s->hold, evbuffer_get_length(s->hold)); /* a previous client left mid-read */
	if (c->routed && vg.cfg->routing.hold_bytes > 0) {
		if (!s->hold)
			s->hold = evbuffer_new();
		s->holding = s->hold != NULL;
	}
	struct pg_buf sql;
	buf_init(&sql);
	if (varcache_sync_sql(c->vars, &s->vars, &sql) > 0) {
		buf_put_byte(&sql, 0);
		server_send_internal(s, (const char *)sql.data);
	}
	buf_free(&sql);
}

void server_unlink_client_gone(struct server_conn *s)
{
	struct client_conn *c = s->client;
	assert(c && c->server == s);
	bool client_mid_message = c->fwd_remaining != 0;
	s->client = NULL;
	c->server = NULL;
	if (s->read_paused) {
		s->read_paused = false;
		io_read(&s->io, true);
	}
	if (client_mid_message) {
		server_close(s, "client left in the middle of a message");
		return;
	}
	if (s->pending.count == 0 && s->fwd_remaining == 0 && !s->close_needed) {
		if (s->txn_status != 'I') {
			/* a transaction the client never finished must not reach the next one */
			server_send_internal(s, "ROLLBACK");
		}
		pool_release(s);
		return;
	}
	/* a query is still running for nobody: stop it and do not reuse */
	cancel_forward(s);
	server_close(s, "client disconnected while a query was running");
}

void server_close(struct server_conn *s, const char *reason)
{
	if (s->state == SV_CLOSING)
		return;
	log_debug("S-%llu: closing: %s", (unsigned long long)s->id, reason);
	struct client_conn *c = s->client;
	if (c) {
		bool replay = s->holding; /* only routed links hold: nothing reached the client yet */
		s->client = NULL;
		c->server = NULL;
		s->holding = false;
		if (replay) {
			client_replay_on_primary(c, reason);
		} else {
			char msg[300];
			snprintf(msg, sizeof(msg), "server connection lost: %s", reason);
			client_fatal(c, "08006", msg, NULL);
		}
	}
	enum server_state was = s->state;
	s->state = SV_CLOSING;
	resolver_cancel(&s->dns);
	pool_server_gone(s);
	if (was == SV_RESOLVING || was == SV_CONNECTING || was == SV_SSL_REQ || was == SV_LOGIN)
		s->pool->n_connecting--;
	io_stop(&s->io);
	if (was >= SV_IDLE && !s->tls) {
		static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
		/* polite goodbye; best effort, the socket closes right after */
		int fd = io_fd(&s->io);
		if (fd >= 0 && !s->fwd_remaining && was != SV_ACTIVE && io_out_len(&s->io) == 0)
			(void)!write(fd, terminate, sizeof(terminate));
	}
	TAILQ_INSERT_TAIL(&vg.dead_servers, s, link);
	reaper_schedule();
}

static void free_ps(struct server_conn *s)
{
	for (int i = 0; i < s->n_ps; i++) {
		free(s->ps_names[i]);
		free(s->ps_values[i]);
	}
	free(s->ps_names);
	free(s->ps_values);
	s->ps_names = s->ps_values = NULL;
	s->n_ps = 0;
}

void server_free(struct server_conn *s)
{
	if (s->hold)
		evbuffer_free(s->hold);
	io_free(&s->io);
	pq_free(&s->pending);
	id_set_free(&s->prepared);
	varcache_clear(&s->vars);
	varcache_clear(&s->login_vars);
	free(s->scram);
	free_ps(s);
	free(s);
}

/* ---- login ---- */

static void send_msg(struct server_conn *s, struct pg_buf *b)
{
	io_write(&s->io, b->data, b->len);
	buf_free(b);
}

static void record_param(struct server_conn *s, const char *name, const char *value)
{
	int idx = varcache_lookup(name);
	if (idx >= 0) {
		varcache_set(&s->vars, idx, value);
		varcache_set(&s->login_vars, idx, value);
	}
	for (int i = 0; i < s->n_ps; i++) {
		if (!strcmp(s->ps_names[i], name)) {
			free(s->ps_values[i]);
			s->ps_values[i] = strdup(value);
			return;
		}
	}
	char **nn = realloc(s->ps_names, sizeof(char *) * (size_t)(s->n_ps + 1));
	if (nn)
		s->ps_names = nn;
	char **nv = realloc(s->ps_values, sizeof(char *) * (size_t)(s->n_ps + 1));
	if (nv)
		s->ps_values = nv;
	if (!nn || !nv)
		return;
	s->ps_names[s->n_ps] = strdup(name);
	s->ps_values[s->n_ps] = strdup(value);
	s->n_ps++;
}

/* Returns false if the server was closed. */
static bool handle_login_message(struct server_conn *s, uint8_t type, const uint8_t *body, size_t len,
                                 const uint8_t *whole, size_t whole_len)
{
	struct pool *p = s->pool;
	struct pg_buf b;
	char err[256];
	/* the login is done and vecgate asked whether the session takes writes */
	struct pending *h = pq_head(&s->pending);
	bool checking = h && h->kind == PD_ROLE_CHECK;
	switch (type) {
	case 'R': {
		struct pg_auth_request ar;
		if (parse_auth_request(body, len, &ar) < 0) {
			login_failed(s, NULL, 0, "malformed authentication request from server");
			return false;
		}
		buf_init(&b);
		switch (ar.code) {
		case 0:
			buf_free(&b);
			if (s->scram) {
				/* as libpq: a server that started SCRAM must prove it knows the
				 * password (server-final) before its AuthenticationOk counts */
				login_failed(s, NULL, 0, "server sent AuthenticationOk before completing SCRAM authentication");
				return false;
			}
			return true;
		case 3:
			if (!p->be_password) {
				buf_free(&b);
				login_failed(s, NULL, 0, "server asked for a cleartext password and none is configured");
				return false;
			}
			build_password(&b, p->be_password);
			send_msg(s, &b);
			return true;
		case 5: {
			char stored[MD5_PASSWD_LEN + 1], resp[MD5_PASSWD_LEN + 1];
			if (p->be_password)
				md5_stored_from_password(p->be_password, p->be_user, stored);
			else if (p->be_md5)
				snprintf(stored, sizeof(stored), "%s", p->be_md5);
			else {
				buf_free(&b);
				login_failed(s, NULL, 0, "server asked for an md5 password and none is configured");
				return false;
			}
			md5_response_from_stored(stored, ar.md5_salt, resp);
			build_password(&b, resp);
			send_msg(s, &b);
			return true;
		}
		case 10: {
			if (!ar.offers_scram) {
				buf_free(&b);
				login_failed(s, NULL, 0, "server offers no SASL mechanism vecgate supports");
				return false;
			}
			char nonce[25], out[SCRAM_MSG_MAX];
			scram_random_nonce(nonce, 24);
			s->scram = calloc(1, sizeof(*s->scram));
			int rc = -1;
			if (s->scram && p->be_password)
				rc = scram_client_init_password(s->scram, p->be_password, nonce);
			else if (s->scram && p->have_scram_keys)
				rc = scram_client_init_keys(s->scram, p->scram_client_key, p->scram_server_key, nonce);
			if (rc < 0 || scram_client_first(s->scram, out, sizeof(out)) < 0) {
				buf_free(&b);
				login_failed(s, NULL, 0,
				             "server asked for SCRAM and no password (or client SCRAM keys) is available");
				return false;
			}
			build_sasl_initial(&b, "SCRAM-SHA-256", out, strlen(out));
			send_msg(s, &b);
			return true;
		}
		case 11: {
			char out[SCRAM_MSG_MAX];
			if (!s->scram || scram_client_final(s->scram, (const char *)ar.data, ar.data_len, out,
			                                    sizeof(out), err, sizeof(err)) < 0) {
				buf_free(&b);
				login_failed(s, NULL, 0, "SCRAM exchange with server failed");
				return false;
			}
			build_sasl_response(&b, out, strlen(out));
			send_msg(s, &b);
			return true;
		}
		case 12:
			buf_free(&b);
			if (!s->scram ||
			    scram_client_verify_server(s->scram, (const char *)ar.data, ar.data_len, err, sizeof(err)) < 0) {
				login_failed(s, NULL, 0, "server's SCRAM signature did not verify");
				return false;
			}
			free(s->scram);
			s->scram = NULL;
			return true;
		default:
			buf_free(&b);
			snprintf(err, sizeof(err), "server requested unsupported authentication method %d", ar.code);
			login_failed(s, NULL, 0, err);
			return false;
		}
	}
	case 'S': {
		const char *name, *value;
		if (parse_parameter_status(body, len, &name, &value) == 0) {
			record_param(s, name, value);
			if (pool_writable_only(p))
				rw_login_param(s, name, value);
		}
		return true;
	}
	case 'T':
	case 'C':
		if (!checking)
			break; /* the role check's answer, or unexpected */
		return true;
	case 'D':
		if (!checking)
			break;
		role_check_row(s, body, len);
		return true;
	case 'K': {
		struct pg_reader rd;
		rd_init(&rd, body, len);
		s->be_pid = (uint32_t)rd_int32(&rd);
		s->be_key = (uint32_t)rd_int32(&rd);
		return true;
	}
	case 'E': {
		struct pg_error_fields ef;
		parse_error_fields(body, len, &ef);
		snprintf(err, sizeof(err), "%s (SQLSTATE %s)", ef.message ? ef.message : "?",
		         ef.sqlstate ? ef.sqlstate : "?");
		login_failed(s, whole, whole_len, err);
		return false;
	}
	case 'Z':
		s->txn_status = len ? (char)body[0] : 'I';
		if (checking) {
			pq_pop(&s->pending); /* the check is answered (whatever a reload did meanwhile) */
			if (s->rw == SRW_CHECKING) {
				login_failed_as(s, NULL, 0, "the role check answered no row", true);
				return false;
			}
		}
		if (pool_writable_only(p)) {
			if (s->rw == SRW_UNKNOWN) {
				/* before PostgreSQL 14: neither parameter came, ask */
				server_check_role(s);
				return true;
			}
			if (s->rw != SRW_WRITABLE) {
				pool_server_read_only(s);
				server_close(s, "the backend is read-only");
				return false;
			}
		}
		s->state = SV_IDLE;
		p->n_connecting--;
		log_debug("S-%llu: logged in, backend pid %u", (unsigned long long)s->id, s->be_pid);
		pool_server_login_ok(s);
		free_ps(s);
		return s->state != SV_CLOSING;
	case 'N':
	case 'v':
		return true;
	default:
		break;
	}
	snprintf(err, sizeof(err), "unexpected message type %d during login", type);
	login_failed(s, NULL, 0, err);
	return false;
}

/* ---- after login ---- */

void server_stop_holding(struct server_conn *s)
{
	if (!s->holding)
		return;
	s->holding = false;
	if (s->client && evbuffer_get_length(s->hold))
		evbuffer_add_buffer(io_out(&s->client->io), s->hold);
	evbuffer_drain(s->hold, evbuffer_get_length(s->hold));
}

/* After an ErrorResponse in the extended protocol the server skips to Sync:
 * so do the entries waiting for answers that will now never come. */
static void skip_to_sync(struct server_conn *s)
{
	struct pending *h;
	while ((h = pq_head(&s->pending)) && h->req != 'S') {
		if (h->stmt)
			id_set_del(&s->prepared, h->stmt);
		pq_pop(&s->pending);
	}
	if (!h)
		s->err_skip = true;
}

static void transaction_done(struct server_conn *s)
{
	struct client_conn *c = s->client;
	log_debug("S-%llu: txn end? pending %zu fwd %zu txn %c cfwd %zu", (unsigned long long)s->id,
	          s->pending.count, s->fwd_remaining, s->txn_status, c ? c->fwd_remaining : 0);
	if (!c || s->pool->mode != VG_POOL_TRANSACTION || !server_is_clean(s) || c->fwd_remaining)
		return;
	s->client = NULL;
	c->server = NULL;
	c->state = CL_IDLE;
	route_cycle_end(c);
	pool_release(s);
	if (c->read_paused) {
		c->read_paused = false;
		io_read(&c->io, true);
	}
	if (evbuffer_get_length(io_in(&c->io)))
		client_process(c);
}

/* A ReadyForQuery went to (or past) the client: the end of a request
 * cycle.  Returns false when the server was closed. */
static bool after_ready(struct server_conn *s, struct client_conn *c, bool delivered)
{
	if (delivered && s->holding && s->pending.count == 0)
		server_stop_holding(s); /* the routed read is answered whole */
	if (s->close_needed && s->pending.count == 0) {
		server_close(s, "internal query failed");
		return false;
	}
	if (s->state == SV_RESET && server_is_clean(s)) {
		pool_server_available(s);
		return true;
	}
	if (c)
		transaction_done(s);
	if (s->client == c && c)
		resume_client(s);
	return true;
}

/* A ReadyForQuery ends the client request cycle at the head of pending:
 * count it and its latency (both forwarding paths come through here). */
static void count_cycle(struct server_conn *s)
{
	if (s->req_started > 0) {
		s->pool->stat_requests++;
		s->pool->stat_latency_sum += now_cached() - s->req_started;
		s->req_started = s->pending.count > 1 ? now_cached() : 0;
	}
}

/* The common case, as PgBouncer's sbuf does it: answers to the linked
 * client's own requests that need no more than their header (everything but
 * ErrorResponse and ParameterStatus) go out in one move per read instead of
 * one per message.  Returns how many leading bytes of p are such whole
 * answers, popping what they answer; *ready when the last of them is the
 * ReadyForQuery that ends a request cycle. */
static size_t batch_scan(struct server_conn *s, const uint8_t *p, size_t len, bool *ready)
{
	size_t off = 0;
	*ready = false;
	while (off + PG_HDR_LEN <= len) {
		uint8_t type = p[off];
		uint32_t mlen = pg_be32(p + off + 1);
		if (mlen < 4 || mlen > len - off - 1)
			break; /* odd or not whole here: the slow path judges it */
		uint32_t total = mlen + 1;
		struct pending *h = pq_head(&s->pending);
		if (!h || h->kind != PD_FORWARD || type == 'E' || type == 'S')
			break;
		if (type == 'Z') {
			if (h->req != 'S' && h->req != 'Q' && h->req != 'F')
				break;
			s->txn_status = total >= 6 ? (char)p[off + 5] : 'I';
			count_cycle(s);
			pq_pop(&s->pending);
			off += total;
			*ready = true;
			break;
		}
		if (response_completes(h->req, type))
			pq_pop(&s->pending);
		off += total;
		h = pq_head(&s->pending);
		if (h && h->kind == PD_SYNTH)
			break; /* vecgate's own answer goes next */
	}
	return off;
}

/* batch_scan over the input's first chain, moved to the client's output.
 * Returns 1 when it consumed something, 0 when the first message needs the
 * slow path, -1 when the server was closed. */
static int forward_batch(struct server_conn *s, struct client_conn *c, struct evbuffer *in, struct evbuffer *cout)
{
	size_t contig = evbuffer_get_contiguous_space(in);
	if (contig < PG_HDR_LEN)
		return 0;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)contig); /* the first chain: no copy */
	bool ready;
	size_t off = batch_scan(s, p, contig, &ready);
	if (off == 0)
		return 0;
	evbuffer_remove_buffer(in, cout, off);
	if (ready && !after_ready(s, c, true))
		return -1;
	return 1;
}

/* Before a read is buffered (io.c on_chunk): when nothing is buffered on
 * either side, the batch goes from the read straight to the client's socket
 * (PgBouncer sends from its read buffer the same way), without passing
 * through two evbuffers.  Returns the bytes dealt with; the rest takes the
 * buffered path. */
static size_t server_chunk_cb(void *arg, const uint8_t *p, size_t len)
{
	struct server_conn *s = arg;
	struct client_conn *c = s->client;
	if (s->state != SV_ACTIVE || !c || s->err_skip || s->holding || s->fwd_remaining || c->io.mode != IO_PLAIN ||
	    io_out_len(&c->io) != 0)
		return 0;
	bool ready;
	size_t off = batch_scan(s, p, len, &ready);
	if (off == 0)
		return 0;
	io_send(&c->io, p, off);
	if (ready && !after_ready(s, c, true))
		return off; /* closed: what is left goes nowhere */
	if (off == len)
		pending_emit(s); /* what server_process would do next, with nothing left to read */
	return off;
}

static void pause_server_read(struct server_conn *s)
{
	if (!s->read_paused) {
		s->read_paused = true;
		io_read(&s->io, false);
	}
}

void server_process(struct server_conn *s)
{
	struct evbuffer *in = io_in(&s->io);
	for (;;) {
		if (s->state == SV_CLOSING || s->read_paused)
			return;
		pending_emit(s);
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		struct client_conn *c = s->client;
		if (s->holding && evbuffer_get_length(s->hold) > vg.cfg->routing.hold_bytes)
			server_stop_holding(s); /* too big to keep for a replay: stream the rest */
		struct evbuffer *cout = c ? conn_client_out(s) : NULL;
		if (c && evbuffer_get_length(io_out(&c->io)) >= VG_OUT_HIGH) {
			pause_server_read(s);
			return;
		}
		if (s->fwd_remaining) {
			/* synthesized answers wait until this message is through */
			size_t n = avail < s->fwd_remaining ? avail : s->fwd_remaining;
			if (cout && !s->fwd_drop)
				evbuffer_remove_buffer(in, cout, n);
			else
				evbuffer_drain(in, n);
			s->fwd_remaining -= n;
			continue;
		}
		if (s->state == SV_ACTIVE && c && !s->err_skip) {
			int r = forward_batch(s, c, in, cout);
			if (r < 0)
				return;
			if (r > 0)
				continue;
		}
		if (avail < PG_HDR_LEN)
			return;
		const uint8_t *hdr = evbuffer_pullup(in, PG_HDR_LEN);
		uint8_t type;
		uint32_t total;
		if (pkt_peek_header(hdr, PG_HDR_LEN, 0x7ffffff0u, &type, &total) != PKT_OK) {
			server_close(s, "invalid message from server");
			return;
		}

		if (s->state == SV_SSL_REQ || s->state == SV_CONNECTING || s->state == SV_RESOLVING) {
			server_close(s, "unexpected data before login");
			return;
		}
		if (s->state == SV_LOGIN) {
			if (total > 65536) {
				login_failed(s, NULL, 0, "oversized login message from server");
				return;
			}
			if (avail < total)
				return;
			uint8_t *msg = evbuffer_pullup(in, total);
			uint8_t *copy = malloc(total);
			if (!copy) {
				server_close(s, "out of memory");
				return;
			}
			memcpy(copy, msg, total);
			evbuffer_drain(in, total);
			bool alive = handle_login_message(s, type, copy + PG_HDR_LEN, total - PG_HDR_LEN, copy, total);
			free(copy);
			if (!alive)
				return;
			continue;
		}

		struct pending *h = pq_head(&s->pending);
		bool internal = is_internal(h);
		log_debug("S-%llu: <- '%c' len %u, head %c/%d, pending %zu, client %s", (unsigned long long)s->id,
		          type, total, h ? h->req : '-', h ? h->kind : -1, s->pending.count, c ? "yes" : "no");
		bool deliver = c && !internal;

		switch (type) {
		case 'Z': {
			if (avail < total)
				return;
			uint8_t msg[6];
			evbuffer_copyout(in, msg, total < 6 ? total : 6);
			s->txn_status = total >= 6 ? (char)msg[5] : 'I';
			bool checked = h && h->kind == PD_ROLE_CHECK;
			if (h && (h->req == 'S' || h->req == 'Q' || h->req == 'F')) {
				if (h->kind == PD_FORWARD)
					count_cycle(s);
				pq_pop(&s->pending);
			}
			if (deliver)
				evbuffer_remove_buffer(in, cout, total);
			else
				evbuffer_drain(in, total);
			if (checked && !role_check_done(s))
				return;
			if (!after_ready(s, c, deliver))
				return;
			continue;
		}
		case 'E': {
			if (avail < total)
				return;
			if (!deliver || s->state != SV_ACTIVE) {
				uint8_t *msg = evbuffer_pullup(in, total);
				struct pg_error_fields ef;
				parse_error_fields(msg + PG_HDR_LEN, total - PG_HDR_LEN, &ef);
				log_warn("S-%llu: %s: %s (SQLSTATE %s)", (unsigned long long)s->id,
				         internal ? "internal query failed" : "error from idle server",
				         ef.message ? ef.message : "?", ef.sqlstate ? ef.sqlstate : "?");
				evbuffer_drain(in, total);
				s->close_needed = true;
				if (!h) {
					server_close(s, "server reported an error while idle");
					return;
				}
				continue;
			}
			uint8_t *emsg = evbuffer_pullup(in, total);
			struct pg_error_fields ef;
			parse_error_fields(emsg + PG_HDR_LEN, total - PG_HDR_LEN, &ef);
			if (s->holding && route_error_replayable(ef.sqlstate)) {
				char why[300];
				snprintf(why, sizeof(why), "%s (SQLSTATE %s)", ef.message ? ef.message : "?", ef.sqlstate);
				evbuffer_drain(in, total);
				server_close(s, why);
				return;
			}
			if (pg_severity_fatal(ef.severity))
				s->close_needed = true; /* the backend is going away: never pool it again */
			if (ef.sqlstate && !strcmp(ef.sqlstate, "25006"))
				rw_hint(s, "a statement was refused as read-only (25006)");
			stats_error(ef.sqlstate);
			evbuffer_remove_buffer(in, cout, total);
			if (pg_sqlstate_server_outage(ef.sqlstate))
				s->pool->stat_outage_errors++; /* not the statement's fault: a rebuild's watch does not count it */
			else
				s->pool->stat_errors++;
			if (h && h->req != 'Q' && h->req != 'F' && h->req != 'S')
				skip_to_sync(s);
			continue;
		}
		case 'S': {
			if (avail < total)
				return;
			uint8_t *msg = evbuffer_pullup(in, total);
			const char *name, *value;
			if (parse_parameter_status(msg + PG_HDR_LEN, total - PG_HDR_LEN, &name, &value) == 0) {
				int idx = varcache_lookup(name);
				if (idx >= 0) {
					varcache_set(&s->vars, idx, value);
					/* the client's view follows what its SETs turned into */
					if (c)
						c->vars = varset_with(c->vars, idx, value);
				} else if (rw_param_hint(name, value)) {
					rw_hint(s, "the session reports read-only");
				}
			}
			if (deliver)
				evbuffer_remove_buffer(in, cout, total);
			else
				evbuffer_drain(in, total);
			continue;
		}
		case 'D':
			if (!h || h->kind != PD_ROLE_CHECK || total > 4096)
				break; /* not the check's row (or no sane one): the general path */
			if (avail < total)
				return;
			role_check_row(s, evbuffer_pullup(in, total) + PG_HDR_LEN, total - PG_HDR_LEN);
			evbuffer_drain(in, total);
			continue;
		default:
			break;
		}

		if (!h && type != 'N' && type != 'A') {
			/* an answer nobody asked for: vecgate and the server disagree
			 * about where the protocol stands, so the link cannot be trusted */
			char why[80];
			snprintf(why, sizeof(why), "protocol desync: unexpected message '%c' from server", type >= 32 && type < 127 ? type : '?');
			server_close(s, why);
			return;
		}
		bool drop = !deliver;
		if (h && !internal && response_completes(h->req, type)) {
			if (h->kind == PD_DROP)
				drop = true;
			pq_pop(&s->pending);
		}
		if (drop && type == 'A')
			log_debug("S-%llu: notification dropped: no client linked", (unsigned long long)s->id);
		s->fwd_remaining = total;
		s->fwd_drop = drop;
	}
}

static void server_read_cb(void *arg)
{
	struct server_conn *s = arg;
	if (s->state == SV_SSL_REQ) {
		struct evbuffer *in = io_in(&s->io);
		uint8_t answer;
		if (evbuffer_remove(in, &answer, 1) != 1)
			return;
		if (answer == 'S') {
			if (!upgrade_to_tls(s)) {
				login_failed(s, NULL, 0, "TLS setup with server failed");
				return;
			}
			send_startup(s);
			return;
		}
		if (answer == 'N' && vg.cfg->server_tls.mode == VG_STLS_PREFER) {
			send_startup(s);
			return;
		}
		login_failed(s, NULL, 0, answer == 'N' ? "server does not support TLS and tls.server.mode requires it"
		                                       : "unexpected answer to SSLRequest");
		return;
	}
	server_process(s);
}

/* A client paused for this server's sake may go on once the server has
 * room again: its output below the low watermark, its queue half empty. */
static void resume_client(struct server_conn *s)
{
	struct client_conn *c = s->client;
	if (c && c->read_paused && s->pending.count <= VG_PENDING_MAX / 2 &&
	    evbuffer_get_length(io_out(&s->io)) < VG_OUT_LOW) {
		client_resume_read(c);
		client_process(c);
	}
}

static void server_write_cb(void *arg)
{
	resume_client(arg);
}

static void server_event_cb(short what, void *arg)
{
	struct server_conn *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state != SV_CONNECTING)
			return; /* TLS handshake finished */
		int fd = io_fd(&s->io);
		if (s->pool->be_host[0] != '/') {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		if (vg.server_tls && s->pool->be_host[0] != '/') {
			struct pg_buf b;
			buf_init(&b);
			build_ssl_request(&b);
			send_msg(s, &b);
			s->state = SV_SSL_REQ;
		} else {
			send_startup(s);
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		char reason[300] = "server closed the connection";
		unsigned long e = io_tls_error(&s->io);
		if (e) {
			char tls[256];
			ERR_error_string_n(e, tls, sizeof(tls));
			snprintf(reason, sizeof(reason), "TLS error: %s", tls);
		} else if (what & BEV_EVENT_ERROR) {
			snprintf(reason, sizeof(reason), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		}
		if (s->state == SV_CONNECTING)
			resolver_connect_failed(s->pool->be_host, (struct sockaddr *)&s->addr); /* it may have moved */
		if (s->state == SV_CONNECTING || s->state == SV_SSL_REQ || s->state == SV_LOGIN)
			login_failed_as(s, NULL, 0, reason, !e); /* a TLS error will not heal by waiting */
		else
			server_close(s, reason);
	}
}
