/*
 * Open the libpq sessions the control plane runs its SQL on, with the
 * managed index's role and a recognisable application_name, in one place.
 */
#include "proxy/control/session.h"
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
	const char *kw[] = {"host", "port", "dbname", "user", "password", "application_name", NULL};
	const char *val[] = {be->host, port, mi->database, mi->user ? mi->user : "postgres",
	                     mi->password ? mi->password : "", appname, NULL};
	return pg_session_connect(vg.base, kw, val, vg.cfg->timeouts.server_connect, on_connect, on_lost, arg);
}
