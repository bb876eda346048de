/*
 * The client-facing login exchange (auth.c): SCRAM-SHA-256, md5 or trust
 * against secrets from the config or an auth_query, with a full mock
 * exchange for unknown users so that names cannot be probed.
 */
#ifndef VG_PROXY_AUTH_H
#define VG_PROXY_AUTH_H

#include "proxy/conn.h"

void auth_begin(struct client_conn *c);
void auth_handle_message(struct client_conn *c, uint8_t type, const uint8_t *body, size_t len);
/* Free what only the login needed (cancelling a running auth_query): at
 * login, at close; harmless when already done. */
void auth_release(struct client_conn *c);

#endif
