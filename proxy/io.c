/*
 * Socket I/O for the data plane's connections, after PgBouncer's sbuf:
 * libevent only says when a socket is readable or writable; plain sockets
 * are read into one shared chunk, which the connection may take from
 * directly (on_chunk: whole messages sent on to the peer at once, never
 * buffered) before the rest is appended to its input, and output is written
 * inline, once per loop pass, before the loop polls again.  Write interest is armed only when the kernel pushes back, so a
 * message hop costs one read and one write and no epoll_ctl.  The buffers
 * are bare evbuffers (no callbacks to invoke on every add and drain) that an
 * idle connection gives back (io_trim).  TLS connections keep libevent's
 * OpenSSL bufferevent: their bytes must go through SSL.
 */
#include "proxy/io.h"
#include "proxy/runtime/runtime.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static TAILQ_HEAD(, io_conn) dirty = TAILQ_HEAD_INITIALIZER(dirty);
static struct event *flush_ev;
/* inside a read callback the flush runs when it returns: no event needed */
static bool in_read_cb;

static void arm_write(struct io_conn *io, const struct timeval *tv);

static bool write_error(int e)
{
	return e != EAGAIN && e != EWOULDBLOCK && e != EINTR;
}

/* Write what is queued; false when the connection reported an error. */
static bool flush_one(struct io_conn *io)
{
	struct evbuffer *out = io->out;
	if (io->mode != IO_PLAIN || !out)
		return true;
	size_t before = evbuffer_get_length(out);
	if (before == 0)
		return true;
	int n = evbuffer_write(out, io->fd);
	if (n < 0 && write_error(errno)) {
		io->on_event(BEV_EVENT_WRITING | BEV_EVENT_ERROR, io->arg);
		return false;
	}
	size_t after = evbuffer_get_length(out);
	if (after > 0 && !io->wev_armed)
		arm_write(io, NULL);
	if (after == 0 && io->trim_pending) {
		/* a client that just logged in and sent nothing since: its
		 * welcome is out, it holds no buffer while idle */
		evbuffer_free(out);
		io->out = NULL;
		io->trim_pending = false;
	}
	/* a peer paused on this buffer must hear that it drained, and a
	 * closing connection that it is empty */
	if (io->on_drain && ((before >= VG_OUT_LOW && after < VG_OUT_LOW) || (io->closing && after == 0)))
		io->on_drain(io->arg);
	return true;
}

static void flush_all(void)
{
	struct io_conn *io;
	while ((io = TAILQ_FIRST(&dirty))) {
		TAILQ_REMOVE(&dirty, io, link);
		io->queued = false;
		flush_one(io);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	flush_all();
}

static void queue_flush(struct io_conn *io)
{
	if (io->queued || io->mode != IO_PLAIN)
		return;
	io->queued = true;
	TAILQ_INSERT_TAIL(&dirty, io, link);
	if (in_read_cb)
		return;
	if (!flush_ev)
		flush_ev = event_new(vg.base, -1, 0, flush_cb, NULL);
	event_active(flush_ev, EV_TIMEOUT, 0);
}

#define IO_READ_CHUNK 65536

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct io_conn *io = arg;
	/* read into one shared buffer and append: reserving space in the input
	 * instead leaves a 64 kB chain behind every short read, and moving such
	 * chains whole to the peer multiplies a flood of small messages in memory */
	static uint8_t chunk[IO_READ_CHUNK];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	int saved = errno;
	if (n > 0) {
		vg_clock_tick();
		/* send what this read produced now, not after every other ready
		 * socket of this loop iteration: it keeps the peer busy sooner */
		bool nested = in_read_cb;
		in_read_cb = true;
		size_t used = 0;
		if (io->on_chunk && (!io->in || evbuffer_get_length(io->in) == 0))
			used = io->on_chunk(io->arg, chunk, (size_t)n);
		assert(used <= (size_t)n);
		if (used < (size_t)n) {
			evbuffer_add(io_in(io), chunk + used, (size_t)n - used);
			io->on_read(io->arg);
		}
		in_read_cb = nested;
		if (!nested)
			flush_all();
	} else if (n == 0) {
		io->on_event(BEV_EVENT_READING | BEV_EVENT_EOF, io->arg);
	} else if (write_error(saved)) {
		errno = saved;
		io->on_event(BEV_EVENT_READING | BEV_EVENT_ERROR, io->arg);
	}
}

static void connected(struct io_conn *io)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		event_del(io->wev);
		io->wev_armed = false;
		errno = err;
		io->on_event(BEV_EVENT_ERROR, io->arg);
		return;
	}
	io->mode = IO_PLAIN;
	if (!io->out || evbuffer_get_length(io->out) == 0) {
		event_del(io->wev);
		io->wev_armed = false;
	}
	io_read(io, io->want_read);
	io->on_event(BEV_EVENT_CONNECTED, io->arg);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct io_conn *io = arg;
	if (io->mode == IO_CONNECTING) {
		connected(io);
		return;
	}
	if (what & EV_TIMEOUT) {
		io->on_event(BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, io->arg);
		return;
	}
	size_t len = io->out ? evbuffer_get_length(io->out) : 0;
	if (len > 0 && evbuffer_write(io->out, io->fd) < 0 && write_error(errno)) {
		io->on_event(BEV_EVENT_WRITING | BEV_EVENT_ERROR, io->arg);
		return;
	}
	len = io->out ? evbuffer_get_length(io->out) : 0;
	if (len == 0 && !io->closing) {
		/* back to write-through */
		event_del(io->wev);
		io->wev_armed = false;
	}
	if (len < VG_OUT_LOW && io->on_drain)
		io->on_drain(io->arg);
}

static void arm_write(struct io_conn *io, const struct timeval *tv)
{
	if (!io->wev && !(io->wev = event_new(vg.base, io->fd, EV_WRITE | EV_PERSIST, write_cb, io)))
		return;
	event_add(io->wev, tv);
	io->wev_armed = true;
}

void io_init(struct io_conn *io, int fd, io_cb on_read, io_cb on_drain, io_event_cb on_event, void *arg)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->mode = fd >= 0 ? IO_PLAIN : IO_NONE;
	io->on_read = on_read;
	io->on_drain = on_drain;
	io->on_event = on_event;
	io->arg = arg;
}

int io_connect(struct io_conn *io, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	io->fd = fd;
	io->mode = IO_CONNECTING;
	arm_write(io, NULL);
	if (!io->wev_armed) {
		io->fd = -1;
		io->mode = IO_NONE;
		close(fd);
		return -1;
	}
	return 0;
}

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct io_conn *io = arg;
	if (io->on_read)
		io->on_read(io->arg);
}

static void tls_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct io_conn *io = arg;
	if (io->on_drain)
		io->on_drain(io->arg);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct io_conn *io = arg;
	io->on_event(what, io->arg);
}

int io_start_tls(struct io_conn *io, SSL *ssl, enum bufferevent_ssl_state st)
{
	if (io->queued) {
		TAILQ_REMOVE(&dirty, io, link);
		io->queued = false;
	}
	if (io->rev)
		event_free(io->rev);
	if (io->wev)
		event_free(io->wev);
	io->rev = io->wev = NULL;
	io->wev_armed = false;
	if (io->in)
		evbuffer_free(io->in);
	if (io->out)
		evbuffer_free(io->out);
	io->in = io->out = NULL;
	io->bev = bufferevent_openssl_socket_new(vg.base, io->fd, ssl, st, BEV_OPT_CLOSE_ON_FREE);
	if (!io->bev)
		return -1;
	io->mode = IO_TLS;
	bufferevent_setcb(io->bev, tls_read_cb, tls_write_cb, tls_event_cb, io);
	bufferevent_setwatermark(io->bev, EV_WRITE, VG_OUT_LOW, 0);
	bufferevent_enable(io->bev, io->want_read ? EV_READ | EV_WRITE : EV_WRITE);
	return 0;
}

void io_read(struct io_conn *io, bool on)
{
	io->want_read = on;
	if (io->mode == IO_TLS) {
		if (on)
			bufferevent_enable(io->bev, EV_READ);
		else
			bufferevent_disable(io->bev, EV_READ);
		return;
	}
	if (io->mode != IO_PLAIN)
		return; /* armed once connected */
	if (!io->rev && !(io->rev = event_new(vg.base, io->fd, EV_READ | EV_PERSIST, read_cb, io)))
		return;
	if (on)
		event_add(io->rev, NULL);
	else
		event_del(io->rev);
}

int io_fd(const struct io_conn *io)
{
	return io->fd;
}

struct evbuffer *io_in(struct io_conn *io)
{
	if (io->mode == IO_TLS)
		return bufferevent_get_input(io->bev);
	if (!io->in)
		io->in = evbuffer_new();
	return io->in;
}

struct evbuffer *io_out(struct io_conn *io)
{
	if (io->mode == IO_TLS)
		return bufferevent_get_output(io->bev);
	if (!io->out)
		io->out = evbuffer_new();
	io->trim_pending = false; /* in use again */
	queue_flush(io);
	return io->out;
}

size_t io_in_len(const struct io_conn *io)
{
	if (io->mode == IO_TLS)
		return evbuffer_get_length(bufferevent_get_input(io->bev));
	return io->in ? evbuffer_get_length(io->in) : 0;
}

size_t io_out_len(const struct io_conn *io)
{
	if (io->mode == IO_TLS)
		return evbuffer_get_length(bufferevent_get_output(io->bev));
	return io->out ? evbuffer_get_length(io->out) : 0;
}

void io_write(struct io_conn *io, const void *data, size_t len)
{
	evbuffer_add(io_out(io), data, len);
}

void io_sendv(struct io_conn *io, const struct iovec *iov, int n)
{
	size_t sent = 0;
	if (io->mode == IO_PLAIN && (!io->out || evbuffer_get_length(io->out) == 0) && !io->wev_armed) {
		struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
		ssize_t r = sendmsg(io->fd, &mh, MSG_NOSIGNAL);
		if (r > 0)
			sent = (size_t)r;
	}
	for (int i = 0; i < n; i++) {
		if (sent >= iov[i].iov_len) {
			sent -= iov[i].iov_len;
			continue;
		}
		evbuffer_add(io_out(io), (const uint8_t *)iov[i].iov_base + sent, iov[i].iov_len - sent);
		sent = 0;
	}
}

void io_send(struct io_conn *io, const void *data, size_t len)
{
	size_t sent = 0;
	if (io->mode == IO_PLAIN && (!io->out || evbuffer_get_length(io->out) == 0) && !io->wev_armed) {
		ssize_t n = send(io->fd, data, len, MSG_NOSIGNAL);
		if (n > 0)
			sent = (size_t)n;
	}
	if (sent < len)
		evbuffer_add(io_out(io), (const uint8_t *)data + sent, len - sent);
}

void io_trim(struct io_conn *io)
{
	if (io->mode == IO_TLS)
		return;
	if (io->in && evbuffer_get_length(io->in) == 0) {
		evbuffer_free(io->in);
		io->in = NULL;
	}
	if (io->out && evbuffer_get_length(io->out) == 0 && !io->queued) {
		evbuffer_free(io->out);
		io->out = NULL;
	} else if (io->out) {
		io->trim_pending = true; /* freed by the write that empties it */
	}
}

void io_close_after_flush(struct io_conn *io, double timeout_sec, io_cb done, io_event_cb failed)
{
	io_read(io, false);
	io->on_read = NULL;
	io->on_drain = done;
	io->on_event = failed;
	io->closing = true;
	struct timeval tv = timeval_of(timeout_sec);
	if (io->mode == IO_TLS) {
		bufferevent_set_timeouts(io->bev, NULL, &tv);
		bufferevent_setwatermark(io->bev, EV_WRITE, 0, 0);
		bufferevent_enable(io->bev, EV_WRITE);
		return;
	}
	if (io->mode == IO_PLAIN) {
		arm_write(io, &tv);
		queue_flush(io);
	}
}

void io_stop(struct io_conn *io)
{
	if (io->queued) {
		TAILQ_REMOVE(&dirty, io, link);
		io->queued = false;
	}
	if (io->rev)
		event_del(io->rev);
	if (io->wev)
		event_del(io->wev);
	io->wev_armed = false;
	if (io->bev) {
		bufferevent_disable(io->bev, EV_READ | EV_WRITE);
		bufferevent_setcb(io->bev, NULL, NULL, NULL, NULL);
	}
}

void io_free(struct io_conn *io)
{
	io_stop(io);
	if (io->rev)
		event_free(io->rev);
	if (io->wev)
		event_free(io->wev);
	if (io->in)
		evbuffer_free(io->in);
	if (io->out)
		evbuffer_free(io->out);
	if (io->bev)
		bufferevent_free(io->bev); /* closes the socket */
	else if (io->fd >= 0)
		close(io->fd);
	memset(io, 0, sizeof(*io));
	io->fd = -1;
}

unsigned long io_tls_error(const struct io_conn *io)
{
	return io->bev ? bufferevent_get_openssl_error(io->bev) : 0;
}

void io_flush_shutdown(void)
{
	if (flush_ev)
		event_free(flush_ev);
	flush_ev = NULL;
}
