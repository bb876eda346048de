/*
 * Pools (pool.c): one per backend database + user, holding its server
 * connections, the clients waiting for one, the welcome of the first login
 * and the login backoff.  Routed siblings are pools of the same client pool
 * on a replica or fallback backend.
 */
#ifndef VG_PROXY_POOL_H
#define VG_PROXY_POOL_H

#include "proxy/conn.h"

struct pool *pool_find_or_create(const struct vg_database *db, const char *dbname,
                                 const char *user, struct client_conn *c);
/* Link c to a server now (returns true) or queue it (false). */
bool pool_checkout(struct pool *p, struct client_conn *c);
/* c authenticated: send the welcome now or once the first server logs in */
void pool_client_login(struct pool *p, struct client_conn *c);
void pool_dequeue(struct client_conn *c);
void pool_server_available(struct server_conn *s); /* idle: give to a waiter or park */
void pool_server_login_ok(struct server_conn *s);
/* A backend login failed: err_msg is the backend's ErrorResponse (its
 * SQLSTATE says whether waiting helps), else `transient` does (a refused or
 * lost connection: yes; a TLS or authentication-method mismatch: no). */
void pool_server_login_failed(struct pool *p, const uint8_t *err_msg, size_t len, const char *text, bool transient);
/* The backend's host name did not resolve (the resolver logged why): its
 * clients are told at once, until the name is looked up again. */
void pool_server_unresolved(struct pool *p, const char *text);
void pool_server_gone(struct server_conn *s);
/* A session of read-write pool s->pool was found read-only (at login or by
 * a role check; s->rw says which): counted and logged for the backend, the
 * pool backs off as after a failed login (its clients keep waiting within
 * query_wait), and every session of the backend stops being pooled.  The
 * caller closes s. */
void pool_server_read_only(struct server_conn *s);
static inline bool pool_writable_only(const struct pool *p)
{
	return p->session_attrs == VG_TSA_READ_WRITE;
}
/* The pool serving p's clients on another backend (replica/fallback). */
struct pool *pool_sibling(struct pool *p, const char *backend_name);
bool pool_usable(const struct pool *p); /* not in login backoff */
void pools_backend_up(const char *backend_name); /* health checks see it again: end login backoff */
void pool_release(struct server_conn *s); /* transaction/session end: reset and park */
/* Timeouts of every client, server and pool; true while one of them has a
 * deadline the calm pace (1 s) would overrun. */
bool pool_janitor(double now);
void janitor_start(void); /* vg.janitor is created: arm it */
/* The janitor's next pace, from what pool_janitor said (and shutdown). */
void janitor_pace(bool busy);
/* A deadline starts (login, wait, connect): back to the fast pace. */
void janitor_hurry(void);
void pools_apply_config(void);
void pools_free(void);
bool pool_has_credentials(const struct pool *p);

/* Sum of the counters of every pool serving backend database `dbname`. */
struct traffic_stats {
	uint64_t requests, errors; /* errors: statements that failed, not a server that went away */
	double latency_sum;
};
void pools_traffic(const char *dbname, struct traffic_stats *out);

/* A pool as the admin views show it: counts only, no internals. */
struct pool_view {
	const char *database, *user, *backend;
	int idle, active, connecting, waiting;
	uint64_t requests, errors; /* errors: statements that failed, not a server that went away */
	double latency_sum;
};
/* Call fn for every pool; stops early when fn returns false. */
void pools_foreach_view(bool (*fn)(const struct pool_view *v, void *arg), void *arg);

#endif
