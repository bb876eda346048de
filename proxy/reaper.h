/*
 * Deferred frees (reaper.c): closed clients and servers wait on dead lists
 * until the loop is outside every callback that could still touch them.
 */
#ifndef VG_PROXY_REAPER_H
#define VG_PROXY_REAPER_H

struct client_conn;
struct server_conn;

void reaper_init(void (*client_free_fn)(struct client_conn *), void (*server_free_fn)(struct server_conn *));
void reaper_schedule(void);
void reaper_run(void); /* free everything on the dead lists now */
void reaper_free(void);

#endif
