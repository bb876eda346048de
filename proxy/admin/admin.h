/*
 * The admin HTTP API (evhttp, JSON, bearer token).  admin_start() listens
 * on admin.host:admin.port when a port is configured.
 */
#ifndef VG_PROXY_ADMIN_ADMIN_H
#define VG_PROXY_ADMIN_ADMIN_H

int admin_start(void);
void admin_stop(void);

#endif
