/*
 * Server connections (server.c): connect, TLS, log in to the backend, then
 * read its answers by header-sized peeks and deliver each to the client the
 * pending queue says it is owed to (or swallow it).
 */
#ifndef VG_PROXY_SERVER_H
#define VG_PROXY_SERVER_H

#include "proxy/conn.h"

struct server_conn *server_new(struct pool *p);
void server_close(struct server_conn *s, const char *reason);
void server_free(struct server_conn *s);
void server_link(struct server_conn *s, struct client_conn *c);
void server_unlink_client_gone(struct server_conn *s);
bool server_is_clean(const struct server_conn *s);
void server_send_internal(struct server_conn *s, const char *sql);
void server_process(struct server_conn *s);
void server_stop_holding(struct server_conn *s); /* deliver what is held, stop holding */
void server_rw_set(struct server_conn *s, enum server_rw to); /* the one transition of s->rw */
/* Ask the server whether it takes writes (read-write pools): the answer
 * sets s->rw at the query's ReadyForQuery. */
void server_check_role(struct server_conn *s);

#endif
