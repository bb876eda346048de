/*
 * The route table (routes.c): per managed index, the operator's route mode
 * and a rebuild step's override, shared across vecgate instances through
 * vecgate.routes + LISTEN/NOTIFY.  routes_decide() turns a classified
 * statement into a destination using routing/route.h and backend health.
 */
#ifndef VG_PROXY_ROUTES_H
#define VG_PROXY_ROUTES_H

#include <stdint.h>

#include "proxy/json.h"
#include "proxy/stats.h"
#include "routing/rebuild_job.h"
#include "routing/route.h"

struct evbuffer;
struct backend_state;

enum route_stat { RS_PRIMARY, RS_REPLICA, RS_FALLBACK, RS_REFUSED, RS_REPLAYED, ROUTE_STAT_COUNT };

struct route_state {
	char *name, *database, *backend, *schema, *table;
	enum vg_route_mode config_mode; /* seeded into vecgate.routes when absent */
	enum vg_route_mode mode;        /* the operator's */
	int step_mode;                  /* a rebuild step's policy, -1 = none */
	char step[16];
	char mode_source[64];
	char updated_by[200], updated_at[40];
	bool synced; /* read back from vecgate.routes at least once */
	bool mode_dirty, step_dirty;
	unsigned mode_gen, mode_gen_sent, step_gen, step_gen_sent;
	uint64_t stats[ROUTE_STAT_COUNT];
	struct latency_hist latency; /* vector reads: arrival to the ReadyForQuery that ends the cycle */
};

struct route_decision {
	int target;                   /* ROUTE_TO_PRIMARY, ROUTE_TO_REFUSE, or a backend */
	struct backend_state *backend; /* target >= 0 */
	struct route_state *route;    /* the managed index that decided, or NULL */
	enum vg_route_mode mode;
};

void routes_start(void);
void routes_reload(void);
void routes_stop(void);
struct route_state *route_find(const char *name);
enum vg_route_mode route_state_effective(const struct route_state *r);
/* Operator change: in force here at once, then recorded and announced. */
int routes_set_mode(const char *name, enum vg_route_mode mode, const char *source);
/* A rebuild job entered `state`: apply (or clear) its route policy. */
void routes_job_step(const char *name, enum job_state state);
/* Cheap pre-check: does any managed index live in this backend database? */
bool routes_for_database(const char *dbname);
void routes_decide(const char *dbname, const char *primary, const struct sql_class *c, struct route_decision *out);
void routes_count(struct route_state *r, enum route_stat what);
void routes_observe_latency(const char *name, double seconds);
void route_json(struct json *j, const char *key, const struct route_state *r);
void routes_json(struct json *j, const char *key);
void routes_metrics(struct evbuffer *out);

#endif
