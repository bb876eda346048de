/*
 * Socket I/O for connections (io.c): plain sockets are read and written by
 * vecgate itself on libevent readiness (one read, one write per hop, write
 * interest only after EAGAIN); TLS sockets are left to libevent's filters.
 */
#ifndef VG_PROXY_IO_H
#define VG_PROXY_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include <event2/bufferevent.h>

/* high/low watermarks for backpressure between linked connections */
#define VG_OUT_HIGH (512 * 1024)
#define VG_OUT_LOW (128 * 1024)

struct io_out {
	TAILQ_ENTRY(io_out) link;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *cb;
	struct event *rev; /* own read event, plain sockets */
	bufferevent_data_cb on_read;
	bufferevent_data_cb on_drain; /* output fell below VG_OUT_LOW by a write-through */
	bufferevent_event_cb on_event;
	void *arg;
	bool queued;
	bool plain;
	bool want_read;
};
/* Take over reading and writing of a plain socket's bufferevent (TLS ones
 * are left to libevent); reading starts with io_read(io, true). */
void io_out_attach(struct io_out *io, struct bufferevent *bev, bool tls, bufferevent_data_cb on_read,
                   bufferevent_data_cb on_drain, bufferevent_event_cb on_event, void *arg);
void io_read(struct io_out *io, bool on);
void io_connected(struct io_out *io); /* a connecting socket now has its fd */
void io_out_detach(struct io_out *io);
void io_out_drained(struct io_out *io); /* from the write callback */
void io_flush_shutdown(void);

struct sockaddr_storage;
/* Resolve a backend host (IP, name, or unix socket directory). */
int backend_sockaddr(const char *host, int port, struct sockaddr_storage *sa, unsigned *salen, char *err,
                     size_t errlen);

#endif
