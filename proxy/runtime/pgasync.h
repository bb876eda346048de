/*
 * libpq connections driven by the libevent loop, so that lookups and
 * maintenance work (an index build can take hours) never block client
 * traffic or the admin port.
 *
 * A pg_session connects asynchronously, then runs queued statements one at a
 * time (PQsendQueryParams, or PQsendQuery for parameterless strings that may
 * hold several statements; PQconsumeInput / PQisBusy on socket readiness).
 * Each statement's callback runs exactly once with its last result and, if
 * it failed, an error text (res then carries the SQLSTATE, or is NULL when
 * there was no result).  Results are freed after the callback returns.
 * pg_session_close() never calls pending callbacks; the on_lost callback
 * reports a lost connection (pending statements' callbacks are not called
 * then either), always from the loop, never from inside pg_session_query.  pg_async_oneshot() is connect + one query +
 * close, for auth_query.
 */
#ifndef VG_PROXY_RUNTIME_PGASYNC_H
#define VG_PROXY_RUNTIME_PGASYNC_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct pg_session;
typedef void (*pg_result_cb)(void *arg, PGresult *res, const char *error);
typedef void (*pg_state_cb)(void *arg, const char *error); /* error NULL = connected */
typedef void (*pg_notify_cb)(void *arg, const char *channel, const char *payload);
/* severity (NOTICE, WARNING, ...), primary message, detail (or NULL) */
typedef void (*pg_notice_cb)(void *arg, const char *severity, const char *message, const char *detail);

struct pg_session *pg_session_connect(struct event_base *base, const char *const *keywords,
                                      const char *const *values, double connect_timeout,
                                      pg_state_cb on_connect, pg_state_cb on_lost, void *arg);
/* Why the last pg_session_connect() returned NULL (libpq may fail at once). */
const char *pg_session_connect_error(void);
/* Queue a statement; returns 0, or -1 if the session is closed. */
int pg_session_query(struct pg_session *s, const char *sql, int nparams, const char *const *params,
                     pg_result_cb cb, void *arg);
/* Queue an execution of a statement PREPAREd on this session (its cached,
 * possibly generic, plan is used); same contract as pg_session_query. */
int pg_session_execute(struct pg_session *s, const char *name, int nparams, const char *const *params,
                       pg_result_cb cb, void *arg);
/* COPY ... TO STDOUT: each CopyData message's bytes go to chunk_cb as they
 * arrive (valid during the call only), then cb gets the final result as for
 * pg_session_query.  After a few MB of data per turn the session lets the
 * loop run other events and goes on by itself.  chunk_cb returning
 * PG_COPY_PAUSE stops reading (the server waits on TCP backpressure) until the owner calls
 * pg_session_resume_copy(); chunk_cb is not called meanwhile.  Returns 0, or
 * -1 if the session is closed. */
enum pg_copy_flow { PG_COPY_MORE = 0, PG_COPY_PAUSE = 1 };
typedef enum pg_copy_flow (*pg_copy_cb)(void *arg, const char *data, size_t len);
int pg_session_copy_out(struct pg_session *s, const char *sql, pg_copy_cb chunk_cb, pg_result_cb cb, void *arg);
/* Stop the session's COPY TO STDOUT, queued or streaming: the server is
 * told to cancel it (PQcancel; again if it started anyway) and its further
 * data is dropped, chunk_cb is not called again.  Its result callback still
 * runs, with the cancel error or, if the COPY had already ended, success.
 * A paused COPY reads on (to its end).  false when the session has no such COPY. */
bool pg_session_cancel_copy(struct pg_session *s);
/* Ask the server to cancel what runs on the session now (its cancel key,
 * over a connection of its own, sent from a thread of its own so the loop
 * never waits on it; the statement's callback then gets the cancel error,
 * or its result if it ended first).  false, with err, when the request
 * could not be started. */
bool pg_session_cancel(struct pg_session *s, char *err, size_t errlen);
/* Read on after PG_COPY_PAUSE (from the loop: chunk_cb is not called from
 * inside this call).  Nothing happens when the session's COPY is not paused. */
void pg_session_resume_copy(struct pg_session *s);
/* Deliver NOTIFY messages (after LISTEN) to cb with the session's arg. */
void pg_session_on_notify(struct pg_session *s, pg_notify_cb cb);
/* Deliver the server's NOTICEs and WARNINGs on this session to cb (with
 * the session's arg), besides the debug log. */
void pg_session_on_notice(struct pg_session *s, pg_notice_cb cb);
bool pg_session_idle(const struct pg_session *s);
bool pg_session_connected(const struct pg_session *s);
int pg_session_backend_pid(const struct pg_session *s);
PGconn *pg_session_conn(struct pg_session *s);
void pg_session_close(struct pg_session *s);
/* Is a failed statement worth retrying (connection lost, lock_timeout,
 * serialization, resources, shutdown)?  NULL res counts as a lost connection. */
bool pg_result_transient(const PGresult *res);

struct pg_async;
typedef void (*pg_async_cb)(void *arg, PGresult *res, const char *error);
struct pg_async *pg_async_oneshot(struct event_base *base, const char *const *keywords,
                                  const char *const *values, const char *sql, int nparams,
                                  const char *const *params, double timeout_sec,
                                  pg_async_cb cb, void *arg);
void pg_async_cancel(struct pg_async *a);

#endif
