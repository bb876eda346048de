/*
 * The route table (route_table.c): per managed index, the operator's route
 * mode, a rebuild step's override and the counters of where its vector reads
 * went.  The data plane decides with it (routes_decide); the control plane
 * keeps the modes in step with vecgate.routes (proxy/control/route_sync.h).
 */
#ifndef VG_PROXY_ROUTE_TABLE_H
#define VG_PROXY_ROUTE_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/runtime/stats.h"
#include "routing/route.h"

struct backend_state;
struct traffic_sample;

enum route_stat { RS_PRIMARY, RS_REPLICA, RS_FALLBACK, RS_REFUSED, RS_REPLAYED, ROUTE_STAT_COUNT };

struct route_state {
	char *name, *database, *backend, *schema, *table;
	const char *key; /* name, pinned: what a client keeps across a reload */
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
	struct traffic_sample *sample; /* traffic_sample_size > 0: its vector reads' query vectors */
	/* swap_mode hint: the index vector reads of the table are pinned to
	 * ("" = none), and the hint's index list (the pin first, then the
	 * table's indexes that are neither the live nor the candidate one) */
	char pin[64];
	char pin_list[1024];
	uint64_t pinned_reads, unpinned_reads;
	double unpinned_logged_at;
	double pin_local_at;     /* when this instance last wrote the pin */
	bool pin_missing_warned; /* the pinned index is missing: said once */
};

struct route_decision {
	int target;                    /* ROUTE_TO_PRIMARY, ROUTE_TO_REFUSE, or a backend */
	struct backend_state *backend; /* target >= 0 */
	struct route_state *route;     /* the managed index that decided, or NULL */
	enum vg_route_mode mode;
};

/* Build the table from vg.cfg; modes and counters of indexes that stay are
 * carried over from the table it replaces. */
void route_table_build(void);
void route_table_free(void);
int route_count(void);
struct route_state *route_at(int i);
struct route_state *route_find(const char *name);
enum vg_route_mode route_state_effective(const struct route_state *r);
const char *route_stat_name(enum route_stat s);
/* Cheap pre-check: does any managed index live in this backend database? */
bool routes_for_database(const char *dbname);
/* Does some managed index sample its traffic (a flag: per message)?  In
 * this database (a walk of the table: only for likely vector reads)? */
bool routes_sampling(void);
bool routes_sampled_in(const char *dbname);
/* Does some index send its vector reads to a replica or the fallback now?
 * Then routing depends on fresh health checks. */
bool routes_read_off_primary(void);
/* Plan-hint pins.  routes_pin_gen changes with every pin change: a
 * statement prepared under another generation is prepared again. */
extern unsigned routes_pin_gen;
bool routes_pinning(void); /* some index is pinned (a flag: per message) */
bool routes_pinned_in(const char *dbname);
/* Pin a route's reads (index "" unpins); list as pin_index_list makes it. */
void route_set_pin(struct route_state *r, const char *index, const char *list);
/* For a statement text in this database: PIN_HINTED with the hint written
 * to out (*hint_len bytes), PIN_UNSAFE for a read of a pinned table that
 * cannot be pinned safely (*why), PIN_NOT_READ otherwise; *route is the
 * pinned route's index (valid while routes_pin_gen stays). */
int routes_pin_hint(const char *dbname, const char *sql, size_t len, char *out, size_t cap, size_t *hint_len,
                    int *route, const char **why);
/* One read of route `route` was pinned (PIN_HINTED) or passed unpinned
 * (PIN_UNSAFE: logged at most every 10 s with the text). */
void routes_pin_count(int route, int verdict, const char *why, const char *sql, size_t len);
void routes_decide(const char *dbname, const char *primary, const struct sql_class *c, struct route_decision *out);
void routes_count(struct route_state *r, enum route_stat what);
void routes_observe_latency(const char *name, double seconds);

#endif
