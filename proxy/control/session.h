/*
 * Control-plane sessions to a managed index's database (session.c): the
 * rebuild job's and the drift monitor's libpq sessions, named
 * "vecgate <role> <index>" in pg_stat_activity so operators can tell them
 * apart from application traffic; and links, sessions that come back by
 * themselves when PostgreSQL restarts under a job that runs for hours.
 */
#ifndef VG_PROXY_CONTROL_SESSION_H
#define VG_PROXY_CONTROL_SESSION_H

#include <stdbool.h>

#include <event2/event.h>

#include "conf/config.h"
#include "proxy/runtime/pgasync.h"

/* NULL when the index's backend is not configured or libpq cannot start. */
struct pg_session *index_session_open(const struct vg_managed_index *mi, const char *role, pg_state_cb on_connect,
                                      pg_state_cb on_lost, void *arg);

/* A session that is opened again after a failed connect or a lost
 * connection, after a jittered backoff (0.2 s doubling to 5 s), until it is
 * closed.  The owner hears on_up(arg, NULL) after every successful connect
 * and on_down(arg, error) when a connected session is lost (the link has
 * already forgotten it and scheduled the reconnect).  A first connect that
 * fails is retried too when retry_first, else it is reported to on_down and
 * the link closes.  The log says once that the session is down and once that
 * it is back, not a line per attempt.  Embedded (zeroed) in its owner. */
struct index_link {
	struct pg_session *s; /* NULL while down or waiting for the reconnect */
	bool up;              /* s has logged in */
	bool ever_up;
	bool open;            /* wanted: reconnect when lost */
	bool retry_first;
	bool failure_logged;
	int failures; /* connects failed since the last success */
	double down_since;
	struct event *timer;
	char index_name[128], role[32], label[160];
	pg_state_cb on_up, on_down;
	void *arg;
};

void index_link_init(struct index_link *l, const char *index_name, const char *role, const char *label,
                     bool retry_first, pg_state_cb on_up, pg_state_cb on_down, void *arg);
/* Connect unless open already.  -1, with no callback, when the index or its
 * backend is not configured or (without retry_first) libpq fails at once. */
int index_link_open(struct index_link *l);
/* Drop the session without callbacks and connect again at once. */
void index_link_restart(struct index_link *l);
/* Close for good: no more callbacks or reconnects.  Safe on a closed link. */
void index_link_close(struct index_link *l);
bool index_link_up(const struct index_link *l);

#endif
