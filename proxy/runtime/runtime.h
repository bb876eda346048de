/*
 * The process-wide runtime (runtime.c): the event loop, the configuration in
 * force, TLS contexts and the lists every layer above hangs its objects on.
 * It knows connections only as list heads; their layouts live in the data
 * plane (proxy/conn.h).  Higher layers register hooks here instead of being
 * called by name from below, so dependencies run one way.
 */
#ifndef VG_PROXY_RUNTIME_RUNTIME_H
#define VG_PROXY_RUNTIME_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/config.h"
#include "proxy/runtime/log.h"

/* glibc's sys/queue.h lacks the _SAFE variant */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST((head)); (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

struct client_conn;
struct server_conn;
struct pool;
struct listener;
TAILQ_HEAD(client_list, client_conn);
TAILQ_HEAD(server_list, server_conn);

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

double now_sec(void); /* monotonic seconds */
/* "vecgate@<host>:<pid>": who this instance is, in vecgate.routes and vecgate.jobs */
const char *vg_instance_id(void);
/* The data plane stamps messages with the time of the socket event that
 * brought them: one clock read per read event, not several per message. */
extern double vg_now;
static inline void vg_clock_tick(void)
{
	vg_now = now_sec();
}
static inline double now_cached(void)
{
	return vg_now;
}
struct timeval timeval_of(double seconds); /* for event_add() */
void random_bytes(void *buf, size_t len);

/* Outcome of an operator request, so the admin layer picks the HTTP status
 * from a type, never from message text. */
enum op_status {
	OP_OK = 0,
	OP_NOT_FOUND,  /* no such index or job */
	OP_CONFLICT,   /* not possible in the current state */
	OP_INVALID,    /* the request itself is wrong */
};

#endif
