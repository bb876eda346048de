/*
 * Control-plane sessions to a managed index's database (session.c): the
 * rebuild job's and the drift monitor's libpq sessions, named
 * "vecgate <role> <index>" in pg_stat_activity so operators can tell them
 * apart from application traffic.
 */
#ifndef VG_PROXY_CONTROL_SESSION_H
#define VG_PROXY_CONTROL_SESSION_H

#include "conf/config.h"
#include "proxy/runtime/pgasync.h"

/* NULL when the index's backend is not configured or libpq cannot start. */
struct pg_session *index_session_open(const struct vg_managed_index *mi, const char *role, pg_state_cb on_connect,
                                      pg_state_cb on_lost, void *arg);

#endif
