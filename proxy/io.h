/*
 * Socket I/O for connections (io.c): plain sockets are read and written by
 * vecgate itself on libevent readiness with bare evbuffers (no callbacks,
 * allocated only while they hold data, one read and one write per hop, write
 * interest only after EAGAIN), and a read may be sent on before it is ever
 * buffered (on_chunk, io_send); TLS sockets are left to libevent's OpenSSL
 * bufferevent.
 */
#ifndef VG_PROXY_IO_H
#define VG_PROXY_IO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

/* high/low watermarks for backpressure between linked connections */
#define VG_OUT_HIGH (512 * 1024)
#define VG_OUT_LOW (128 * 1024)

typedef void (*io_cb)(void *arg);
/* A read's bytes offered before they are buffered: returns how many of them
 * (a prefix) were dealt with; the rest is appended to the input for on_read. */
typedef size_t (*io_chunk_cb)(void *arg, const uint8_t *data, size_t len);
/* `what` uses libevent's BEV_EVENT_* bits (CONNECTED, EOF, ERROR, TIMEOUT) */
typedef void (*io_event_cb)(short what, void *arg);

enum io_mode {
	IO_NONE,       /* no socket (yet) */
	IO_CONNECTING, /* plain socket, connect() in progress */
	IO_PLAIN,      /* plain socket: our own events and buffers */
	IO_TLS,        /* OpenSSL bufferevent */
};

struct io_conn {
	TAILQ_ENTRY(io_conn) link; /* on the flush list */
	enum io_mode mode;
	int fd;
	struct bufferevent *bev; /* IO_TLS */
	struct evbuffer *in, *out; /* IO_PLAIN: NULL while empty and trimmed */
	struct event *rev, *wev;
	io_chunk_cb on_chunk; /* plain sockets, and only while the input is empty */
	io_cb on_read;
	io_cb on_drain; /* output fell below VG_OUT_LOW after having been above, or a write emptied it */
	io_event_cb on_event;
	void *arg;
	bool queued;     /* on the flush list */
	bool want_read;
	bool wev_armed;
	bool closing;    /* draining output before a close: on_drain is called when it is empty */
	bool trim_pending; /* io_trim found output still queued: free the buffer once written */
};

/* A plain socket (fd >= 0) or none yet (fd < 0, then io_connect). */
void io_init(struct io_conn *io, int fd, io_cb on_read, io_cb on_drain, io_event_cb on_event, void *arg);
/* Non-blocking connect; on_event(BEV_EVENT_CONNECTED) or an error follows. */
int io_connect(struct io_conn *io, const struct sockaddr *sa, socklen_t len);
/* Switch a plain socket to TLS (nothing may be buffered). */
int io_start_tls(struct io_conn *io, SSL *ssl, enum bufferevent_ssl_state st);
void io_read(struct io_conn *io, bool on);
int io_fd(const struct io_conn *io);

/* Buffers: io_out() marks the connection for a flush before the loop polls
 * again; the _len functions allocate nothing. */
struct evbuffer *io_in(struct io_conn *io);
struct evbuffer *io_out(struct io_conn *io);
size_t io_in_len(const struct io_conn *io);
size_t io_out_len(const struct io_conn *io);
void io_write(struct io_conn *io, const void *data, size_t len);
/* io_write for bytes that must leave now: sent at once when nothing is
 * queued before them, the rest (or all, on an error, which the next flush
 * reports) queued. */
void io_send(struct io_conn *io, const void *data, size_t len);
struct iovec;
void io_sendv(struct io_conn *io, const struct iovec *iov, int n);
/* Give back the memory of empty buffers (idle connections). */
void io_trim(struct io_conn *io);

/* Stop reading, write what is queued, then on_drain (empty) or on_event
 * (error, or `timeout_sec` passed). */
void io_close_after_flush(struct io_conn *io, double timeout_sec, io_cb done, io_event_cb failed);
/* No more callbacks: events off, off the flush list (buffers stay until io_free). */
void io_stop(struct io_conn *io);
void io_free(struct io_conn *io);
unsigned long io_tls_error(const struct io_conn *io);

void io_flush_shutdown(void);

#endif
