/*
 * Client connections (client.c): accept, startup packet (TLS or GSS refusal
 * first), the login phase handed to auth.c, then the forwarding loop that
 * moves the client's messages to its server by header-sized peeks.  What a
 * cycle's statement means for routing is asked of read_route.h; how named
 * statements are rewritten, of prepared.h.
 */
#ifndef VG_PROXY_CLIENT_H
#define VG_PROXY_CLIENT_H

#include "proxy/conn.h"

void client_accept(int fd, const char *host, int port, bool is_unix);
void client_close(struct client_conn *c, const char *reason);
void client_send_error(struct client_conn *c, const char *severity, const char *sqlstate,
                       const char *msg, const char *detail);
void client_fatal(struct client_conn *c, const char *sqlstate, const char *msg, const char *detail);
void client_process(struct client_conn *c);
void client_linked(struct client_conn *c);     /* a server was assigned */
void client_login_done(struct client_conn *c); /* welcome params known: finish login */
void client_free(struct client_conn *c);
void client_pause_read(struct client_conn *c);
void client_resume_read(struct client_conn *c);
/* A routed read's server failed before answering: re-run it on the primary. */
void client_replay_on_primary(struct client_conn *c, const char *why);
struct client_conn *client_find_by_cancel_key(uint32_t pid, uint32_t key);

#endif
