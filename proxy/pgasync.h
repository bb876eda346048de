/*
 * libpq connections driven by the libevent loop (connect, one query, result)
 * so that lookups and maintenance work never block client traffic.
 * The callback runs exactly once unless pg_async_cancel() came first; `res`
 * is NULL when `error` is set.  The connection is closed after the callback.
 */
#ifndef VG_PROXY_PGASYNC_H
#define VG_PROXY_PGASYNC_H

#include <event2/event.h>
#include <libpq-fe.h>

struct pg_async;
typedef void (*pg_async_cb)(void *arg, PGresult *res, const char *error);

struct pg_async *pg_async_oneshot(struct event_base *base, const char *const *keywords,
                                  const char *const *values, const char *sql, int nparams,
                                  const char *const *params, double timeout_sec,
                                  pg_async_cb cb, void *arg);
void pg_async_cancel(struct pg_async *a);

#endif
