/*
 * Where a statement goes.  Pure decisions over a classified statement and a
 * snapshot of backend health: which managed tables a vector read touches,
 * which route mode is in force (a rebuild step's policy over the operator's
 * choice), and which backend serves it (least-lagged replica in rotation,
 * the fallback, the primary, or a refusal).  Anything that is not clearly a
 * single read-only vector statement goes to the primary.
 */
#ifndef VG_ROUTING_ROUTE_H
#define VG_ROUTING_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "routing/classify.h"

#define VG_SQLSTATE_ROUTE_REFUSED "VG001"

#define ROUTE_TO_PRIMARY (-1)
#define ROUTE_TO_REFUSE (-2)

/* What a health check last saw of one backend. */
struct backend_view {
	enum vg_backend_role role;
	bool up;             /* the last check answered in time */
	int64_t lag_bytes;   /* replica: received but not yet replayed WAL */
	double lag_seconds;  /* replica: age of the last replayed transaction while behind */
	size_t max_lag_bytes;
	double max_lag_seconds;
	bool promoted; /* replica: the last check found it out of recovery (it no longer follows its primary) */
};

/* A managed table, for matching statements against. */
struct route_table_ref {
	const char *schema;
	const char *table;
};

bool backend_in_rotation(const struct backend_view *b);

/* A single read-only statement with a vector operator, no locking, no
 * transaction control: the only kind vecgate moves off the primary. */
bool route_is_vector_read(const struct sql_class *c);

/* Bit i set: the statement is a vector read that references tables[i]
 * (at most 64 tables).  0: not routable. */
uint64_t route_match(const struct sql_class *c, const struct route_table_ref *tables, int n);

/* The mode in force: the rebuild step's (if >= 0), else the operator's. */
enum vg_route_mode route_effective(enum vg_route_mode operator_mode, int step_mode);

/* One statement over several managed tables: refuse if any refuses, their
 * common mode if they agree, otherwise the primary. */
enum vg_route_mode route_combine(enum vg_route_mode a, enum vg_route_mode b);

/* A backend among views[0..n) for this mode: an index, ROUTE_TO_PRIMARY, or
 * ROUTE_TO_REFUSE.  replica: in-rotation replica with the least lag (bytes,
 * then seconds, then lowest index); fallback: the first healthy fallback;
 * either falls back to the primary when nothing qualifies. */
int route_pick(enum vg_route_mode mode, const struct backend_view *views, int n);

#endif
