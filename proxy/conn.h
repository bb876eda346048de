/*
 * The data plane's objects (proxy/conn.h).  A client_conn is a socket from
 * an application; a server_conn is a logged-in backend connection owned by a
 * pool (one per backend database + user, plus "sibling" pools on replicas and
 * fallbacks that share its statement registry).  A client is linked to at
 * most one server at a time: for the whole session in session mode, for one
 * transaction (or one routed read) in transaction mode.  Objects are never
 * freed inside a callback: closing moves them to a dead list that the reaper
 * frees (reaper.c).
 */
#ifndef VG_PROXY_CONN_H
#define VG_PROXY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "conf/config.h"
#include "protocol/scram.h"
#include "proxy/io.h"
#include "proxy/pending.h"
#include "proxy/prepared.h"
#include "proxy/runtime/resolver.h"
#include "proxy/runtime/runtime.h"
#include "proxy/varcache.h"

/* requests one server may owe answers for before the client must wait:
 * the kernel absorbs pipelined bytes, so the queue, not the buffer, is what
 * a flood would grow */
#define VG_PENDING_MAX 4096
/* at most this much of a statement is read for the DDL guard and routing */
#define VG_INSPECT_MAX (256 * 1024)

struct pg_async;


enum client_state {
	CL_STARTUP,        /* reading the startup packet (possibly after SSL) */
	CL_AUTH_LOOKUP,    /* auth_query running */
	CL_AUTH_PASSWORD,  /* sent md5 challenge */
	CL_AUTH_SASL_INIT, /* sent SASL mechanisms */
	CL_AUTH_SASL_CONT, /* sent server-first */
	CL_WAIT_WELCOME,   /* authenticated, waiting for the pool's first login */
	CL_IDLE,           /* logged in, no server */
	CL_WAITING,        /* queued for a server */
	CL_ACTIVE,         /* linked to a server */
	CL_CLOSING,
};

/* What only a login needs: allocated when authentication starts and freed
 * once the client is logged in, so an idle client does not carry it. */
struct client_login {
	struct scram_server_state *scram;
	char md5_stored[40];
	uint8_t md5_salt[4];
	bool auth_mock; /* unknown user: go through the motions, then fail */
	bool have_scram_keys;
	uint8_t scram_client_key[SCRAM_KEY_LEN], scram_server_key[SCRAM_KEY_LEN];
	char *authq_secret;
	struct pg_async *authq;
};

struct client_conn {
	TAILQ_ENTRY(client_conn) link;      /* vg.clients or vg.dead_clients */
	TAILQ_ENTRY(client_conn) pool_link; /* pool wait queue / welcome queue */
	bool in_pool_queue;
	bool flushing; /* on vg.closing_clients */
	enum client_state state;
	struct io_conn io;
	bool tls;
	bool is_unix;
	bool ssl_asked, gss_asked; /* each negotiation at most once */
	uint16_t port;    /* peer port, 0 on a unix socket */
	const char *host; /* peer address, pooled (strpool.h); client_addr() formats both */
	uint64_t id;
	double connect_time, wait_start, last_active;

	const char *user, *database; /* pooled (strpool.h) */
	const struct varcache *vars; /* shared set (varset_with), NULL = the server's defaults */
	uint32_t cancel_pid, cancel_key;

	struct pool *pool;       /* the pool of the client's database and user */
	struct pool *wait_pool;  /* the pool whose queue the client is in (pool or a routed sibling) */
	struct server_conn *server;
	size_t fwd_remaining; /* bytes of the current message still to forward */
	size_t discard_remaining; /* bytes of a refused message still to skip */
	/* routing: a vector read on a replica/fallback server is one request
	 * cycle; its messages are kept until the answer is complete, so that a
	 * failure there can be replayed on the primary */
	bool routed;          /* linked through a routed sibling pool */
	bool cycle_sent;      /* the routed cycle's Sync/Query is through: hold the rest */
	bool force_primary;   /* the next cycle is a replay: primary only */
	struct evbuffer *replay;
	/* pinned names (strpool_pin), not table entries: a reload may rebuild
	 * the route and backend tables; NULL when unset */
	const char *route_name;
	const char *route_backend;
	const char *vread_route; /* the cycle is a vector read of this managed index */
	double vread_start;
	/* a vector read whose vector is parameter sample_param (0 = none) of
	 * the Bind still to come: offered to sample_route's traffic sample
	 * when that Bind arrives */
	uint16_t sample_param;
	const char *sample_route;
	bool read_paused;     /* server output above the high watermark */
	bool guard_skip;      /* a refused Parse: discard extended messages until Sync */

	struct client_login *login; /* while authenticating (auth.c), NULL after */

	struct name_map stmts; /* transaction mode: client name -> statement */
	uint64_t queries;
};

enum server_state {
	SV_RESOLVING,  /* waiting for the backend host's address (resolver.h) */
	SV_CONNECTING, /* TCP connect in progress */
	SV_SSL_REQ,    /* sent SSLRequest, waiting for 'S'/'N' */
	SV_LOGIN,      /* startup sent, authenticating */
	SV_IDLE,       /* in the pool */
	SV_ACTIVE,     /* linked to a client */
	SV_RESET,      /* running internal reset queries, no client */
	SV_CLOSING,
};

/* Whether a server session of a read-write pool (target_session_attrs,
 * pool_writable_only) may serve clients.  PostgreSQL 14+ says so at login
 * (in_hot_standby, default_transaction_read_only); older servers, sessions
 * that hint at a change (25006, a ParameterStatus) and sessions pooled
 * before a reload asked for read-write are asked with a role check query
 * before they are pooled again.  server_rw_set is the one transition. */
enum server_rw {
	SRW_UNKNOWN,   /* not known (yet): logging in, or pooled while the pool took any session */
	SRW_CHECKING,  /* the role check query runs */
	SRW_WRITABLE,  /* neither in recovery nor read-only by configuration */
	SRW_SUSPECT,   /* writable at login, but its session hinted read-only: checked before pooling */
	SRW_STANDBY,   /* in recovery: never pooled, closed once its client's transaction ends */
	SRW_READ_ONLY, /* default_transaction_read_only on: the same */
};

struct server_conn {
	TAILQ_ENTRY(server_conn) link;      /* pool->servers or vg.dead_servers */
	TAILQ_ENTRY(server_conn) idle_link; /* pool->idle */
	bool in_idle;
	enum server_state state;
	struct io_conn io;
	bool tls;
	struct pool *pool;
	struct client_conn *client;
	uint64_t id;
	double connect_time, last_used;
	struct resolver_wait dns;      /* SV_RESOLVING */
	struct sockaddr_storage addr;  /* where it connects: cancel requests go there too */
	socklen_t addrlen;             /* 0 until the address is known */

	uint32_t be_pid, be_key;
	char txn_status;
	size_t fwd_remaining;
	bool fwd_drop; /* the message being streamed is swallowed */
	bool err_skip; /* server is discarding extended messages until Sync */
	bool read_paused;
	struct pending_queue pending;
	struct id_set prepared;
	struct varcache vars, login_vars;
	struct scram_client_state *scram;
	bool close_needed; /* an internal query failed: do not reuse */
	enum server_rw rw; /* read-write pools only: may it take writes? */
	bool holding;       /* routed read: answers collect in `hold` until ReadyForQuery */
	struct evbuffer *hold;
	double req_started; /* when the oldest unanswered client request was sent */
	/* ParameterStatus seen during login, for the pool's welcome */
	char **ps_names, **ps_values;
	int n_ps;
};


struct pool {
	struct pool *next;
	struct pool *family; /* routed sibling: the client pool it serves reads for; NULL for client pools */
	char *be_name;       /* backend name in the config */
	struct stmt_registry *reg; /* shared by a client pool and its siblings: statement ids agree */
	char *db_name;  /* as the client asked */
	char *user;     /* client user */
	char *be_dbname, *be_user;
	char *be_host;
	int be_port;
	char *be_password; /* plaintext, or NULL */
	char *be_md5;      /* stored md5 for passthrough, or NULL */
	bool have_scram_keys;
	uint8_t scram_client_key[SCRAM_KEY_LEN], scram_server_key[SCRAM_KEY_LEN];
	enum vg_pool_mode mode;
	int pool_size, min_pool_size, max_db_connections;
	/* read-write: only writable sessions serve clients (the backend's
	 * target_session_attrs); routed siblings take any */
	enum vg_session_attrs session_attrs;

	struct server_list servers; /* every server of this pool */
	struct server_list idle;    /* LIFO of idle ones */
	int n_servers, n_connecting;
	struct client_list waiting; /* clients queued for a server */
	struct client_list welcome; /* clients waiting for the first login */
	int n_clients;

	/* ParameterStatus of the first successful login, replayed to clients */
	char **welcome_names, **welcome_values;
	int n_welcome;
	bool welcome_ready;
	char *last_login_error; /* ErrorResponse bytes of the last failed login */
	size_t last_login_error_len;
	/* login failures in a row (0 = logins work): while failing, one login at
	 * a time, each after a growing backoff (pool.c) */
	int login_failures;
	int readonly_refusals;      /* of those, sessions refused as read-only (the backend logs those) */
	struct sockaddr_storage ro_addrs[4]; /* the addresses refused as read-only in this episode */
	int n_ro_addrs;
	bool login_error_permanent; /* wrong password, no such database: clients fail at once */
	double next_login_at;
	double failing_since;
	int held_limit;             /* after "too many clients": servers this backend gave us, 0 = none */
	/* a permanent refusal holds until then (0: for good); the backend's
	 * name not resolving holds until it is looked up again */
	double permanent_until;
	struct event *login_timer;

	struct stmt_registry registry;

	/* traffic counters (watch step, later /metrics) */
	uint64_t stat_requests;   /* request cycles answered with ReadyForQuery */
	uint64_t stat_errors;     /* ErrorResponses delivered to clients, but: */
	uint64_t stat_outage_errors; /* those that say the server went away (pg_sqlstate_server_outage) */
	double stat_latency_sum;  /* seconds, over stat_requests */
};




/* "host:port" for log lines (or "unix"), formatted into buf when needed */
static inline const char *client_addr(const struct client_conn *c, char *buf, size_t len)
{
	if (!c->port)
		return c->host ? c->host : "?";
	snprintf(buf, len, "%s:%u", c->host, (unsigned)c->port);
	return buf;
}

/* Where a server's answers to its client go: the hold buffer of a routed
 * read until it is complete, else the client's socket. */
static inline struct evbuffer *conn_client_out(struct server_conn *s)
{
	return s->holding ? s->hold : io_out(&s->client->io);
}

#endif
