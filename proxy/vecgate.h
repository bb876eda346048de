/*
 * proxy/: objects and their lifetimes.
 *
 * One process, one libevent loop.  A client_conn is a socket from an
 * application; a server_conn is a logged-in backend connection owned by a
 * pool (one per backend database + user).  A client is linked to at most one
 * server at a time: for the whole session in session mode, for one
 * transaction in transaction mode.  Bytes move between linked connections by
 * header-sized peeks and evbuffer chain moves; only the few messages that must
 * be rewritten (named prepared statements in transaction mode, login) are
 * pulled up whole.  Objects are never freed inside a callback: closing moves
 * them to a dead list that a deferred event frees.
 */
#ifndef VG_PROXY_VECGATE_H
#define VG_PROXY_VECGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/config.h"

/* glibc's sys/queue.h lacks the _SAFE variant */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST((head)); (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif
#include "protocol/pgproto.h"
#include "protocol/scram.h"
#include "routing/classify.h"

/* ---- logging (log.c) ---- */
void log_init(const struct vg_logging *cfg);
void log_set_level(enum vg_log_level lvl);
void vg_log(enum vg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
extern enum vg_log_level vg_log_min_level;
/* per-message tracing sits on the hot path: skip the call when disabled */
#define log_debug(...)                                                                             \
	do {                                                                                           \
		if (vg_log_min_level <= VG_LOG_DEBUG)                                                      \
			vg_log(VG_LOG_DEBUG, __VA_ARGS__);                                                     \
	} while (0)
#define log_info(...) vg_log(VG_LOG_INFO, __VA_ARGS__)
#define log_warn(...) vg_log(VG_LOG_WARNING, __VA_ARGS__)
#define log_error(...) vg_log(VG_LOG_ERROR, __VA_ARGS__)

double now_sec(void); /* monotonic seconds */
void random_bytes(void *buf, size_t len);

/* ---- session variables a pooled client expects to keep (varcache.c) ---- */
enum {
	VAR_CLIENT_ENCODING,
	VAR_DATESTYLE,
	VAR_TIMEZONE,
	VAR_INTERVALSTYLE,
	VAR_STANDARD_CONFORMING_STRINGS,
	VAR_APPLICATION_NAME,
	VAR_EXTRA_FLOAT_DIGITS,
	VAR_SEARCH_PATH,
	VAR_STATEMENT_TIMEOUT,
	VAR_COUNT
};
struct varcache {
	char *val[VAR_COUNT]; /* NULL = the server's default */
};
int varcache_lookup(const char *name); /* index or -1 */
const char *varcache_name(int idx);
void varcache_set(struct varcache *vc, int idx, const char *value);
void varcache_copy(struct varcache *dst, const struct varcache *src);
void varcache_clear(struct varcache *vc);
/* Append to sql the SET/RESET commands that make `server` match `client`,
 * and update `server` to the values it will have.  Returns the count. */
int varcache_sync_sql(const struct varcache *client, struct varcache *server, struct pg_buf *sql);

/* ---- what the server owes the client (prepared.c) ---- */
enum pending_kind {
	PD_FORWARD,  /* client request; its response goes to the client */
	PD_SYNTH,    /* answered by us: emit `synth` when it reaches the head */
	PD_DROP,     /* request vecgate injected; swallow its response */
	PD_INTERNAL, /* query vecgate injected; swallow everything up to 'Z' */
};
struct pending {
	uint8_t kind;
	uint8_t req;    /* client message type the entry stands for */
	uint8_t synth;  /* PD_SYNTH: message type to emit ('Z': ReadyForQuery with the current status) */
	uint32_t stmt;  /* statement id this request prepares on the server, or 0 */
	uint8_t *msg;   /* PD_SYNTH: whole messages to emit first (owned), or NULL */
	uint32_t msg_len;
};
struct pending_queue {
	struct pending *items;
	size_t head, count, cap;
};
void pq_push(struct pending_queue *q, struct pending p);
struct pending *pq_head(struct pending_queue *q);
void pq_pop(struct pending_queue *q);
void pq_free(struct pending_queue *q);

/* A statement text known to a pool; servers prepare it as "vg_<id>". */
struct prep_stmt {
	uint32_t id;
	uint64_t hash;
	uint8_t *tail; /* Parse body after the name: query, param types */
	size_t tail_len;
	uint8_t route_kind;     /* 0 not classified yet, 1 stays on the primary, 2 vector read */
	struct sql_class *cls;  /* route_kind 2: the classification, for route decisions per Bind */
	struct prep_stmt *next;
};
struct stmt_registry {
	struct prep_stmt **buckets;
	size_t nbuckets, count;
	uint32_t next_id;
};
struct prep_stmt *registry_intern(struct stmt_registry *r, const uint8_t *tail, size_t len);
void registry_free(struct stmt_registry *r);
void stmt_server_name(uint32_t id, char out[24]);

/* client statement name -> prep_stmt */
struct name_map_entry {
	char *name;
	struct prep_stmt *stmt;
	struct name_map_entry *next;
};
struct name_map {
	struct name_map_entry **buckets;
	size_t nbuckets, count;
};
struct prep_stmt *name_map_get(struct name_map *m, const char *name);
void name_map_put(struct name_map *m, const char *name, struct prep_stmt *st);
void name_map_del(struct name_map *m, const char *name);
void name_map_free(struct name_map *m);

/* which statement ids a server has prepared, and in which order they were
 * last used (for closing the least recently used at max_prepared_statements) */
struct id_set {
	uint8_t *bits;
	size_t nbytes;
	uint32_t *order; /* least recently used first */
	size_t count, cap;
};
bool id_set_has(const struct id_set *s, uint32_t id);
void id_set_add(struct id_set *s, uint32_t id);
void id_set_del(struct id_set *s, uint32_t id);
void id_set_clear(struct id_set *s);
void id_set_touch(struct id_set *s, uint32_t id); /* mark as just used */
void id_set_free(struct id_set *s);

/* ---- write-through output for plain sockets (flush.c) ---- */
struct io_out {
	TAILQ_ENTRY(io_out) link;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *cb;
	struct event *rev; /* own read event, plain sockets */
	bufferevent_data_cb on_read;
	bufferevent_event_cb on_event;
	void *arg;
	bool queued;
	bool plain;
	bool want_read;
};
/* Take over reading and writing of a plain socket's bufferevent (TLS ones
 * are left to libevent); reading starts with io_read(io, true). */
void io_out_attach(struct io_out *io, struct bufferevent *bev, bool tls, bufferevent_data_cb on_read,
                   bufferevent_event_cb on_event, void *arg);
void io_read(struct io_out *io, bool on);
void io_connected(struct io_out *io); /* a connecting socket now has its fd */
void io_out_detach(struct io_out *io);
void io_out_drained(struct io_out *io); /* from the write callback */
void io_flush_shutdown(void);

/* ---- connections ---- */
struct pool;
struct server_conn;

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

struct client_conn {
	TAILQ_ENTRY(client_conn) link;      /* vg.clients or vg.dead_clients */
	TAILQ_ENTRY(client_conn) pool_link; /* pool wait queue / welcome queue */
	bool in_pool_queue;
	bool flushing; /* on vg.closing_clients */
	enum client_state state;
	int fd;
	struct bufferevent *bev;
	struct io_out out;
	bool tls;
	bool is_unix;
	char addr[64];
	uint64_t id;
	double connect_time, wait_start, last_active;

	char *user, *database;
	struct varcache vars;
	uint32_t cancel_pid, cancel_key;

	struct pool *pool;       /* the pool of the client's database and user */
	struct pool *wait_pool;  /* the pool whose queue the client is in (pool or a routed sibling) */
	struct server_conn *server;
	size_t fwd_remaining; /* bytes of the current message still to forward */
	/* routing: a vector read on a replica/fallback server is one request
	 * cycle; its messages are kept until the answer is complete, so that a
	 * failure there can be replayed on the primary */
	bool routed;          /* linked through a routed sibling pool */
	bool cycle_sent;      /* the routed cycle's Sync/Query is through: hold the rest */
	bool force_primary;   /* the next cycle is a replay: primary only */
	struct evbuffer *replay;
	/* names, not pointers: a reload may rebuild the route and backend tables */
	char route_name[64];
	char route_backend[64];
	char vread_route[64]; /* the cycle is a vector read of this managed index */
	double vread_start;
	bool read_paused;     /* server output above the high watermark */
	bool guard_skip;      /* a refused Parse: discard extended messages until Sync */

	/* auth */
	struct scram_server_state *scram;
	char md5_stored[40];
	uint8_t md5_salt[4];
	bool auth_mock; /* unknown user: go through the motions, then fail */
	bool have_scram_keys;
	uint8_t scram_client_key[SCRAM_KEY_LEN], scram_server_key[SCRAM_KEY_LEN];
	char *authq_secret;
	struct pg_async *authq;

	struct name_map stmts; /* transaction mode: client name -> statement */
	uint64_t queries;
};

enum server_state {
	SV_CONNECTING, /* TCP connect in progress */
	SV_SSL_REQ,    /* sent SSLRequest, waiting for 'S'/'N' */
	SV_LOGIN,      /* startup sent, authenticating */
	SV_IDLE,       /* in the pool */
	SV_ACTIVE,     /* linked to a client */
	SV_RESET,      /* running internal reset queries, no client */
	SV_CLOSING,
};

struct server_conn {
	TAILQ_ENTRY(server_conn) link;      /* pool->servers or vg.dead_servers */
	TAILQ_ENTRY(server_conn) idle_link; /* pool->idle */
	bool in_idle;
	enum server_state state;
	int fd;
	struct bufferevent *bev;
	struct io_out out;
	bool tls;
	struct pool *pool;
	struct client_conn *client;
	uint64_t id;
	double connect_time, last_used;

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
	bool holding;       /* routed read: answers collect in `hold` until ReadyForQuery */
	struct evbuffer *hold;
	double req_started; /* when the oldest unanswered client request was sent */
	/* ParameterStatus seen during login, for the pool's welcome */
	char **ps_names, **ps_values;
	int n_ps;
};

TAILQ_HEAD(client_list, client_conn);
TAILQ_HEAD(server_list, server_conn);

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
	double last_login_fail;

	struct stmt_registry registry;

	/* traffic counters (watch step, later /metrics) */
	uint64_t stat_requests;   /* request cycles answered with ReadyForQuery */
	uint64_t stat_errors;     /* ErrorResponses delivered to clients */
	double stat_latency_sum;  /* seconds, over stat_requests */
};

/* Sum of the counters of every pool serving backend database `dbname`. */
struct traffic_stats {
	uint64_t requests, errors;
	double latency_sum;
};
void pools_traffic(const char *dbname, struct traffic_stats *out);

struct listener;

struct vg_runtime {
	struct event_base *base;
	struct vg_config *cfg;
	SSL_CTX *client_tls;
	SSL_CTX *server_tls;
	struct client_list clients;
	struct client_list dead_clients;
	struct client_list closing_clients; /* flushing a last message */
	struct server_list dead_servers;
	int n_clients;
	struct pool *pools;
	struct listener *listeners;
	struct event *janitor;
	struct event *reaper;
	struct event *sig_hup, *sig_term, *sig_int;
	bool shutting_down;
	double shutdown_deadline;
	uint64_t next_id;
	int exit_code;
};
extern struct vg_runtime vg;

/* high/low watermarks for backpressure between linked connections */
#define VG_OUT_HIGH (512 * 1024)
#define VG_OUT_LOW (128 * 1024)

/* main.c */
void vg_schedule_reap(void);
int vg_reload(void);

/* listener.c */
int listeners_start(void);
void listeners_stop(void);

/* tls.c */
SSL_CTX *tls_client_ctx_new(const struct vg_client_tls *cfg, char *err, size_t errlen);
SSL_CTX *tls_server_ctx_new(const struct vg_server_tls *cfg, char *err, size_t errlen);

/* client.c */
void client_accept(int fd, const char *addr, bool is_unix);
void client_close(struct client_conn *c, const char *reason);
void client_send_error(struct client_conn *c, const char *severity, const char *sqlstate,
                       const char *msg, const char *detail);
void client_fatal(struct client_conn *c, const char *sqlstate, const char *msg, const char *detail);
void client_process(struct client_conn *c);
void client_linked(struct client_conn *c); /* a server was assigned */
void client_login_done(struct client_conn *c); /* welcome params known: finish login */
void client_free(struct client_conn *c);
/* A routed read's server failed before answering: re-run it on the primary. */
void client_replay_on_primary(struct client_conn *c, const char *why);
void client_route_done(struct client_conn *c); /* the routed cycle is answered */
struct client_conn *client_find_by_cancel_key(uint32_t pid, uint32_t key);

/* auth.c: the client-facing login exchange */
void auth_begin(struct client_conn *c);
void auth_handle_message(struct client_conn *c, uint8_t type, const uint8_t *body, size_t len);
void auth_release(struct client_conn *c);

/* server.c */
struct server_conn *server_new(struct pool *p);
void server_close(struct server_conn *s, const char *reason);
void server_free(struct server_conn *s);
void server_link(struct server_conn *s, struct client_conn *c);
void server_unlink_client_gone(struct server_conn *s);
bool server_is_clean(const struct server_conn *s);
void server_send_internal(struct server_conn *s, const char *sql);
void server_process(struct server_conn *s);
void server_emit_synth(struct server_conn *s);
void server_stop_holding(struct server_conn *s); /* deliver what is held, stop holding */

/* pool.c */
struct pool *pool_find_or_create(const struct vg_database *db, const char *dbname,
                                 const char *user, struct client_conn *c);
/* Link c to a server now (returns true) or queue it (false). */
bool pool_checkout(struct pool *p, struct client_conn *c);
/* c authenticated: send the welcome now or once the first server logs in */
void pool_client_login(struct pool *p, struct client_conn *c);
void pool_dequeue(struct client_conn *c);
void pool_server_available(struct server_conn *s); /* idle: give to a waiter or park */
void pool_server_login_ok(struct server_conn *s);
void pool_server_login_failed(struct pool *p, const uint8_t *err_msg, size_t len, const char *text);
void pool_server_gone(struct server_conn *s);
/* The pool serving p's clients on another backend (replica/fallback). */
struct pool *pool_sibling(struct pool *p, const char *backend_name);
bool pool_usable(const struct pool *p); /* not in login backoff */
void pools_backend_up(const char *backend_name); /* health checks see it again: end login backoff */
void pool_release(struct server_conn *s); /* transaction/session end: reset and park */
void pool_janitor(double now);
void pools_apply_config(void);
void pools_free(void);
bool pool_has_credentials(const struct pool *p);

/* server.c: resolve a backend host (IP, name, or unix socket directory) */
struct sockaddr_storage;
int backend_sockaddr(const char *host, int port, struct sockaddr_storage *sa, unsigned *salen,
                     char *err, size_t errlen);

/* cancel.c */
void cancel_forward(const struct server_conn *s);

#endif
