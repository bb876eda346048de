/*
 * Write-through for plain sockets.  A bufferevent arms write interest
 * whenever its output gains data and disarms it once drained: two epoll_ctl
 * calls per message hop.  Instead, output buffers of plain sockets note that
 * they have data, and one active event flushes them inline before the loop
 * polls again; write interest is armed only when the kernel pushes back.
 * Reads likewise: bufferevent_socket asks the kernel how much is readable
 * (ioctl FIONREAD) before every read; plain sockets get their own read event
 * that reads straight into the bufferevent's input buffer.
 * TLS connections keep libevent's own path (their bytes must go through SSL).
 */
#include "proxy/io.h"
#include "proxy/runtime/runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

static TAILQ_HEAD(, io_out) dirty = TAILQ_HEAD_INITIALIZER(dirty);
static struct event *flush_ev;

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct io_out *io;
	while ((io = TAILQ_FIRST(&dirty))) {
		TAILQ_REMOVE(&dirty, io, link);
		io->queued = false;
		struct evbuffer *out = bufferevent_get_output(io->bev);
		int sock = bufferevent_getfd(io->bev);
		size_t before = evbuffer_get_length(out);
		if (before == 0 || sock < 0)
			continue;
		/* bufferevent_socket freezes the buffer's start so only it drains
		 * the buffer; we are draining on its behalf */
		evbuffer_unfreeze(out, 1);
		int n = evbuffer_write(out, sock);
		int saved = errno;
		evbuffer_freeze(out, 1);
		errno = saved;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOTCONN) {
			/* let libevent retry: it reports the error through the event callback */
			bufferevent_enable(io->bev, EV_WRITE);
			continue;
		}
		size_t after = evbuffer_get_length(out);
		if (after > 0)
			bufferevent_enable(io->bev, EV_WRITE);
		/* the kernel took it all at once: libevent will not call the write
		 * callback, yet a peer paused on this buffer must hear of it */
		if (before >= VG_OUT_LOW && after < VG_OUT_LOW && io->on_drain)
			io->on_drain(io->bev, io->arg);
	}
}

static void out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	struct io_out *io = arg;
	if (info->n_added == 0 || io->queued)
		return;
	io->queued = true;
	TAILQ_INSERT_TAIL(&dirty, io, link);
	if (!flush_ev)
		flush_ev = event_new(vg.base, -1, 0, flush_cb, NULL);
	event_active(flush_ev, EV_TIMEOUT, 0);
}

#define IO_READ_CHUNK 65536

static void io_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct io_out *io = arg;
	struct bufferevent *bev = io->bev;
	struct evbuffer *in = bufferevent_get_input(bev);
	/* read into one shared buffer and append: reserving space in the input
	 * instead leaves a 64 kB chain behind every short read, and moving such
	 * chains whole to the peer multiplies a flood of small messages in memory */
	static uint8_t chunk[IO_READ_CHUNK];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	int saved = errno;
	if (n > 0) {
		/* bufferevent_socket freezes its input's end: we fill it on its behalf */
		evbuffer_unfreeze(in, 0);
		evbuffer_add(in, chunk, (size_t)n);
		evbuffer_freeze(in, 0);
		io->on_read(bev, io->arg);
		/* send what this read produced now, not after every other ready
		 * socket of this loop iteration: it keeps the peer busy sooner */
		flush_cb(-1, 0, NULL);
	} else if (n == 0) {
		io->on_event(bev, BEV_EVENT_READING | BEV_EVENT_EOF, io->arg);
	} else if (saved != EAGAIN && saved != EWOULDBLOCK && saved != EINTR) {
		errno = saved;
		io->on_event(bev, BEV_EVENT_READING | BEV_EVENT_ERROR, io->arg);
	}
}

void io_out_attach(struct io_out *io, struct bufferevent *bev, bool tls, bufferevent_data_cb on_read,
                   bufferevent_data_cb on_drain, bufferevent_event_cb on_event, void *arg)
{
	io->bev = bev;
	io->queued = false;
	io->cb = NULL;
	io->rev = NULL;
	io->plain = !tls;
	io->on_read = on_read;
	io->on_drain = on_drain;
	io->on_event = on_event;
	io->arg = arg;
	if (tls) {
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		return;
	}
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	io->cb = evbuffer_add_cb(bufferevent_get_output(bev), out_changed, io);
}

void io_read(struct io_out *io, bool on)
{
	if (!io->bev)
		return;
	if (!io->plain) {
		if (on)
			bufferevent_enable(io->bev, EV_READ);
		else
			bufferevent_disable(io->bev, EV_READ);
		return;
	}
	io->want_read = on;
	int fd = bufferevent_getfd(io->bev);
	if (fd < 0)
		return; /* armed by io_connected() */
	if (!io->rev && !(io->rev = event_new(vg.base, fd, EV_READ | EV_PERSIST, io_read_cb, io)))
		return;
	if (on)
		event_add(io->rev, NULL);
	else
		event_del(io->rev);
}

void io_connected(struct io_out *io)
{
	io_read(io, io->want_read);
}

void io_out_detach(struct io_out *io)
{
	if (io->queued) {
		TAILQ_REMOVE(&dirty, io, link);
		io->queued = false;
	}
	if (io->cb && io->bev)
		evbuffer_remove_cb_entry(bufferevent_get_output(io->bev), io->cb);
	if (io->rev)
		event_free(io->rev);
	io->rev = NULL;
	io->cb = NULL;
	io->bev = NULL;
}

void io_out_drained(struct io_out *io)
{
	/* back to write-through once libevent has written what the kernel refused */
	if (io->cb && evbuffer_get_length(bufferevent_get_output(io->bev)) == 0)
		bufferevent_disable(io->bev, EV_WRITE);
}

void io_flush_shutdown(void)
{
	if (flush_ev)
		event_free(flush_ev);
	flush_ev = NULL;
}

/* A backend address: an IP, a host name (resolved here, blocking: names
 * are rare and resolved once per connection), or a unix socket directory. */
int backend_sockaddr(const char *host, int port, struct sockaddr_storage *sa, unsigned *salen,
                     char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	if (host[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)sa;
		un->sun_family = AF_UNIX;
		int n = snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", host, port);
		if (n < 0 || (size_t)n >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "unix socket path too long: %s", host);
			return -1;
		}
		*salen = sizeof(*un);
		return 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*salen = (unsigned)res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}
