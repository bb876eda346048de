/*
 * Open the libpq sessions the control plane runs its SQL on, with the
 * managed index's role, a recognisable application_name and tls.server's
 * libpq TLS keywords, in one place; and keep a link's session open across
 * restarts of PostgreSQL, so that no owner is left holding a dead session
 * and waiting for a callback that never comes.
 */
#include "proxy/control/session.h"
#include "proxy/runtime/pgconn_params.h"
#include "proxy/runtime/runtime.h"

#include <stdint.h>
#include <stdio.h>

struct pg_session *index_session_open(const struct vg_managed_index *mi, const char *role, pg_state_cb on_connect,
                                      pg_state_cb on_lost, void *arg)
{
	if (!mi)
		return NULL;
	const struct vg_backend *be = config_find_backend(vg.cfg, mi->backend);
	if (!be)
		return NULL;
	char port[16], appname[128];
	snprintf(port, sizeof(port), "%d", be->port);
	snprintf(appname, sizeof(appname), "vecgate %s %s", role, mi->name);
	const char *kw[6 + PGCONN_TLS_MAX + 1] = {"host", "port", "dbname", "user", "password", "application_name"};
	const char *val[6 + PGCONN_TLS_MAX + 1] = {be->host, port, mi->database, mi->user ? mi->user : "postgres",
	                                           mi->password ? mi->password : "", appname};
	pgconn_add_tls(&vg.cfg->server_tls, be->host, kw, val, 6, sizeof(kw) / sizeof(*kw));
	return pg_session_connect(vg.base, kw, val, vg.cfg->timeouts.server_connect, on_connect, on_lost, arg);
}

/* ---- links ---- */

#define LINK_FIRST_DELAY 0.2
#define LINK_MAX_DELAY 5.0

/* 0.2 s doubling to 5 s, each +-25% so that many links do not knock on a
 * restarting server in step */
static double link_delay(int failures)
{
	double d = LINK_FIRST_DELAY;
	for (int i = 0; i < failures && d < LINK_MAX_DELAY; i++)
		d *= 2;
	if (d > LINK_MAX_DELAY)
		d = LINK_MAX_DELAY;
	uint32_t r = 0;
	random_bytes(&r, sizeof(r));
	return d * (0.75 + 0.5 * ((double)r / 4294967296.0));
}

static void link_schedule(struct index_link *l)
{
	struct timeval tv = timeval_of(link_delay(l->failures));
	evtimer_add(l->timer, &tv);
}

static bool link_configured(const struct index_link *l)
{
	const struct vg_managed_index *mi = config_find_index(vg.cfg, l->index_name);
	return mi && config_find_backend(vg.cfg, mi->backend);
}

/* A connect failed; false when the link gave up (first connect, no retry). */
static bool link_failed(struct index_link *l, const char *error)
{
	l->failures++;
	if (!l->ever_up && !l->retry_first) {
		l->open = false;
		return false;
	}
	if (!l->failure_logged) {
		log_warn("%s: cannot connect (%s); retrying with backoff up to %.0f s", l->label, error, LINK_MAX_DELAY);
		l->failure_logged = true;
	} else {
		log_debug("%s: reconnect attempt %d failed: %s", l->label, l->failures, error);
	}
	link_schedule(l);
	return true;
}

static void link_connected(void *arg, const char *error)
{
	struct index_link *l = arg;
	if (error) {
		l->s = NULL; /* the session frees itself after this call */
		if (!link_failed(l, error) && l->on_down)
			l->on_down(l->arg, error);
		return;
	}
	if (l->ever_up)
		log_info("%s: reconnected after %.1f s (%d failed attempt%s)", l->label, now_sec() - l->down_since,
		         l->failures, l->failures == 1 ? "" : "s");
	else if (l->failures)
		log_info("%s: connected after %d failed attempt%s", l->label, l->failures, l->failures == 1 ? "" : "s");
	l->up = true;
	l->ever_up = true;
	l->failures = 0;
	l->failure_logged = false;
	if (l->on_up)
		l->on_up(l->arg, NULL);
}

static void link_lost(void *arg, const char *error)
{
	struct index_link *l = arg;
	l->s = NULL; /* the session frees itself after this call: forget it first */
	l->up = false;
	l->failures = 0;
	l->failure_logged = false;
	l->down_since = now_sec();
	log_warn("%s: connection lost (%s); reconnecting", l->label, error ? error : "?");
	if (l->open)
		link_schedule(l);
	if (l->on_down)
		l->on_down(l->arg, error); /* last: the owner may close or free the link */
}

/* false: gave up at once (reported by the caller) */
static bool link_connect(struct index_link *l)
{
	if (!l->open || l->s)
		return true;
	const struct vg_managed_index *mi = config_find_index(vg.cfg, l->index_name);
	l->s = index_session_open(mi, l->role, link_connected, link_lost, l);
	if (l->s)
		return true;
	return link_failed(l, link_configured(l) ? pg_session_connect_error()
	                                         : "the managed index or its backend is not configured");
}

static void link_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct index_link *l = arg;
	if (!link_connect(l) && l->on_down)
		l->on_down(l->arg, pg_session_connect_error());
}

void index_link_init(struct index_link *l, const char *index_name, const char *role, const char *label,
                     bool retry_first, pg_state_cb on_up, pg_state_cb on_down, void *arg)
{
	index_link_close(l);
	snprintf(l->index_name, sizeof(l->index_name), "%s", index_name);
	snprintf(l->role, sizeof(l->role), "%s", role);
	snprintf(l->label, sizeof(l->label), "%s", label);
	l->retry_first = retry_first;
	l->on_up = on_up;
	l->on_down = on_down;
	l->arg = arg;
	l->ever_up = false;
	l->failures = 0;
	l->failure_logged = false;
}

int index_link_open(struct index_link *l)
{
	if (!link_configured(l))
		return -1;
	if (!l->timer)
		l->timer = evtimer_new(vg.base, link_timer, l);
	if (!l->timer)
		return -1;
	l->open = true;
	if (l->s || evtimer_pending(l->timer, NULL))
		return 0;
	return link_connect(l) ? 0 : -1;
}

void index_link_restart(struct index_link *l)
{
	pg_session_close(l->s);
	l->s = NULL;
	l->up = false;
	if (l->timer)
		evtimer_del(l->timer);
	index_link_open(l);
}

void index_link_close(struct index_link *l)
{
	l->open = false;
	if (l->timer) {
		event_free(l->timer);
		l->timer = NULL;
	}
	pg_session_close(l->s);
	l->s = NULL;
	l->up = false;
	l->ever_up = false; /* opened again, it is a new session, not a reconnect */
	l->failures = 0;
	l->failure_logged = false;
}

bool index_link_up(const struct index_link *l)
{
	return l->up && l->s;
}
