/*
 * Backends and their health (backends.c): one state per configured backend,
 * refreshed by libpq health checks every health_check.interval.  Replicas
 * and fallbacks name the primary they serve; routing asks for the
 * candidates serving a primary and their backend_view snapshots.
 */
#ifndef VG_PROXY_BACKENDS_H
#define VG_PROXY_BACKENDS_H

#include <stdint.h>

#include "proxy/json.h"
#include "routing/route.h"

struct pg_session;
struct evbuffer;

struct backend_state {
	char *name, *host, *serves;
	int port;
	struct backend_view view;
	bool checked; /* at least one check finished */
	bool in_recovery, replay_paused;
	double last_check, last_ok, sent_at;
	char last_error[256];
	struct pg_session *session;
	bool in_flight;
	uint64_t checks;
	uint64_t routed_reads;   /* vector reads sent here */
	uint64_t replayed_reads; /* reads this backend failed, re-run on the primary */
};

void backends_start(void);
void backends_reload(void);
void backends_stop(void);
struct backend_state *backend_find(const char *name);
/* Replicas and fallbacks serving `primary`: fills out[] and views[]. */
int backends_serving(const char *primary, struct backend_state **out, struct backend_view *views, int max);
void backends_json(struct json *j, const char *key);
void backends_metrics(struct evbuffer *out);

#endif
