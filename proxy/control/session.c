/*
 * Open the libpq sessions the control plane runs its SQL on, with the
 * managed index's role, a recognisable application_name and tls.server's
 * libpq TLS keywords, in one place.
 */
#include "proxy/control/session.h"
#include "proxy/runtime/pgconn_params.h"
#include "proxy/runtime/runtime.h"

#include <stdio.h>

struct pg_session *index_session_open(const struct vg_managed_index *mi, const char *role, pg_state_cb on_connect,
                                      pg_state_cb on_lost, void *arg)
{
	if (!mi)
		return NULL;
	const struct vg_backend *be = config_find_backend(vg.cfg, mi->backend);
	if (!be)
		return NULL;
	char port[16], appname[128];
	snprintf(port, sizeof(port), "%d", be->port);
	snprintf(appname, sizeof(appname), "vecgate %s %s", role, mi->name);
	const char *kw[6 + PGCONN_TLS_MAX + 1] = {"host", "port", "dbname", "user", "password", "application_name"};
	const char *val[6 + PGCONN_TLS_MAX + 1] = {be->host, port, mi->database, mi->user ? mi->user : "postgres",
	                                           mi->password ? mi->password : "", appname};
	pgconn_add_tls(&vg.cfg->server_tls, be->host, kw, val, 6, sizeof(kw) / sizeof(*kw));
	return pg_session_connect(vg.base, kw, val, vg.cfg->timeouts.server_connect, on_connect, on_lost, arg);
}
