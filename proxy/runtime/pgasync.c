/*
 * Non-blocking libpq on the event loop: the backend's host name resolved by
 * resolver.c (libpq's own lookup would block the loop) and handed to libpq as
 * hostaddr, PQconnectStartParams/PQconnectPoll for the login, then one
 * statement at a time from a queue with
 * PQsendQueryParams, PQflush and PQconsumeInput/PQisBusy on socket
 * readiness.  The socket can change during connection polling (libpq may try
 * several addresses), so the io event is re-created for every wait.
 *
 * COPY TO STDOUT streams: each CopyData message goes to the owner as it
 * arrives (PQgetCopyData, async), and a whole table can come through.  The
 * owner decodes each chunk, so after COPY_BYTES_PER_TURN bytes the session
 * stops reading and goes on from a zero timer: client traffic on the same
 * loop waits at most one slice, and the server waits on TCP backpressure
 * meanwhile.  An owner that hands the heavy work to another thread pauses
 * the read while it cannot take more (PG_COPY_PAUSE): nothing is read, no
 * timer runs, until it resumes.
 */
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/resolver.h"
#include "proxy/runtime/runtime.h"

#include <arpa/inet.h>
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum session_state { PS_RESOLVING, PS_CONNECTING, PS_IDLE, PS_SENDING, PS_READING, PS_COPY_OUT, PS_CLOSED };

/* connection keywords a caller may pass (vecgate's own use a dozen) */
#define PS_MAX_KEYWORDS 32

/* COPY data handed over per loop turn before other events get their go */
#define COPY_BYTES_PER_TURN (4u << 20)

struct pg_stmt {
	struct pg_stmt *next;
	char *sql; /* or, `prepared`, the name of a statement PREPAREd on the session */
	bool prepared;
	int nparams;
	char **params;
	pg_result_cb cb;
	void *arg;
	pg_copy_cb copy_cb;  /* COPY TO STDOUT: receives the data */
	bool copy_discard;   /* cancelled: drop the rest of the data */
	bool cancel_on_data; /* cancelled before it ran: cancel again once data flows */
};

struct pg_session {
	struct event_base *base;
	PGconn *conn; /* NULL while resolving */
	enum session_state state;
	/* a host name: its address from the resolver, given to libpq as hostaddr */
	char *host;
	struct sockaddr_storage addr;
	socklen_t addrlen; /* 0: libpq is given the caller's keywords alone */
	struct resolver_wait dns;
	char **kw, **val; /* PS_RESOLVING: the caller's keywords, until libpq takes them */
	int n_kw;
	struct event *io;
	short io_what; /* EV_READ or EV_WRITE: what io waits for */
	struct event *timer;
	struct event *resume; /* a COPY that gave the loop back (or resumed) goes on from here */
	bool copy_paused;     /* the owner paused the COPY: nothing is read until pg_session_resume_copy */
	struct pg_stmt *head, *tail; /* head is running when state is SENDING/READING */
	PGresult *last;
	pg_state_cb on_connect, on_lost;
	pg_notify_cb on_notify;
	pg_notice_cb on_notice;
	void *arg;
	bool in_callback;
	bool close_requested;
	bool send_failed; /* reported from the timer, never from inside pg_session_query */
};

/* why the last pg_session_connect() returned NULL (libpq can fail at once,
 * e.g. connection refused on loopback) */
static char connect_error[RESOLVER_ERR_LEN + 64];

static void ps_io_cb(evutil_socket_t fd, short what, void *arg);
static void ps_copy_drain(struct pg_session *s);

/* A connect to the resolved address failed: the resolver moves on from it. */
static void ps_address_failed(struct pg_session *s)
{
	if (s->addrlen)
		resolver_connect_failed(s->host, (struct sockaddr *)&s->addr);
}

/* NOTICE/WARNING text from the server goes to vecgate's log, not stderr;
 * an owner that asked for them (a build's maintenance session: pgvector
 * says there when the graph stops fitting in memory) gets them too */
static void ps_notice(void *arg, const PGresult *res)
{
	struct pg_session *s = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	if (!sev)
		sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
	if (!msg)
		msg = PQresultErrorMessage(res);
	log_debug("server %s: %.*s", sev ? sev : "notice", (int)strcspn(msg, "\n"), msg);
	if (s && s->on_notice)
		s->on_notice(s->arg, sev ? sev : "NOTICE", msg, detail);
}

static void stmt_free(struct pg_stmt *st)
{
	for (int i = 0; i < st->nparams; i++)
		free(st->params[i]);
	free(st->params);
	free(st->sql);
	free(st);
}

static void free_keywords(struct pg_session *s)
{
	for (int i = 0; s->kw && s->val && i < s->n_kw; i++) {
		free(s->kw[i]);
		free(s->val[i]);
	}
	free(s->kw);
	free(s->val);
	s->kw = s->val = NULL;
	s->n_kw = 0;
}

static void ps_destroy(struct pg_session *s)
{
	resolver_cancel(&s->dns);
	free_keywords(s);
	free(s->host);
	if (s->io)
		event_free(s->io);
	if (s->timer)
		event_free(s->timer);
	if (s->resume)
		event_free(s->resume);
	if (s->last)
		PQclear(s->last);
	if (s->conn)
		PQfinish(s->conn);
	while (s->head) {
		struct pg_stmt *n = s->head->next;
		stmt_free(s->head);
		s->head = n;
	}
	free(s);
}

static void conn_error(struct pg_session *s, char *buf, size_t len)
{
	const char *e = s->conn ? PQerrorMessage(s->conn) : "out of memory";
	snprintf(buf, len, "%s", e && *e ? e : "connection failed");
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
}

/* The connection is gone: tell the owner once, then free everything. */
static void ps_lost_because(struct pg_session *s, const char *why)
{
	char msg[512];
	if (why)
		snprintf(msg, sizeof(msg), "%s", why);
	else
		conn_error(s, msg, sizeof(msg));
	bool was_connecting = s->state == PS_CONNECTING || s->state == PS_RESOLVING;
	s->state = PS_CLOSED;
	pg_state_cb cb = was_connecting ? s->on_connect : s->on_lost;
	if (cb)
		cb(s->arg, msg);
	ps_destroy(s);
}

static void ps_lost(struct pg_session *s)
{
	ps_lost_because(s, NULL);
}

static void ps_wait(struct pg_session *s, short what)
{
	/* Once connected, the socket stays: one persistent event per kind of
	 * wait, so that a health check or a route refresh does not allocate an
	 * event and change the epoll set for every read.  While connecting,
	 * libpq may close its socket and open another under the same number,
	 * which a kept registration would miss: a fresh event per wait. */
	bool keep = s->state != PS_CONNECTING;
	if (keep && s->io && s->io_what == what && event_pending(s->io, EV_READ | EV_WRITE, NULL))
		return;
	if (s->io)
		event_free(s->io);
	s->io = event_new(s->base, PQsocket(s->conn), what | (keep ? EV_PERSIST : 0), ps_io_cb, s);
	s->io_what = what;
	event_add(s->io, NULL);
}

static void ps_start_next(struct pg_session *s)
{
	if (s->state != PS_IDLE || !s->head) {
		if (s->state == PS_IDLE)
			ps_wait(s, EV_READ); /* notice a dropped connection while idle */
		return;
	}
	struct pg_stmt *st = s->head;
	/* without parameters use the simple protocol: it allows several
	 * statements (BEGIN; ...; COMMIT) in one string */
	int ok = st->prepared  ? PQsendQueryPrepared(s->conn, st->sql, st->nparams, (const char *const *)st->params,
	                                             NULL, NULL, 0)
	         : st->nparams ? PQsendQueryParams(s->conn, st->sql, st->nparams, NULL, (const char *const *)st->params,
	                                           NULL, NULL, 0)
	                       : PQsendQuery(s->conn, st->sql);
	if (!ok) {
		/* the owner may be in the middle of queueing statements: report
		 * the loss from the loop, never from inside its call */
		s->state = PS_SENDING;
		s->send_failed = true;
		if (s->io)
			event_del(s->io); /* nothing more to wait for on this socket */
		struct timeval now = {0, 0};
		evtimer_add(s->timer, &now);
		return;
	}
	s->state = PS_SENDING;
	/* a short statement leaves at once: wait for the answer on the read
	 * event that is already there, not for writability first */
	int r = PQflush(s->conn);
	if (r == 0) {
		s->state = PS_READING;
		ps_wait(s, EV_READ);
	} else {
		ps_wait(s, EV_WRITE); /* the rest, or the error, when writable */
	}
}

/* Returns false if the session was freed. */
static bool ps_finish_stmt(struct pg_session *s)
{
	struct pg_stmt *st = s->head;
	s->head = st->next;
	if (!s->head)
		s->tail = NULL;
	PGresult *res = s->last;
	s->last = NULL;
	s->state = PS_IDLE;
	const char *error = NULL;
	char msg[1024];
	ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (!res) {
		error = "no result";
	} else if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK && rs != PGRES_EMPTY_QUERY) {
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		size_t n = strlen(msg);
		while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
			msg[--n] = 0;
		error = msg;
	}
	s->in_callback = true;
	if (st->cb)
		st->cb(st->arg, res, error);
	s->in_callback = false;
	if (res)
		PQclear(res);
	stmt_free(st);
	if (s->close_requested) {
		ps_destroy(s);
		return false;
	}
	return true;
}

/* LISTEN: hand each NOTIFY to the owner.  Returns false if the session was
 * closed from the callback (and freed). */
static bool ps_deliver_notifies(struct pg_session *s)
{
	PGnotify *n;
	while ((n = PQnotifies(s->conn))) {
		if (s->on_notify) {
			s->in_callback = true;
			s->on_notify(s->arg, n->relname, n->extra);
			s->in_callback = false;
		}
		PQfreemem(n);
		if (s->close_requested) {
			ps_destroy(s);
			return false;
		}
	}
	return true;
}

/* Results of the running statement, as far as they have arrived. */
static void ps_read_results(struct pg_session *s)
{
	while (!PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (!r) {
			if (!ps_finish_stmt(s))
				return;
			ps_start_next(s);
			return;
		}
		if (PQresultStatus(r) == PGRES_COPY_OUT) {
			/* the data comes next; a COPY nobody asked to stream is
			 * drained and dropped rather than left to hang the session */
			PQclear(r);
			if (!s->head->copy_cb)
				s->head->copy_discard = true;
			s->state = PS_COPY_OUT;
			ps_copy_drain(s);
			return;
		}
		/* keep the last result: errors and row sets come last */
		if (s->last)
			PQclear(s->last);
		s->last = r;
	}
	ps_wait(s, EV_READ);
}

/* PQcancel connects to the server and waits for it to hang up: on the loop
 * that stalled every client for as long as the server took (a PostgreSQL
 * that accepts one connection at a time held it for minutes, an unreachable
 * one would for TCP's whole connect timeout).  So it runs on a thread of
 * its own, which owns the cancel object (PQcancel is thread-safe). */
static void *cancel_main(void *arg)
{
	PGcancel *c = arg;
	char err[256];
	(void)PQcancel(c, err, (int)sizeof(err));
	PQfreeCancel(c);
	return NULL;
}

bool pg_session_cancel(struct pg_session *s, char *err, size_t errlen)
{
	PGcancel *c = s && s->conn ? PQgetCancel(s->conn) : NULL;
	if (!c) {
		snprintf(err, errlen, "no connection");
		return false;
	}
	pthread_attr_t attr;
	pthread_t thread;
	int rc = pthread_attr_init(&attr);
	if (rc == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&thread, &attr, cancel_main, c);
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		PQfreeCancel(c);
		snprintf(err, errlen, "cannot start the cancel request: %s", strerror(rc));
		return false;
	}
	return true;
}

static void ps_send_cancel(struct pg_session *s)
{
	char err[256];
	if (!pg_session_cancel(s, err, sizeof(err)))
		log_warn("cancelling a COPY: %s", err);
}

/* Hand over the COPY data libpq holds, until it needs more from the socket,
 * the owner pauses, or this turn's share is used. */
static void ps_copy_drain(struct pg_session *s)
{
	struct pg_stmt *st = s->head;
	size_t taken = 0;
	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(s->conn, &buf, 1);
		if (n == 0) {
			ps_wait(s, EV_READ);
			return;
		}
		if (n < 0) {
			/* -1 the end, -2 an error: the final result follows */
			s->state = PS_READING;
			ps_read_results(s);
			return;
		}
		enum pg_copy_flow flow = PG_COPY_MORE;
		if (st->copy_discard) {
			if (st->cancel_on_data) {
				/* cancelled before the server ran it: it runs now */
				st->cancel_on_data = false;
				ps_send_cancel(s);
			}
		} else {
			s->in_callback = true;
			flow = st->copy_cb(st->arg, buf, (size_t)n);
			s->in_callback = false;
		}
		PQfreemem(buf);
		if (s->close_requested) {
			ps_destroy(s);
			return;
		}
		taken += (size_t)n;
		if (flow == PG_COPY_PAUSE && !st->copy_discard) {
			/* no read, no timer: the socket fills and the server waits */
			if (s->io)
				event_del(s->io);
			s->copy_paused = true;
			return;
		}
		if (taken >= COPY_BYTES_PER_TURN) {
			if (s->io)
				event_del(s->io);
			struct timeval now = {0, 0};
			evtimer_add(s->resume, &now);
			return;
		}
	}
}

static void ps_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pg_session *s = arg;
	if (s->state == PS_COPY_OUT && !s->copy_paused)
		ps_copy_drain(s);
}

static void ps_io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pg_session *s = arg;
	switch (s->state) {
	case PS_CONNECTING: {
		ConnStatusType before = PQstatus(s->conn);
		switch (PQconnectPoll(s->conn)) {
		case PGRES_POLLING_READING:
			ps_wait(s, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			ps_wait(s, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			event_del(s->timer);
			PQsetnonblocking(s->conn, 1);
			s->state = PS_IDLE;
			if (s->on_connect) {
				s->in_callback = true;
				s->on_connect(s->arg, NULL);
				s->in_callback = false;
				if (s->close_requested) {
					ps_destroy(s);
					return;
				}
			}
			ps_start_next(s);
			return;
		default:
			if (before == CONNECTION_STARTED || before == CONNECTION_NEEDED)
				ps_address_failed(s); /* the connect itself failed, not the login */
			ps_lost(s);
			return;
		}
	}
	case PS_SENDING: {
		int r = PQflush(s->conn);
		if (r < 0) {
			ps_lost(s);
		} else if (r == 1) {
			ps_wait(s, EV_WRITE);
		} else {
			s->state = PS_READING;
			ps_wait(s, EV_READ);
		}
		return;
	}
	case PS_READING:
		if (!PQconsumeInput(s->conn)) {
			ps_lost(s);
			return;
		}
		if (!ps_deliver_notifies(s))
			return;
		ps_read_results(s);
		return;
	case PS_COPY_OUT:
		if (s->copy_paused) {
			event_del(s->io); /* the owner takes no data now; resume_copy reads on */
			return;
		}
		if (!PQconsumeInput(s->conn)) {
			ps_lost(s);
			return;
		}
		ps_copy_drain(s);
		return;
	case PS_IDLE:
		/* readable while idle: a NOTICE, or the server went away */
		if (!PQconsumeInput(s->conn) || PQstatus(s->conn) == CONNECTION_BAD) {
			ps_lost(s);
			return;
		}
		if (!ps_deliver_notifies(s))
			return;
		if (s->state == PS_IDLE && s->head) {
			ps_start_next(s); /* the callback queued a statement */
			return;
		}
		ps_wait(s, EV_READ);
		return;
	case PS_RESOLVING: /* no socket yet */
	case PS_CLOSED:
		return;
	}
}

static void ps_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pg_session *s = arg;
	if (s->send_failed) {
		ps_lost(s);
	} else if (s->state == PS_RESOLVING) {
		char why[300];
		snprintf(why, sizeof(why), "connection timed out waiting for the address of %s", s->host);
		ps_lost_because(s, why);
	} else if (s->state == PS_CONNECTING) {
		if (PQstatus(s->conn) == CONNECTION_STARTED)
			ps_address_failed(s); /* nobody answered there: the name may have moved */
		ps_lost_because(s, "connection timed out");
	}
}

const char *pg_session_connect_error(void)
{
	return connect_error[0] ? connect_error : "connection failed";
}

static const char *keyword(const char *const *keywords, const char *const *values, const char *name)
{
	for (int i = 0; keywords[i]; i++)
		if (!strcmp(keywords[i], name))
			return values[i];
	return NULL;
}

/* Start libpq with the caller's keywords and, for a resolved name, hostaddr
 * (libpq then connects there without a lookup, and still checks TLS against
 * host).  false when libpq failed at once (s->conn may hold why). */
static bool ps_start_libpq(struct pg_session *s, const char *const *keywords, const char *const *values)
{
	const char *kw[PS_MAX_KEYWORDS + 2], *val[PS_MAX_KEYWORDS + 2];
	int n = 0;
	for (; keywords[n]; n++) {
		assert(n < PS_MAX_KEYWORDS);
		kw[n] = keywords[n];
		val[n] = values[n];
	}
	char addr[INET6_ADDRSTRLEN];
	if (s->addrlen) {
		kw[n] = "hostaddr";
		val[n++] = resolver_format((struct sockaddr *)&s->addr, addr, sizeof(addr));
	}
	kw[n] = val[n] = NULL;
	s->conn = PQconnectStartParams(kw, val, 0);
	if (s->conn)
		PQsetNoticeReceiver(s->conn, ps_notice, s);
	if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
		ps_address_failed(s); /* e.g. refused on loopback, inside PQconnectStartParams */
		return false;
	}
	s->state = PS_CONNECTING;
	ps_wait(s, EV_WRITE);
	return true;
}

static void ps_resolved(void *arg, const struct sockaddr *sa, socklen_t len, const char *error)
{
	struct pg_session *s = arg;
	assert(s->state == PS_RESOLVING && s->kw);
	if (!sa) {
		ps_lost_because(s, error);
		return;
	}
	memcpy(&s->addr, sa, len);
	s->addrlen = len;
	bool started = ps_start_libpq(s, (const char *const *)s->kw, (const char *const *)s->val);
	free_keywords(s);
	if (!started)
		ps_lost(s);
}

/* The caller's keywords outlive its call while the name is looked up. */
static bool keep_keywords(struct pg_session *s, const char *const *keywords, const char *const *values)
{
	int n = 0;
	while (keywords[n])
		n++;
	s->kw = calloc((size_t)n + 1, sizeof(char *));
	s->val = calloc((size_t)n + 1, sizeof(char *));
	if (!s->kw || !s->val)
		return false;
	s->n_kw = n;
	for (int i = 0; i < n; i++) {
		s->kw[i] = strdup(keywords[i]);
		s->val[i] = strdup(values[i] ? values[i] : "");
		if (!s->kw[i] || !s->val[i])
			return false; /* free_keywords frees what was copied */
	}
	return true;
}

struct pg_session *pg_session_connect(struct event_base *base, const char *const *keywords,
                                      const char *const *values, double connect_timeout,
                                      pg_state_cb on_connect, pg_state_cb on_lost, void *arg)
{
	struct pg_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base = base;
	s->on_connect = on_connect;
	s->on_lost = on_lost;
	s->arg = arg;
	s->timer = evtimer_new(base, ps_timeout_cb, s);
	s->resume = evtimer_new(base, ps_resume_cb, s);
	if (!s->timer || !s->resume) {
		snprintf(connect_error, sizeof(connect_error), "out of memory");
		goto failed;
	}
	const char *host = keyword(keywords, values, "host");
	if (host && !keyword(keywords, values, "hostaddr") && resolver_is_name(host)) {
		const char *port = keyword(keywords, values, "port");
		char err[RESOLVER_ERR_LEN];
		if (!(s->host = strdup(host))) {
			snprintf(connect_error, sizeof(connect_error), "out of memory");
			goto failed;
		}
		switch (resolver_lookup(host, port ? atoi(port) : 5432, &s->addr, &s->addrlen, &s->dns, ps_resolved, s, err,
		                        sizeof(err))) {
		case RESOLVE_OK:
			break;
		case RESOLVE_PENDING:
			if (!keep_keywords(s, keywords, values)) {
				snprintf(connect_error, sizeof(connect_error), "out of memory");
				goto failed;
			}
			s->state = PS_RESOLVING;
			goto started;
		case RESOLVE_FAILED:
			snprintf(connect_error, sizeof(connect_error), "%s", err);
			goto failed;
		}
	}
	if (!ps_start_libpq(s, keywords, values)) {
		conn_error(s, connect_error, sizeof(connect_error));
		goto failed;
	}
started:
	if (connect_timeout > 0) {
		struct timeval tv = timeval_of(connect_timeout);
		evtimer_add(s->timer, &tv);
	}
	return s;
failed:
	ps_destroy(s);
	return NULL;
}

static int queue_stmt(struct pg_session *s, const char *sql, bool prepared, int nparams, const char *const *params,
                      pg_result_cb cb, pg_copy_cb copy_cb, void *arg)
{
	if (!s || s->state == PS_CLOSED || s->close_requested)
		return -1;
	struct pg_stmt *st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	st->sql = strdup(sql);
	st->prepared = prepared;
	st->nparams = nparams;
	st->params = calloc((size_t)nparams + 1, sizeof(char *));
	st->cb = cb;
	st->copy_cb = copy_cb;
	st->arg = arg;
	bool ok = st->sql && st->params;
	for (int i = 0; ok && i < nparams; i++)
		ok = params[i] ? (st->params[i] = strdup(params[i])) != NULL : true;
	if (!ok) {
		stmt_free(st);
		return -1;
	}
	if (s->tail)
		s->tail->next = st;
	else
		s->head = st;
	s->tail = st;
	if (!s->in_callback)
		ps_start_next(s);
	else if (s->state == PS_IDLE && s->head == st)
		ps_wait(s, EV_WRITE); /* start once the callback has returned */
	return 0;
}

int pg_session_query(struct pg_session *s, const char *sql, int nparams, const char *const *params,
                     pg_result_cb cb, void *arg)
{
	return queue_stmt(s, sql, false, nparams, params, cb, NULL, arg);
}

int pg_session_execute(struct pg_session *s, const char *name, int nparams, const char *const *params,
                       pg_result_cb cb, void *arg)
{
	return queue_stmt(s, name, true, nparams, params, cb, NULL, arg);
}

int pg_session_copy_out(struct pg_session *s, const char *sql, pg_copy_cb chunk_cb, pg_result_cb cb, void *arg)
{
	if (!chunk_cb)
		return -1;
	return queue_stmt(s, sql, false, 0, NULL, cb, chunk_cb, arg);
}

bool pg_session_cancel_copy(struct pg_session *s)
{
	if (!s || s->state == PS_CLOSED)
		return false;
	bool found = false;
	for (struct pg_stmt *st = s->head; st; st = st->next) {
		if (!st->copy_cb || st->copy_discard)
			continue;
		found = true;
		st->copy_discard = true;
		bool running = st == s->head && (s->state == PS_SENDING || s->state == PS_READING ||
		                                 s->state == PS_COPY_OUT);
		if (running)
			ps_send_cancel(s);
		/* a cancel that reached the server before the statement did is
		 * ignored there: if data flows after all, cancel again then */
		st->cancel_on_data = s->state != PS_COPY_OUT || st != s->head;
	}
	if (found)
		pg_session_resume_copy(s); /* the rest is read and dropped: the result comes after it */
	return found;
}

void pg_session_resume_copy(struct pg_session *s)
{
	if (!s || s->state != PS_COPY_OUT || !s->copy_paused)
		return;
	s->copy_paused = false;
	/* from the loop, never from inside the owner's call */
	struct timeval now = {0, 0};
	evtimer_add(s->resume, &now);
}

void pg_session_on_notify(struct pg_session *s, pg_notify_cb cb)
{
	s->on_notify = cb;
}

void pg_session_on_notice(struct pg_session *s, pg_notice_cb cb)
{
	s->on_notice = cb;
}

bool pg_session_connected(const struct pg_session *s)
{
	return s && s->state != PS_RESOLVING && s->state != PS_CONNECTING && s->state != PS_CLOSED;
}

bool pg_session_idle(const struct pg_session *s)
{
	return s->state == PS_IDLE && !s->head;
}

int pg_session_backend_pid(const struct pg_session *s)
{
	return s->conn ? PQbackendPID(s->conn) : 0;
}

PGconn *pg_session_conn(struct pg_session *s)
{
	return s->conn;
}

void pg_session_close(struct pg_session *s)
{
	if (!s)
		return;
	if (s->in_callback) {
		s->close_requested = true;
		return;
	}
	ps_destroy(s);
}

/* ---- one-shot: connect, one statement, close ---- */

struct pg_async {
	struct pg_session *session;
	pg_async_cb cb;
	void *arg;
};

static void oneshot_result(void *arg, PGresult *res, const char *error)
{
	struct pg_async *a = arg;
	pg_async_cb cb = a->cb;
	void *cbarg = a->arg;
	pg_session_close(a->session);
	free(a);
	if (cb)
		cb(cbarg, error ? NULL : res, error);
}

static void oneshot_failed(void *arg, const char *error)
{
	struct pg_async *a = arg;
	if (!error)
		return;
	pg_async_cb cb = a->cb;
	void *cbarg = a->arg;
	free(a); /* the session frees itself after reporting */
	if (cb)
		cb(cbarg, NULL, error);
}

struct pg_async *pg_async_oneshot(struct event_base *base, const char *const *keywords,
                                  const char *const *values, const char *sql, int nparams,
                                  const char *const *params, double timeout_sec,
                                  pg_async_cb cb, void *arg)
{
	struct pg_async *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cb = cb;
	a->arg = arg;
	a->session = pg_session_connect(base, keywords, values, timeout_sec, oneshot_failed, oneshot_failed, a);
	if (!a->session || pg_session_query(a->session, sql, nparams, params, oneshot_result, a) < 0) {
		pg_session_close(a->session);
		free(a);
		return NULL;
	}
	return a;
}

void pg_async_cancel(struct pg_async *a)
{
	pg_session_close(a->session);
	free(a);
}

bool pg_result_transient(const PGresult *res)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!st)
		return true; /* no result at all: the connection went away */
	return !strncmp(st, "08", 2) || !strncmp(st, "53", 2) || !strncmp(st, "57", 2) || !strncmp(st, "40", 2) ||
	       !strcmp(st, "55P03") || !strcmp(st, "55006");
}
