/*
 * The libpq TLS keywords of vecgate's side connections, derived from
 * tls.server in one place (see pgconn_params.h): auth_query, health checks,
 * route sync and the control-plane sessions used to hard-code or omit
 * sslmode, so they did not follow tls.server as the pooled connections do.
 */
#include "proxy/runtime/pgconn_params.h"

#include <libpq-fe.h>

static const char *sslmode_name(enum vg_server_tls_mode m)
{
	switch (m) {
	case VG_STLS_PREFER:
		return "prefer";
	case VG_STLS_REQUIRE:
		return "require";
	case VG_STLS_VERIFY_CA:
		return "verify-ca";
	case VG_STLS_VERIFY_FULL:
		return "verify-full";
	case VG_STLS_DISABLE:
	default:
		return "disable";
	}
}

static size_t add(const char **kw, const char **val, size_t n, size_t cap, const char *k, const char *v)
{
	if (n + 1 >= cap)
		return n;
	kw[n] = k;
	val[n] = v;
	return n + 1;
}

size_t pgconn_add_tls(const struct vg_server_tls *t, const char *host, const char **kw, const char **val, size_t n,
                      size_t cap)
{
	if (!cap)
		return 0;
	bool unix_socket = host && host[0] == '/';
	enum vg_server_tls_mode mode = unix_socket ? VG_STLS_DISABLE : t->mode;
	n = add(kw, val, n, cap, "sslmode", sslmode_name(mode));
	if (mode != VG_STLS_DISABLE) {
		if (mode >= VG_STLS_VERIFY_CA && t->ca_file)
			n = add(kw, val, n, cap, "sslrootcert", t->ca_file);
		if (t->cert_file && t->key_file) {
			n = add(kw, val, n, cap, "sslcert", t->cert_file);
			n = add(kw, val, n, cap, "sslkey", t->key_file);
		}
		/* libpq before 17 refuses keywords it does not know */
		if (PQlibVersion() >= 170000)
			n = add(kw, val, n, cap, "sslnegotiation", "postgres");
	}
	kw[n] = NULL;
	val[n] = NULL;
	return n;
}
