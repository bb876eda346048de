/*
 * Free closed connections outside the callbacks that closed them: a close
 * inside a read callback may still be followed by code that touches the
 * object, so closing only moves it to a dead list and this frees the lists
 * from a deferred event.  main() tells it how each kind is freed, so the
 * connections depend on the reaper and never the other way round.
 */
#include "proxy/reaper.h"
#include "proxy/conn.h"

static void (*free_client)(struct client_conn *);
static void (*free_server)(struct server_conn *);

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	reaper_run();
}

void reaper_init(void (*client_free_fn)(struct client_conn *), void (*server_free_fn)(struct server_conn *))
{
	free_client = client_free_fn;
	free_server = server_free_fn;
	vg.reaper = event_new(vg.base, -1, 0, reap_cb, NULL);
}

void reaper_schedule(void)
{
	event_active(vg.reaper, EV_TIMEOUT, 0);
}

void reaper_run(void)
{
	struct client_conn *c;
	while ((c = TAILQ_FIRST(&vg.dead_clients))) {
		TAILQ_REMOVE(&vg.dead_clients, c, link);
		free_client(c);
	}
	struct server_conn *s;
	while ((s = TAILQ_FIRST(&vg.dead_servers))) {
		TAILQ_REMOVE(&vg.dead_servers, s, link);
		free_server(s);
	}
}

void reaper_free(void)
{
	reaper_run();
	if (vg.reaper)
		event_free(vg.reaper);
	vg.reaper = NULL;
}
