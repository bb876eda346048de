/*
 * Listening sockets (TCP and unix) and the admission limit: connections over
 * max_client_conn are answered with SQLSTATE 53300 and closed, without ever
 * becoming client_conns.
 */
#include "proxy/listener.h"
#include "proxy/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct listener {
	struct listener *next;
	struct evconnlistener *evl;
	bool is_unix;
	char path[108];
};

static void refuse_too_many(int fd)
{
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, "FATAL", "53300", "sorry, too many clients already",
	            "vecgate max_client_conn reached", NULL);
	/* best effort: the socket is fresh, the message small */
	ssize_t w = write(fd, b.data, b.len);
	(void)w;
	buf_free(&b);
	close(fd);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	(void)evl;
	(void)salen;
	struct listener *l = arg;
	if (vg.shutting_down) {
		close(fd);
		return;
	}
	if (vg.n_clients >= vg.cfg->limits.max_client_conn) {
		log_warn("refusing connection: max_client_conn (%d) reached", vg.cfg->limits.max_client_conn);
		refuse_too_many(fd);
		return;
	}
	char host[INET6_ADDRSTRLEN + 2] = "unix";
	int port = 0;
	if (!l->is_unix) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (sa->sa_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)sa;
			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (sa->sa_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
			snprintf(host, sizeof(host), "[%s]", ip);
			port = ntohs(in6->sin6_port);
		}
	}
	client_accept(fd, host, port, l->is_unix);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	(void)evl;
	(void)arg;
	log_error("accept failed: %s", strerror(errno));
}

static int listen_one(const struct vg_listen *cfg)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l)
		return -1;
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	if (cfg->unix_socket_dir) {
		struct sockaddr_un un = {.sun_family = AF_UNIX};
		int n = snprintf(un.sun_path, sizeof(un.sun_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir, cfg->port);
		if (n < 0 || (size_t)n >= sizeof(un.sun_path)) {
			log_error("unix socket path too long in %s", cfg->unix_socket_dir);
			free(l);
			return -1;
		}
		unlink(un.sun_path);
		l->evl = evconnlistener_new_bind(vg.base, on_accept, l, flags, 1024, (struct sockaddr *)&un,
		                                 (int)sizeof(un));
		if (l->evl) {
			chmod(un.sun_path, 0777);
			l->is_unix = true;
			snprintf(l->path, sizeof(l->path), "%s", un.sun_path);
			log_info("listening on unix:%s", un.sun_path);
		} else {
			log_error("cannot listen on %s: %s", un.sun_path, strerror(errno));
		}
	} else {
		struct sockaddr_storage ss;
		int sslen = (int)sizeof(ss);
		char spec[300];
		if (strchr(cfg->host, ':'))
			snprintf(spec, sizeof(spec), "[%s]:%d", cfg->host, cfg->port);
		else
			snprintf(spec, sizeof(spec), "%s:%d", cfg->host, cfg->port);
		if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0) {
			log_error("cannot parse listen address %s", spec);
			free(l);
			return -1;
		}
		l->evl = evconnlistener_new_bind(vg.base, on_accept, l, flags, 1024, (struct sockaddr *)&ss, sslen);
		if (l->evl)
			log_info("listening on %s", spec);
		else
			log_error("cannot listen on %s: %s", spec, strerror(errno));
	}
	if (!l->evl) {
		free(l);
		return -1;
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	l->next = vg.listeners;
	vg.listeners = l;
	return 0;
}

int listeners_start(void)
{
	for (size_t i = 0; i < vg.cfg->n_listen; i++)
		if (listen_one(&vg.cfg->listen[i]) < 0)
			return -1;
	return 0;
}

void listeners_stop(void)
{
	while (vg.listeners) {
		struct listener *l = vg.listeners;
		vg.listeners = l->next;
		evconnlistener_free(l->evl);
		if (l->is_unix)
			unlink(l->path);
		free(l);
	}
}
