/*
 * Route decisions for vector reads (see route.h).  Kept free of I/O so the
 * whole selection can be tested against made-up health snapshots.
 */
#include "routing/route.h"

bool backend_in_rotation(const struct backend_view *b)
{
	if (!b->up)
		return false;
	if (b->role != VG_ROLE_REPLICA)
		return true;
	if (b->promoted)
		return false; /* a promoted replica may be the new primary: its reads would not be the primary's */
	return b->lag_bytes <= (int64_t)b->max_lag_bytes && b->lag_seconds <= b->max_lag_seconds;
}

bool route_is_vector_read(const struct sql_class *c)
{
	return c->statements == 1 && c->read_only && c->vector_op && !c->locking && !c->txn_control && !c->ddl;
}

uint64_t route_match(const struct sql_class *c, const struct route_table_ref *tables, int n)
{
	if (!route_is_vector_read(c))
		return 0;
	uint64_t hits = 0;
	for (int i = 0; i < n && i < 64; i++)
		for (int t = 0; t < c->n_tables; t++)
			if (sql_name_matches(c->tables[t], tables[i].schema, tables[i].table))
				hits |= UINT64_C(1) << i;
	return hits;
}

enum vg_route_mode route_effective(enum vg_route_mode operator_mode, int step_mode)
{
	return step_mode >= 0 && step_mode < VG_ROUTE_COUNT ? (enum vg_route_mode)step_mode : operator_mode;
}

enum vg_route_mode route_combine(enum vg_route_mode a, enum vg_route_mode b)
{
	if (a == VG_ROUTE_REFUSE || b == VG_ROUTE_REFUSE)
		return VG_ROUTE_REFUSE;
	return a == b ? a : VG_ROUTE_PRIMARY;
}

static bool less_lagged(const struct backend_view *a, const struct backend_view *b)
{
	if (a->lag_bytes != b->lag_bytes)
		return a->lag_bytes < b->lag_bytes;
	return a->lag_seconds < b->lag_seconds;
}

int route_pick(enum vg_route_mode mode, const struct backend_view *views, int n)
{
	int best = ROUTE_TO_PRIMARY;
	switch (mode) {
	case VG_ROUTE_REFUSE:
		return ROUTE_TO_REFUSE;
	case VG_ROUTE_PRIMARY:
	case VG_ROUTE_COUNT:
		return ROUTE_TO_PRIMARY;
	case VG_ROUTE_REPLICA:
		for (int i = 0; i < n; i++)
			if (views[i].role == VG_ROLE_REPLICA && backend_in_rotation(&views[i]) &&
			    (best < 0 || less_lagged(&views[i], &views[best])))
				best = i;
		return best;
	case VG_ROUTE_FALLBACK:
		for (int i = 0; i < n; i++)
			if (views[i].role == VG_ROLE_FALLBACK && backend_in_rotation(&views[i]))
				return i;
		return ROUTE_TO_PRIMARY;
	}
	return ROUTE_TO_PRIMARY;
}
