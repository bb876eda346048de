/*
 * Query cancellation: a client's CancelRequest carries the key vecgate made
 * up for it; the matching server's real key goes to the backend on a fresh
 * short-lived connection, as PostgreSQL expects.
 */
#include "proxy/cancel.h"
#include "proxy/conn.h"
#include "proxy/io.h"

#include <event2/bufferevent.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <stdio.h>

static void cancel_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	bufferevent_free(bev);
}

static void cancel_written(struct bufferevent *bev, void *arg)
{
	(void)arg;
	/* the backend closes the connection after reading the request */
	bufferevent_disable(bev, EV_WRITE);
	bufferevent_enable(bev, EV_READ);
}

static void cancel_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

void cancel_forward(const struct server_conn *s)
{
	/* the backend process is where the server connected, whatever its
	 * host name resolves to now (after a failover, another server) */
	if (!s->addrlen) {
		log_warn("cancel: server S-%llu has no address yet", (unsigned long long)s->id);
		return;
	}
	struct bufferevent *bev = bufferevent_socket_new(vg.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return;
	if (bufferevent_socket_connect(bev, (const struct sockaddr *)&s->addr, (int)s->addrlen) < 0) {
		log_warn("cancel: cannot connect to %s:%d", s->pool->be_host, s->pool->be_port);
		bufferevent_free(bev);
		return;
	}
	struct pg_buf b;
	buf_init(&b);
	build_cancel(&b, s->be_pid, s->be_key);
	bufferevent_write(bev, b.data, b.len);
	buf_free(&b);
	struct timeval tv = {(long)vg.cfg->timeouts.cancel_wait, 0};
	if (tv.tv_sec <= 0)
		tv.tv_sec = 10;
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setcb(bev, cancel_read, cancel_written, cancel_event, NULL);
	bufferevent_enable(bev, EV_WRITE | EV_READ);
	log_debug("forwarded cancel to backend pid %u", s->be_pid);
}
