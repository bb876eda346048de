/*
 * Backend health checks (health.c): one libpq async session per configured
 * backend, checked every health_check.interval.  Results go into the backend
 * table (proxy/backend_table.h), where routing reads them.
 */
#ifndef VG_PROXY_CONTROL_HEALTH_H
#define VG_PROXY_CONTROL_HEALTH_H

void health_start(void);
void health_reload(void);
void health_stop(void);

#endif
