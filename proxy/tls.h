/*
 * TLS contexts (tls.c): one for clients (vecgate terminates their TLS), one
 * for backends (vecgate is the TLS client), built from tls.client/tls.server.
 */
#ifndef VG_PROXY_TLS_H
#define VG_PROXY_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "conf/config.h"

SSL_CTX *tls_client_ctx_new(const struct vg_client_tls *cfg, char *err, size_t errlen);
SSL_CTX *tls_server_ctx_new(const struct vg_server_tls *cfg, char *err, size_t errlen);

#endif
