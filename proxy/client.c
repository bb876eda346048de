/*
 * Client connections: read the startup packet (negotiating TLS or refusing
 * GSS encryption first), hand the login to auth.c, then move the client's
 * messages to its server.  Plain messages go from the read straight to the
 * server's socket, or in one chain move per read when something is queued;
 * bodies are streamed by chain moves; messages are pulled up whole only
 * where they must be read: for the DDL guard and routing (read_route.c) and,
 * in transaction mode, for the rewrite of named statements (prepared.c).
 */
#include "proxy/client.h"
#include "proxy/auth.h"
#include "proxy/backend_table.h"
#include "proxy/cancel.h"
#include "proxy/pool.h"
#include "proxy/read_route.h"
#include "proxy/reaper.h"
#include "proxy/runtime/stats.h"
#include "proxy/server.h"
#include "proxy/strpool.h"
#include "routing/classify.h"

#include <assert.h>
#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void client_read_cb(void *arg);
static size_t client_chunk_cb(void *arg, const uint8_t *p, size_t len);
static void client_write_cb(void *arg);
static void client_event_cb(short what, void *arg);

void client_accept(int fd, const char *host, int port, bool is_unix)
{
	evutil_make_socket_nonblocking(fd);
	struct client_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	io_init(&c->io, fd, client_read_cb, client_write_cb, client_event_cb, c);
	c->io.on_chunk = client_chunk_cb;
	c->is_unix = is_unix;
	c->host = strpool_get(host); /* clients from one host share it */
	c->port = (uint16_t)port;
	c->id = ++vg.next_id;
	c->state = CL_STARTUP;
	janitor_hurry(); /* client_login runs from now */
	vg_clock_tick();
	c->connect_time = c->last_active = now_cached();
	/* a made-up key: cancel requests are matched against it, then the
	 * real key of whatever server the client is linked to is used */
	do {
		random_bytes(&c->cancel_pid, sizeof(c->cancel_pid));
		random_bytes(&c->cancel_key, sizeof(c->cancel_key));
		c->cancel_pid &= 0x7fffffff;
	} while (client_find_by_cancel_key(c->cancel_pid, c->cancel_key));
	TAILQ_INSERT_TAIL(&vg.clients, c, link);
	vg.n_clients++;
	io_read(&c->io, true);
	log_debug("C-%llu: new connection from %s:%d", (unsigned long long)c->id, host, port);
}

struct client_conn *client_find_by_cancel_key(uint32_t pid, uint32_t key)
{
	struct client_conn *c;
	TAILQ_FOREACH(c, &vg.clients, link)
		if (c->cancel_pid == pid && c->cancel_key == key)
			return c;
	return NULL;
}

void client_send_error(struct client_conn *c, const char *severity, const char *sqlstate,
                       const char *msg, const char *detail)
{
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, severity, sqlstate, msg, detail, NULL);
	io_write(&c->io, b.data, b.len);
	buf_free(&b);
	stats_error(sqlstate);
}

void client_fatal(struct client_conn *c, const char *sqlstate, const char *msg, const char *detail)
{
	static struct log_limit refused;
	char addr[64];
	if (c->state == CL_CLOSING)
		return;
	if (c->state < CL_IDLE || !strcmp(sqlstate, "08P01"))
		vg_log_limited(&refused, VG_LOG_INFO, "C-%llu: refused %s@%s: %s (SQLSTATE %s)", (unsigned long long)c->id,
		               c->user ? c->user : "?", client_addr(c, addr, sizeof(addr)), msg, sqlstate);
	client_send_error(c, "FATAL", sqlstate, msg, detail);
	client_close(c, msg);
}

/* ---- closing: flush what we owe the client, then free ---- */

static void closing_done(struct client_conn *c)
{
	io_stop(&c->io);
	if (c->flushing) {
		TAILQ_REMOVE(&vg.closing_clients, c, link);
		c->flushing = false;
	}
	TAILQ_INSERT_TAIL(&vg.dead_clients, c, link);
	reaper_schedule();
}

static void closing_write_cb(void *arg)
{
	struct client_conn *c = arg;
	if (io_out_len(&c->io) == 0)
		closing_done(c);
}

static void closing_event_cb(short what, void *arg)
{
	(void)what;
	closing_done(arg);
}

void client_close(struct client_conn *c, const char *reason)
{
	if (c->state == CL_CLOSING)
		return;
	bool logged_in = c->state >= CL_IDLE;
	char addr[64];
	if (logged_in && vg.cfg->logging.log_disconnections)
		log_info("C-%llu: %s@%s/%s closing: %s", (unsigned long long)c->id, c->user ? c->user : "?",
		         client_addr(c, addr, sizeof(addr)), c->database ? c->database : "?", reason);
	else
		log_debug("C-%llu: closing: %s", (unsigned long long)c->id, reason);
	if (c->in_pool_queue)
		pool_dequeue(c);
	if (c->server)
		server_unlink_client_gone(c->server);
	auth_release(c);
	/* the pool may be gone before the reaper frees this client */
	name_map_free(&c->stmts, vg.cfg->pool.statement_cache);
	if (c->pool)
		c->pool->n_clients--;
	c->state = CL_CLOSING;
	TAILQ_REMOVE(&vg.clients, c, link);
	vg.n_clients--;
	io_read(&c->io, false);
	if (io_out_len(&c->io) == 0) {
		closing_done(c);
		return;
	}
	io_close_after_flush(&c->io, 2.0, closing_write_cb, closing_event_cb);
	c->flushing = true;
	TAILQ_INSERT_TAIL(&vg.closing_clients, c, link);
}

void client_free(struct client_conn *c)
{
	if (c->replay)
		evbuffer_free(c->replay);
	io_free(&c->io);
	strpool_put(c->user);
	strpool_put(c->database);
	strpool_put(c->host);
	varset_put(c->vars);
	c->vars = NULL;
	name_map_free(&c->stmts, vg.cfg->pool.statement_cache);
	auth_release(c);
	free(c);
}

/* ---- startup ---- */

static bool upgrade_to_tls(struct client_conn *c)
{
	/* The 'S' must reach the client in clear before the handshake starts,
	 * and nothing else is queued on a connection this young. */
	if (send(io_fd(&c->io), "S", 1, MSG_NOSIGNAL) != 1)
		return false;
	SSL *ssl = SSL_new(vg.client_tls);
	if (!ssl)
		return false;
	c->tls = true;
	if (io_start_tls(&c->io, ssl, BUFFEREVENT_SSL_ACCEPTING) < 0) {
		SSL_free(ssl);
		return false;
	}
	return true;
}

static const char *normalize_encoding(const char *v)
{
	if (!strcasecmp(v, "utf8") || !strcasecmp(v, "utf-8") || !strcasecmp(v, "unicode"))
		return "UTF8";
	return v;
}

/* Returns false when the client was closed. */
static bool handle_startup(struct client_conn *c)
{
	struct evbuffer *in = io_in(&c->io);
	size_t avail = evbuffer_get_length(in);
	uint8_t hdr[4];
	if (avail < 4)
		return false;
	evbuffer_copyout(in, hdr, 4);
	uint32_t total;
	enum pkt_status st = pkt_peek_startup(hdr, 4, vg.cfg->limits.max_startup_size, &total);
	if (st == PKT_BAD_LENGTH || st == PKT_TOO_LARGE) {
		client_fatal(c, "08P01", "invalid length of startup packet", NULL);
		return false;
	}
	if (avail < total)
		return false;
	uint8_t *pkt = evbuffer_pullup(in, total);
	struct startup_packet sp;
	startup_parse(pkt, total, &sp);
	switch (sp.kind) {
	case STARTUP_SSL:
		evbuffer_drain(in, total);
		if (c->tls || c->ssl_asked) {
			/* one negotiation per connection, as PostgreSQL: a loop of
			 * requests would only queue replies the client never reads */
			client_fatal(c, "08P01", c->tls ? "SSL negotiation already completed" : "duplicate SSLRequest", NULL);
			return false;
		}
		c->ssl_asked = true;
		if (vg.client_tls && !c->is_unix) {
			if (!upgrade_to_tls(c)) {
				client_close(c, "TLS setup failed");
				return false;
			}
			return false; /* the client speaks again after the handshake */
		}
		io_write(&c->io, "N", 1);
		return true;
	case STARTUP_GSSENC:
		evbuffer_drain(in, total);
		if (c->gss_asked || c->ssl_asked || c->tls) {
			client_fatal(c, "08P01", "duplicate or late GSSENCRequest", NULL);
			return false;
		}
		c->gss_asked = true;
		io_write(&c->io, "N", 1);
		return true;
	case STARTUP_CANCEL: {
		evbuffer_drain(in, total);
		struct client_conn *target = client_find_by_cancel_key(sp.cancel_pid, sp.cancel_key);
		if (target && target->server && target->server->state == SV_ACTIVE)
			cancel_forward(target->server);
		else
			log_debug("cancel request for no active query");
		client_close(c, "cancel request handled");
		return false;
	}
	case STARTUP_BAD_VERSION: {
		char msg[128];
		snprintf(msg, sizeof(msg), "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
		         sp.version >> 16, sp.version & 0xffff);
		evbuffer_drain(in, total);
		client_fatal(c, "08P01", msg, NULL);
		return false;
	}
	case STARTUP_MALFORMED:
		evbuffer_drain(in, total);
		client_fatal(c, "08P01", sp.error, NULL);
		return false;
	case STARTUP_NORMAL:
		break;
	}

	if (vg.cfg->client_tls.mode == VG_CTLS_REQUIRE && !c->tls && !c->is_unix) {
		evbuffer_drain(in, total);
		client_fatal(c, "28000", "SSL required", "vecgate is configured with tls.client.mode: require");
		return false;
	}
	const char *unknown_pq[STARTUP_MAX_PARAMS];
	int n_unknown_pq = 0;
	for (int i = 0; i < sp.n_params; i++) {
		const char *name = sp.params[i].name, *value = sp.params[i].value;
		if (!strcmp(name, "user") || !strcmp(name, "database"))
			continue;
		if (!strncmp(name, "_pq_.", 5)) {
			unknown_pq[n_unknown_pq++] = name;
			continue;
		}
		int idx = varcache_lookup(name);
		if (idx >= 0) {
			c->vars = varset_with(c->vars, idx, idx == VAR_CLIENT_ENCODING ? normalize_encoding(value) : value);
			continue;
		}
		char msg[300];
		snprintf(msg, sizeof(msg), "unsupported startup parameter: %s", name);
		evbuffer_drain(in, total);
		client_fatal(c, "08P01", msg, "vecgate pools server connections and can only carry "
		             "client_encoding, DateStyle, TimeZone, IntervalStyle, "
		             "standard_conforming_strings, application_name, extra_float_digits, "
		             "search_path and statement_timeout from the startup packet");
		return false;
	}
	c->user = strpool_get(sp.user);
	c->database = strpool_get(sp.database);
	bool minor = (sp.version & 0xffff) != 0;
	evbuffer_drain(in, total);
	if (!c->user || !c->database) {
		client_fatal(c, "53200", "out of memory", NULL);
		return false;
	}
	if (minor || n_unknown_pq) {
		struct pg_buf b;
		buf_init(&b);
		build_negotiate_version(&b, 0, unknown_pq, n_unknown_pq);
		io_write(&c->io, b.data, b.len);
		buf_free(&b);
	}
	if (!config_find_database(vg.cfg, c->database)) {
		char msg[300];
		snprintf(msg, sizeof(msg), "no such database: %s", c->database);
		client_fatal(c, "3D000", msg, NULL);
		return false;
	}
	auth_begin(c);
	return c->state != CL_CLOSING;
}

/* ---- login phase messages ---- */

static bool handle_auth_message(struct client_conn *c)
{
	struct evbuffer *in = io_in(&c->io);
	size_t avail = evbuffer_get_length(in);
	uint8_t hdr[PG_HDR_LEN];
	if (avail < PG_HDR_LEN)
		return false;
	evbuffer_copyout(in, hdr, PG_HDR_LEN);
	uint8_t type;
	uint32_t total;
	if (pkt_peek_header(hdr, PG_HDR_LEN, 8192, &type, &total) != PKT_OK) {
		client_fatal(c, "08P01", "invalid authentication message length", NULL);
		return false;
	}
	if (avail < total)
		return false;
	uint8_t *msg = evbuffer_pullup(in, total);
	if (type == 'X') {
		evbuffer_drain(in, total);
		client_close(c, "client gave up during authentication");
		return false;
	}
	if (type != 'p') {
		char m[96];
		snprintf(m, sizeof(m), "expected password response, got message type %d", type);
		evbuffer_drain(in, total);
		client_fatal(c, "08P01", m, NULL);
		return false;
	}
	/* auth may call into the pool; copy the body out of the buffer first */
	uint8_t *body = malloc(total - PG_HDR_LEN + 1);
	if (!body) {
		client_fatal(c, "53200", "out of memory", NULL);
		return false;
	}
	memcpy(body, msg + PG_HDR_LEN, total - PG_HDR_LEN);
	evbuffer_drain(in, total);
	auth_handle_message(c, type, body, total - PG_HDR_LEN);
	free(body);
	return c->state != CL_CLOSING;
}

void client_login_done(struct client_conn *c)
{
	struct pool *p = c->pool;
	struct pg_buf b;
	buf_init(&b);
	for (int i = 0; i < p->n_welcome; i++) {
		int idx = varcache_lookup(p->welcome_names[i]);
		if (idx >= 0 && !varset_get(c->vars, idx))
			c->vars = varset_with(c->vars, idx, p->welcome_values[i]);
		const char *v = idx >= 0 ? varset_get(c->vars, idx) : p->welcome_values[i];
		build_parameter_status(&b, p->welcome_names[i], v);
	}
	build_backend_key(&b, c->cancel_pid, c->cancel_key);
	build_ready(&b, 'I');
	io_write(&c->io, b.data, b.len);
	buf_free(&b);
	c->state = CL_IDLE;
	c->last_active = now_cached();
	client_resume_read(c);
	char addr[64];
	if (vg.cfg->logging.log_connections)
		log_info("C-%llu: %s@%s login to %s (%s pool%s)", (unsigned long long)c->id, c->user,
		         client_addr(c, addr, sizeof(addr)), c->database, config_pool_mode_name(p->mode),
		         c->tls ? ", TLS" : "");
	if (io_in_len(&c->io))
		client_process(c);
	else
		io_trim(&c->io); /* an idle client holds no buffers */
}

/* ---- the forwarding loop ---- */

/* The pool a cycle's first message is checked out from, or NULL when
 * vecgate refused the statement (and answered). */
static struct pool *routed_pool(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total)
{
	struct route_decision d;
	switch (route_cycle(c, type, msg, total, &d)) {
	case CYCLE_REFUSED:
		return NULL;
	case CYCLE_ROUTED: {
		struct pool *sib = pool_sibling(c->pool, d.backend->name);
		if (sib && pool_usable(sib)) {
			route_cycle_routed(c, &d);
			return sib;
		}
		route_cycle_kept(c, &d);
		return c->pool;
	}
	default:
		return c->pool;
	}
}

void client_replay_on_primary(struct client_conn *c, const char *why)
{
	assert(!c->server && !c->in_pool_queue);
	route_cycle_failed(c, why);
	struct evbuffer *in = io_in(&c->io);
	/* a message cut off by backpressure is whole in the replay buffer:
	 * its unsent rest must not follow it twice */
	evbuffer_drain(in, c->fwd_remaining);
	if (c->replay && evbuffer_get_length(c->replay))
		evbuffer_prepend_buffer(in, c->replay);
	route_cycle_done(c);
	c->fwd_remaining = 0;
	c->guard_skip = false;
	c->force_primary = true;
	c->state = CL_IDLE;
	if (c->read_paused) { /* paused for the dead server's sake */
		c->read_paused = false;
		io_read(&c->io, true);
	}
	client_process(c);
}

void client_pause_read(struct client_conn *c)
{
	if (!c->read_paused) {
		c->read_paused = true;
		io_read(&c->io, false);
	}
}

/* Drop a whole message vecgate answered itself; the rest of a large one is
 * skipped as it arrives (fwd_remaining with no server means "discard"). */
static bool drain_whole(struct client_conn *c, uint32_t total)
{
	struct evbuffer *in = io_in(&c->io);
	size_t avail = evbuffer_get_length(in);
	if (avail >= total) {
		evbuffer_drain(in, total);
		return true;
	}
	evbuffer_drain(in, avail);
	c->discard_remaining = total - avail;
	return false;
}

/* In transaction mode only messages naming a prepared statement are
 * rewritten; the unnamed ones pass as they are. */
static bool names_no_statement(uint8_t type, const uint8_t *body, size_t len)
{
	switch (type) {
	case 'P':
		return len >= 1 && body[0] == 0;
	case 'B': {
		const uint8_t *end = memchr(body, 0, len); /* after the portal name */
		return end && end + 1 < body + len && end[1] == 0;
	}
	case 'D':
	case 'C':
		return len >= 2 && (body[0] != 'S' || body[1] == 0);
	default:
		return true;
	}
}

/* Does this whole message go to the server as it is, needing no more than
 * its header and a byte scan?  (No DDL guard, no named statement in
 * transaction mode, nothing the traffic sample reads.) */
#define SCAN_UNKNOWN (~0u)

/* statement_scan of a Query or Parse, over what the DDL guard reads */
static unsigned scan_of(const uint8_t *msg, uint32_t total)
{
	return statement_scan(msg[0], msg, total < VG_INSPECT_MAX ? total : VG_INSPECT_MAX);
}

static bool plain_message(const struct client_conn *c, bool txn_mode, const uint8_t *msg, uint32_t total,
                          unsigned scan)
{
	uint8_t type = msg[0];
	if (type == 'X' || !pg_frontend_type_valid(type))
		return false;
	/* the guard reads what may name an INDEX; routing happens only where a
	 * cycle starts (the caller's business) */
	if (ddl_guard_applies(type) && ((scan == SCAN_UNKNOWN ? scan_of(msg, total) : scan) & SQL_MAY_INDEX))
		return false;
	if (txn_mode && !names_no_statement(type, msg + PG_HDR_LEN, total - PG_HDR_LEN))
		return false;
	if (c->sample_param && (type == 'B' || type == 'P'))
		return false; /* the traffic sample reads its vector, or a new statement voids the offer */
	if (!txn_mode && type != 'Q' && prepared_session_applies(c, type, msg, total, scan == SCAN_UNKNOWN && type == 'P'
	                                                                                 ? (scan = scan_of(msg, total))
	                                                                                 : scan))
		return false; /* a session's named vector read keeps its pin */
	if ((type == 'Q' || type == 'P') && routes_pinning()) {
		if (scan == SCAN_UNKNOWN)
			scan = scan_of(msg, total);
		if (route_pin_applies(c, type, msg, total, scan))
			return false; /* read whole: the pin's hint goes in front */
	}
	if ((type == 'Q' || type == 'P') && routes_sampling()) {
		/* a vector read inside a transaction block or a session is sampled
		 * too (route_sample_mid) */
		if (scan == SCAN_UNKNOWN)
			scan = scan_of(msg, total);
		if ((scan & SQL_MAY_VECTOR_OP) && routes_sampled_in(c->pool->be_dbname))
			return false;
	}
	return true;
}

/* The common case, as PgBouncer's sbuf does it: a linked client's plain
 * messages go to the server in one move per read instead of one per
 * message.  Returns how many leading bytes of p are such whole messages,
 * counting and queueing what they ask for. */
static size_t batch_scan(struct client_conn *c, struct server_conn *s, const uint8_t *p, size_t len,
                         bool first_plain)
{
	bool txn_mode = c->pool->mode == VG_POOL_TRANSACTION;
	size_t off = 0;
	while (off + PG_HDR_LEN <= len && s->pending.count < VG_PENDING_MAX) {
		uint8_t type = p[off];
		uint32_t mlen = pg_be32(p + off + 1);
		if (mlen < 4 || mlen > len - off - 1 || mlen + 1 > vg.cfg->limits.max_message_size ||
		    (!(first_plain && off == 0) && !plain_message(c, txn_mode, p + off, mlen + 1, SCAN_UNKNOWN)))
			break;
		if (type == 'Q' || type == 'E')
			c->queries++;
		if (pending_tracked(type))
			pending_push_request(s, PD_FORWARD, type, 0, 0);
		off += mlen + 1;
	}
	if (off)
		c->last_active = now_cached();
	return off;
}

static bool batch_allowed(const struct client_conn *c)
{
	return !c->routed && !c->guard_skip && !c->discard_remaining && !c->fwd_remaining;
}

/* batch_scan over the input's first chain, moved to the server's output.
 * Returns the bytes moved. */
static size_t forward_batch(struct client_conn *c, struct server_conn *s, struct evbuffer *in)
{
	if (c->state != CL_ACTIVE || !batch_allowed(c))
		return 0;
	size_t contig = evbuffer_get_contiguous_space(in);
	if (contig < PG_HDR_LEN)
		return 0;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)contig); /* the first chain: no copy */
	size_t off = batch_scan(c, s, p, contig, false);
	if (off)
		evbuffer_remove_buffer(in, io_out(&s->io), off);
	return off;
}

/* A transaction-mode Bind of a named statement, whole at p: rewritten onto
 * the pool's statement as forward_loop would, when nothing else (routing,
 * the traffic sample, a full queue) needs the buffered path. */
static bool named_bind(const struct client_conn *c, const struct server_conn *s, const uint8_t *p, size_t len,
                       uint32_t *total)
{
	if (len < PG_HDR_LEN || p[0] != 'B' || c->pool->mode != VG_POOL_TRANSACTION || c->sample_param || c->routed ||
	    (s && (s->pending.count >= VG_PENDING_MAX || io_out_len(&s->io) >= VG_OUT_HIGH)))
		return false;
	uint32_t mlen = pg_be32(p + 1);
	if (mlen < 4 || mlen > len - 1 || mlen + 1 > vg.cfg->limits.max_message_size)
		return false;
	*total = mlen + 1;
	return true;
}

/* Before a read is buffered (io.c on_chunk), when nothing of the client's
 * is buffered: plain messages go from the read straight to the server's
 * socket, and a named Bind is rewritten from it.  A message that starts a
 * transaction-mode cycle is checked out here too when it needs no routing
 * and a server is idle; anything else (a queue, a refusal, a Parse, a
 * routed read) takes the buffered path.  Returns the bytes dealt with. */
static size_t client_chunk_cb(void *arg, const uint8_t *p, size_t len)
{
	struct client_conn *c = arg;
	if ((c->state != CL_IDLE && c->state != CL_ACTIVE) || !batch_allowed(c) || len < PG_HDR_LEN)
		return 0;
	bool txn_mode = c->pool->mode == VG_POOL_TRANSACTION;
	struct server_conn *s = c->server;
	uint32_t total;
	bool first_plain = false; /* the first message was judged already */
	struct bind_ref bind;
	bool have_bind = false; /* bind reads the message at off */
	if (!s) {
		uint8_t type = p[0];
		uint32_t mlen = pg_be32(p + 1);
		if (c->state != CL_IDLE || mlen < 4 || mlen > len - 1 || TAILQ_EMPTY(&c->pool->idle))
			return 0;
		bool route = mlen + 1 <= VG_INSPECT_MAX && route_cycle_applies(c, type);
		unsigned scan = (type == 'Q' || type == 'P') && (route || ddl_guard_applies(type)) ? scan_of(p, mlen + 1)
		                                                                                  : SCAN_UNKNOWN;
		first_plain = plain_message(c, txn_mode, p, mlen + 1, scan);
		if (!first_plain) {
			/* a named Bind, read once for routing and the rewrite */
			if (!named_bind(c, NULL, p, len, &total) || !prepared_bind_ref(c, p, total, &bind))
				return 0;
			have_bind = true;
		}
		if (route && (type == 'B' ? (have_bind && route_stmt_needed(c, bind.st))
		                          : route_cycle_needed(c, type, p, mlen + 1, scan)))
			return 0;
		if (route)
			route_cycle_plain(c);
		c->last_active = now_cached();
		if (!pool_checkout(c->pool, c) || !(s = c->server) || c->state != CL_ACTIVE)
			return 0; /* the buffered path sees where it stands */
	}
	size_t off = 0;
	for (;;) {
		if (io_out_len(&s->io) >= VG_OUT_HIGH)
			break;
		size_t n = have_bind ? 0 : batch_scan(c, s, p + off, len - off, first_plain && off == 0);
		if (n) {
			io_send(&s->io, p + off, n);
			off += n;
		}
		if (!named_bind(c, s, p + off, len - off, &total))
			break;
		if (!have_bind && !prepared_bind_ref(c, p + off, total, &bind)) {
			prepared_rewrite(c, s, 'B', p + off, total, io_out(&s->io)); /* passes it on as it is */
			pending_emit(s);
			off += total;
			continue;
		}
		if (!have_bind && routes_sampling() && route_stmt_needed(c, bind.st) &&
		    routes_sampled_in(c->pool->be_dbname))
			break; /* a vector read inside a transaction block: sampled on the buffered path */
		have_bind = false;
		uint8_t head[64];
		size_t tail_off, hlen = 0;
		if (io_out_len(&s->io) == 0)
			hlen = prepared_bind_head(s, &bind, p + off, head, sizeof(head), &tail_off);
		if (hlen) {
			/* the new head, then the parameters and what follows them
			 * from where they are: one system call, no copy */
			size_t rest = batch_scan(c, s, p + off + total, len - off - total, false);
			struct iovec iov[2] = {{head, hlen}, {(void *)(p + off + tail_off), total - tail_off + rest}};
			io_sendv(&s->io, iov, 2);
			c->last_active = now_cached();
			off += total + rest;
			continue;
		}
		prepared_rewrite(c, s, 'B', p + off, total, io_out(&s->io));
		pending_emit(s);
		c->last_active = now_cached();
		off += total;
	}
	return off;
}

static void forward_loop(struct client_conn *c)
{
	struct evbuffer *in = io_in(&c->io);
	for (;;) {
		if (c->state != CL_IDLE && c->state != CL_ACTIVE)
			return;
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		struct server_conn *s = c->server;
		if (c->discard_remaining) {
			size_t n = avail < c->discard_remaining ? avail : c->discard_remaining;
			evbuffer_drain(in, n);
			c->discard_remaining -= n;
			continue;
		}
		if (c->fwd_remaining) {
			assert(s);
			struct evbuffer *out = io_out(&s->io);
			if (evbuffer_get_length(out) >= VG_OUT_HIGH) {
				client_pause_read(c);
				return;
			}
			size_t n = avail < c->fwd_remaining ? avail : c->fwd_remaining;
			evbuffer_remove_buffer(in, out, n);
			c->fwd_remaining -= n;
			continue;
		}
		if (s && io_out_len(&s->io) < VG_OUT_HIGH && forward_batch(c, s, in))
			continue;
		if (avail < PG_HDR_LEN)
			break;
		/* the header is almost always in the first chain: no copy */
		const uint8_t *hdr = evbuffer_pullup(in, PG_HDR_LEN);
		uint8_t type;
		uint32_t total;
		enum pkt_status st = pkt_peek_header(hdr, PG_HDR_LEN, vg.cfg->limits.max_message_size, &type, &total);
		if (st == PKT_BAD_LENGTH) {
			client_fatal(c, "08P01", "invalid message length", NULL);
			return;
		}
		if (st == PKT_TOO_LARGE) {
			char m[160];
			snprintf(m, sizeof(m), "message of type '%c' is too large (%u bytes; limits.max_message_size is %zu)",
			         type >= 32 && type < 127 ? type : '?', total - 1, vg.cfg->limits.max_message_size);
			client_fatal(c, "08P01", m, NULL);
			return;
		}
		if (type == 'X') {
			evbuffer_drain(in, avail < total ? avail : total);
			client_close(c, "client terminated the session");
			return;
		}
		if (!pg_frontend_type_valid(type)) {
			/* never forwarded: a server would answer FATAL, possibly after
			 * it went back to the pool, and end another client's session */
			char m[64];
			snprintf(m, sizeof(m), "invalid frontend message type %d", type);
			client_fatal(c, "08P01", m, NULL);
			return;
		}
		c->last_active = now_cached();
		log_debug("C-%llu: -> '%c' len %u, server %s", (unsigned long long)c->id, type, total,
		          s ? "linked" : "none");
		if (c->guard_skip) {
			/* after a refused Parse, like the server after an error */
			if (avail < total)
				break;
			if (type == 'S') {
				c->guard_skip = false;
				if (s && (s->pending.count || s->fwd_remaining)) {
					/* the server still owes earlier answers and flushes them
					 * on Sync: its ReadyForQuery ends the batch, after ours */
					pending_push_request(s, PD_FORWARD, 'S', 0, 0);
					evbuffer_remove_buffer(in, io_out(&s->io), total);
					continue;
				}
				evbuffer_drain(in, total);
				pending_answer(c, NULL, 0, true);
				continue;
			}
			evbuffer_drain(in, total);
			continue;
		}
		/* the DDL guard and routing read at most VG_INSPECT_MAX bytes of a
		 * statement: larger messages stream like any other, never held */
		size_t look = total < VG_INSPECT_MAX ? total : VG_INSPECT_MAX;
		bool guard = ddl_guard_applies(type);
		bool route = !s && total <= VG_INSPECT_MAX && route_cycle_applies(c, type);
		/* a read inside a transaction block or a session: not routed, but
		 * its index's traffic sample takes it like the others */
		bool sample = !route && total <= VG_INSPECT_MAX && (type == 'Q' || type == 'P' || type == 'B') &&
		              routes_sampling() && !(type == 'B' && c->sample_param);
		/* swap_mode hint: vector reads of a pinned table get the hint, and
		 * a session's named vector reads are kept (prepared.c) */
		bool pin = (type == 'Q' || type == 'P') && total <= VG_INSPECT_MAX && routes_pinning();
		bool session_stmt = c->pool->mode != VG_POOL_TRANSACTION && (type == 'P' || type == 'B' || type == 'D' ||
		                                                              type == 'C');
		/* one byte scan decides whether the lexer must see the statement
		 * at all; most statements name no INDEX and use no distance
		 * operator (a Bind's statement was scanned at its Parse) */
		unsigned scan = SQL_MAY_INDEX | SQL_MAY_VECTOR_OP;
		if (guard || ((route || sample || pin || (session_stmt && type == 'P')) && type != 'B')) {
			if (avail < look)
				break;
			scan = statement_scan(type, evbuffer_pullup(in, look), look);
		}
		if (guard && (scan & SQL_MAY_INDEX)) {
			const char *sql;
			size_t sql_len;
			if (statement_prefix(type, evbuffer_pullup(in, look), look, &sql, &sql_len) &&
			    ddl_guard_refused(c, sql, sql_len, type == 'P')) {
				if (!drain_whole(c, total))
					return;
				continue;
			}
		}
		if (type == 'P')
			c->sample_param = 0; /* a new statement: an offer waiting for the last one's Bind is void */
		if (sample && (type == 'B' || (scan & SQL_MAY_VECTOR_OP)) && routes_sampled_in(c->pool->be_dbname)) {
			if (avail < total)
				break;
			route_sample_mid(c, type, evbuffer_pullup(in, total), total);
		}
		if (!s) {
			struct pool *target = c->pool;
			if (route && !(scan & SQL_MAY_VECTOR_OP)) {
				/* a named Parse is classified by its first Bind */
				route_cycle_plain(c);
			} else if (route) {
				if (avail < total)
					break; /* routing reads the statement whole */
				target = routed_pool(c, type, evbuffer_pullup(in, total), total);
				if (!target) {
					evbuffer_drain(in, total);
					continue;
				}
			}
			if (!pool_checkout(target, c))
				return; /* queued; client_linked() resumes */
			s = c->server;
			if (!s || c->state != CL_ACTIVE)
				return;
		}
		if (c->routed) {
			/* one request cycle per routed link, each message kept whole
			 * until the answer is complete */
			if (c->cycle_sent) {
				client_pause_read(c); /* resumed when the routed read is answered */
				return;
			}
			if (avail < total)
				return;
			if (type == 'H' && s->holding) {
				server_stop_holding(s); /* the client wants answers before Sync */
				evbuffer_drain(c->replay, evbuffer_get_length(c->replay));
			}
			if (s->holding)
				evbuffer_add(c->replay, evbuffer_pullup(in, total), total);
			if (type == 'S' || type == 'Q')
				c->cycle_sent = true;
		}
		struct evbuffer *out = io_out(&s->io);
		if (evbuffer_get_length(out) >= VG_OUT_HIGH || s->pending.count >= VG_PENDING_MAX) {
			client_pause_read(c); /* resumed as the server drains or answers */
			return;
		}
		if (type == 'Q' || type == 'E')
			c->queries++;
		if (type == 'B' && c->sample_param) {
			if (avail < total)
				break;
			route_sample_bind(c, evbuffer_pullup(in, total), total);
		}
		if (pin && route_pin_applies(c, type, evbuffer_pullup(in, avail < PG_HDR_LEN + 1 ? avail : PG_HDR_LEN + 1),
		                             total, scan)) {
			if (avail < total)
				break; /* the hint is put in front of the whole text */
			if (route_pin_forward(c, s, type, evbuffer_pullup(in, total), total, out)) {
				evbuffer_drain(in, total);
				pending_emit(s);
				continue;
			}
		}
		if (session_stmt && prepared_session_applies(c, type, evbuffer_pullup(in, avail < look ? avail : look), total,
		                                             scan)) {
			if (avail < total)
				break; /* these are read whole */
			prepared_session_rewrite(c, s, type, evbuffer_pullup(in, total), total, out);
			evbuffer_drain(in, total);
			pending_emit(s);
			continue;
		}
		if (c->pool->mode == VG_POOL_TRANSACTION &&
		    (type == 'P' || type == 'B' || type == 'D' || type == 'C')) {
			if (avail < total)
				break; /* these are rewritten whole */
			uint8_t *msg = evbuffer_pullup(in, total);
			prepared_rewrite(c, s, type, msg, total, out);
			evbuffer_drain(in, total);
			pending_emit(s);
			continue;
		}
		if (pending_tracked(type))
			pending_push_request(s, PD_FORWARD, type, 0, 0);
		c->fwd_remaining = total;
	}
	/* a client waiting for a server should not buffer without bound */
	if (evbuffer_get_length(in) > VG_OUT_HIGH && !c->server)
		client_pause_read(c);
}

void client_process(struct client_conn *c)
{
	for (;;) {
		switch (c->state) {
		case CL_STARTUP:
			if (!handle_startup(c))
				return;
			continue;
		case CL_AUTH_PASSWORD:
		case CL_AUTH_SASL_INIT:
		case CL_AUTH_SASL_CONT:
			if (!handle_auth_message(c))
				return;
			continue;
		case CL_IDLE:
		case CL_ACTIVE:
			forward_loop(c);
			return;
		case CL_WAITING:
		case CL_WAIT_WELCOME:
			/* queued for a server or for the pool's first login: hold at
			 * most a window of what the client pipelines */
			if (evbuffer_get_length(io_in(&c->io)) > VG_OUT_HIGH)
				client_pause_read(c);
			return;
		case CL_AUTH_LOOKUP:
			/* nothing is due from the client before its challenge */
			if (evbuffer_get_length(io_in(&c->io)) > vg.cfg->limits.max_startup_size) {
				client_fatal(c, "08P01", "unexpected data before the authentication request", NULL);
				return;
			}
			return;
		default:
			return;
		}
	}
}

void client_resume_read(struct client_conn *c)
{
	if (c->read_paused) {
		c->read_paused = false;
		io_read(&c->io, true);
	}
}

void client_linked(struct client_conn *c)
{
	c->state = CL_ACTIVE;
	client_resume_read(c);
	client_process(c);
}

static void client_read_cb(void *arg)
{
	client_process(arg);
}

static void client_write_cb(void *arg)
{
	struct client_conn *c = arg;
	/* output drained below the low watermark: let the server talk again */
	struct server_conn *s = c->server;
	if (s && s->read_paused) {
		s->read_paused = false;
		io_read(&s->io, true);
		server_process(s);
	}
}

static void client_event_cb(short what, void *arg)
{
	struct client_conn *c = arg;
	if (what & BEV_EVENT_ERROR) {
		unsigned long e = io_tls_error(&c->io);
		if (e) {
			char buf[256];
			ERR_error_string_n(e, buf, sizeof(buf));
			log_info("C-%llu: TLS error: %s", (unsigned long long)c->id, buf);
		}
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_close(c, what & BEV_EVENT_EOF ? "client closed the connection" : "client connection error");
}
