/*
 * The backend table (backend_table.c): one state per configured backend,
 * built from the config.  The control plane's health checks write each
 * backend's view (up, lag, rotation); routing reads the views of the
 * replicas and fallbacks serving a primary.
 */
#ifndef VG_PROXY_BACKEND_TABLE_H
#define VG_PROXY_BACKEND_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "routing/route.h"

struct pg_session;

struct backend_state {
	char *name, *host, *serves;
	const char *key; /* name, pinned: what a client keeps across a reload */
	int port;
	struct backend_view view;
	bool checked; /* at least one check finished */
	bool in_recovery, replay_paused;
	double last_check, last_ok, sent_at;
	char last_error[256];
	struct pg_session *session; /* the health check's, owned by the control plane */
	bool in_flight;
	uint64_t checks;
	uint64_t routed_reads;   /* vector reads sent here */
	uint64_t replayed_reads; /* reads this backend failed, re-run on the primary */
};

/* (Re)build the table from vg.cfg; the caller closes health sessions first. */
void backend_table_build(void);
/* Does vg.cfg name the same backends (names, addresses, roles, serves)? */
bool backend_table_matches_config(void);
void backend_table_take_bounds(void); /* new lag bounds from vg.cfg */
void backend_table_free(void);
int backend_count(void);
struct backend_state *backend_at(int i);
struct backend_state *backend_find(const char *name);
/* Replicas and fallbacks serving `primary`: fills out[] and views[]. */
int backends_serving(const char *primary, struct backend_state **out, struct backend_view *views, int max);

#endif
