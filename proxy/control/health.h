/*
 * Backend health checks (health.c): one libpq async session per configured
 * backend, checked every health_check.interval.  Results go into the backend
 * table (proxy/backend_table.h), where routing reads them.
 */
#ifndef VG_PROXY_CONTROL_HEALTH_H
#define VG_PROXY_CONTROL_HEALTH_H

#include <stdbool.h>

/* health_check.quiet_interval: control-plane work that matters only while
 * clients talk or reads leave the primary (health rounds, the routes'
 * safety-net re-read) may skip a tick when neither happened since its
 * previous tick, until quiet_interval has passed since it last ran.  Each
 * such timer keeps its own pace. */
struct quiet_pace {
	double data_seen;  /* vg_now (the last client read) at the previous tick */
	double last_round; /* when the work last ran */
};
/* Called every tick: true when this one may be skipped. */
bool quiet_pace_rest(struct quiet_pace *p, double now);

void health_start(void);
void health_reload(void);
void health_stop(void);

#endif
