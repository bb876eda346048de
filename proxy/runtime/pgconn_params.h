/*
 * TLS for vecgate's side connections (pgconn_params.c).  Every libpq
 * connection vecgate opens to a backend -- auth_query, health checks, the
 * vecgate.routes sync, the rebuild and drift sessions -- gets its TLS
 * keywords from here, so that it honours tls.server the way the pooled
 * server connections (proxy/server.c, OpenSSL directly) do.
 */
#ifndef VG_PROXY_RUNTIME_PGCONN_PARAMS_H
#define VG_PROXY_RUNTIME_PGCONN_PARAMS_H

#include <stddef.h>

#include "conf/config.h"

/* At most this many keywords are appended: sslmode, sslrootcert, sslcert,
 * sslkey, sslnegotiation. */
#define PGCONN_TLS_MAX 5

/*
 * Append the libpq TLS keywords for tls.server to the keyword/value arrays
 * (kw[0..n) already filled) and NULL-terminate both; returns the new count.
 * cap is the arrays' size: at most cap - 1 pairs are written.
 *
 *   sslmode       disable | prefer | require | verify-ca | verify-full, as
 *                 tls.server.mode; "disable" for a unix socket host (a
 *                 leading '/'), where server.c does not use TLS either
 *   sslrootcert   tls.server.ca, with verify-ca and verify-full (server.c
 *                 checks the chain only in those modes)
 *   sslcert/key   tls.server.cert and .key, when set
 *   sslnegotiation "postgres" (SSLRequest first, as server.c), only when the
 *                 libpq in use knows the keyword (17 and later)
 *
 * The values point into `t` and are copied by libpq when the connection
 * starts (PQconnectStartParams), so `t` only has to outlive that call.
 */
size_t pgconn_add_tls(const struct vg_server_tls *t, const char *host, const char **kw, const char **val, size_t n,
                      size_t cap);

#endif
