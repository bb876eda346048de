/*
 * Non-blocking libpq: PQconnectStartParams/PQconnectPoll for the login, then
 * PQsendQueryParams and PQconsumeInput/PQisBusy on socket readiness, with one
 * overall timeout.  Used for auth_query lookups.
 */
#include "proxy/pgasync.h"
#include "proxy/vecgate.h"

#include <stdlib.h>
#include <string.h>

enum pg_async_state { PA_CONNECTING, PA_SENDING, PA_READING };

struct pg_async {
	struct event_base *base;
	PGconn *conn;
	enum pg_async_state state;
	struct event *io;
	struct event *timer;
	char *sql;
	int nparams;
	char **params;
	PGresult *result;
	pg_async_cb cb;
	void *arg;
};

static void pa_io_cb(evutil_socket_t fd, short what, void *arg);

static void pa_free(struct pg_async *a)
{
	if (a->io)
		event_free(a->io);
	if (a->timer)
		event_free(a->timer);
	if (a->result)
		PQclear(a->result);
	if (a->conn)
		PQfinish(a->conn);
	for (int i = 0; i < a->nparams; i++)
		free(a->params[i]);
	free(a->params);
	free(a->sql);
	free(a);
}

static void pa_finish(struct pg_async *a, const char *error)
{
	pg_async_cb cb = a->cb;
	void *arg = a->arg;
	a->cb = NULL;
	if (cb)
		cb(arg, error ? NULL : a->result, error);
	pa_free(a);
}

static void pa_fail_conn(struct pg_async *a)
{
	char msg[512];
	const char *e = a->conn ? PQerrorMessage(a->conn) : "out of memory";
	snprintf(msg, sizeof(msg), "%s", e && *e ? e : "connection failed");
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = 0;
	pa_finish(a, msg);
}

static void pa_wait(struct pg_async *a, short what)
{
	if (a->io)
		event_free(a->io);
	a->io = event_new(a->base, PQsocket(a->conn), what, pa_io_cb, a);
	event_add(a->io, NULL);
}

static void pa_send(struct pg_async *a)
{
	if (!PQsendQueryParams(a->conn, a->sql, a->nparams, NULL, (const char *const *)a->params, NULL,
	                       NULL, 0)) {
		pa_fail_conn(a);
		return;
	}
	a->state = PA_SENDING;
	pa_wait(a, EV_WRITE);
}

static void pa_io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pg_async *a = arg;
	switch (a->state) {
	case PA_CONNECTING:
		switch (PQconnectPoll(a->conn)) {
		case PGRES_POLLING_READING:
			pa_wait(a, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			pa_wait(a, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			PQsetnonblocking(a->conn, 1);
			pa_send(a);
			return;
		default:
			pa_fail_conn(a);
			return;
		}
	case PA_SENDING: {
		int r = PQflush(a->conn);
		if (r < 0) {
			pa_fail_conn(a);
		} else if (r == 1) {
			pa_wait(a, EV_WRITE);
		} else {
			a->state = PA_READING;
			pa_wait(a, EV_READ);
		}
		return;
	}
	case PA_READING:
		if (!PQconsumeInput(a->conn)) {
			pa_fail_conn(a);
			return;
		}
		while (!PQisBusy(a->conn)) {
			PGresult *r = PQgetResult(a->conn);
			if (!r) {
				if (!a->result) {
					pa_finish(a, "no result");
					return;
				}
				ExecStatusType st = PQresultStatus(a->result);
				if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
					char msg[512];
					snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(a->result));
					pa_finish(a, msg);
					return;
				}
				pa_finish(a, NULL);
				return;
			}
			if (!a->result)
				a->result = r;
			else
				PQclear(r);
		}
		pa_wait(a, EV_READ);
		return;
	}
}

static void pa_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pa_finish(arg, "timed out");
}

struct pg_async *pg_async_oneshot(struct event_base *base, const char *const *keywords,
                                  const char *const *values, const char *sql, int nparams,
                                  const char *const *params, double timeout_sec,
                                  pg_async_cb cb, void *arg)
{
	struct pg_async *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->base = base;
	a->cb = cb;
	a->arg = arg;
	a->sql = strdup(sql);
	a->nparams = nparams;
	a->params = calloc((size_t)nparams + 1, sizeof(char *));
	if (!a->sql || !a->params)
		goto failed;
	for (int i = 0; i < nparams; i++)
		if (!(a->params[i] = strdup(params[i])))
			goto failed;
	a->conn = PQconnectStartParams(keywords, values, 0);
	if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD)
		goto failed;
	a->state = PA_CONNECTING;
	a->timer = evtimer_new(base, pa_timeout_cb, a);
	if (timeout_sec > 0) {
		struct timeval tv = {(long)timeout_sec, (long)((timeout_sec - (long)timeout_sec) * 1e6)};
		evtimer_add(a->timer, &tv);
	}
	pa_wait(a, EV_WRITE);
	return a;
failed:
	a->cb = NULL;
	pa_free(a);
	return NULL;
}

void pg_async_cancel(struct pg_async *a)
{
	a->cb = NULL;
	pa_free(a);
}
