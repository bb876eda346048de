/*
 * Route sync (route_sync.c): keeps the route table's modes in step with
 * vecgate.routes on each managed index's primary, shared by every vecgate
 * instance through LISTEN/NOTIFY, and applies operator changes and rebuild
 * step policies (here at once, then recorded and announced).
 */
#ifndef VG_PROXY_CONTROL_ROUTE_SYNC_H
#define VG_PROXY_CONTROL_ROUTE_SYNC_H

#include "conf/config.h"
#include "proxy/runtime/runtime.h"
#include "routing/rebuild_job.h"

void route_sync_start(void);
void route_sync_reload(void);
void route_sync_stop(void);
/* Operator change: OP_OK, or OP_NOT_FOUND for an unknown index. */
enum op_status routes_set_mode(const char *name, enum vg_route_mode mode, const char *source);
/* A rebuild job entered `state`: apply (or clear) its route policy. */
void routes_job_step(const char *name, enum job_state state);

#endif
