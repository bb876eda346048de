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

struct route_state;
struct pg_session;

void route_sync_start(void);
/* The session that keeps r's database's vecgate schema (routes and
 * vecgate.eval_samples), or NULL while it is not usable. */
struct pg_session *route_sync_session(const struct route_state *r);
void route_sync_reload(void);
void route_sync_stop(void);
/* Operator change: OP_OK, or OP_NOT_FOUND for an unknown index. */
enum op_status routes_set_mode(const char *name, enum vg_route_mode mode, const char *source);
/* A rebuild job entered `state`: apply (or clear) its route policy. */
void routes_job_step(const char *name, enum job_state state);
/* A rebuild job committed a pin (swap_mode hint) to vecgate.routes: it
 * holds here at once; other instances follow its NOTIFY. */
void routes_pin_written(const char *name, const char *index, const char *list);
/* Has every database's vecgate.routes been read once (pins included)?
 * Listeners wait for it, within limits, so that a restarted vecgate
 * serves no read before it knows its pins. */
bool route_sync_settled(void);

#endif
