/*
 * Decide where a vector read goes: the route mode of every managed index
 * it touches (operator's mode or a rebuild step's), combined, and the
 * health of the replicas and fallbacks serving its primary.
 */
#include "proxy/route_table.h"
#include "proxy/strpool.h"
#include "proxy/backend_table.h"
#include "proxy/runtime/runtime.h"
#include "proxy/sampler.h"
#include "routing/classify.h"
#include "routing/pin_hint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct route_state *routes;
static int n_routes;
static int n_sampled; /* routes with a traffic sample */
static int n_pinned;  /* routes with a plan-hint pin */
unsigned routes_pin_gen;

static const char *const stat_names[ROUTE_STAT_COUNT] = {"primary", "replica", "fallback", "refused", "replayed"};

static void free_routes(struct route_state *arr, int n)
{
	for (int i = 0; i < n; i++) {
		free(arr[i].name);
		free(arr[i].database);
		free(arr[i].backend);
		free(arr[i].schema);
		free(arr[i].table);
		sample_free(arr[i].sample);
	}
	free(arr);
}

/* Build the table from the config; modes and counters of indexes that
 * stay are carried over from `old`. */
static void table_new(struct route_state *old, int n_old)
{
	const struct vg_config *cfg = vg.cfg;
	routes = calloc(cfg->n_indexes + 1, sizeof(*routes));
	if (!routes)
		return;
	for (size_t i = 0; i < cfg->n_indexes; i++) {
		const struct vg_managed_index *mi = &cfg->indexes[i];
		struct route_state *r = &routes[n_routes++];
		r->name = strdup(mi->name);
		r->key = strpool_pin(mi->name);
		r->database = strdup(mi->database);
		r->backend = strdup(mi->backend);
		r->schema = strdup(mi->schema);
		r->table = strdup(mi->table);
		r->config_mode = r->mode = mi->route;
		r->step_mode = -1;
		snprintf(r->mode_source, sizeof(r->mode_source), "config");
		for (int o = 0; o < n_old; o++) {
			if (strcmp(old[o].name, mi->name))
				continue;
			r->mode = old[o].mode;
			r->step_mode = old[o].step_mode;
			memcpy(r->step, old[o].step, sizeof(r->step));
			memcpy(r->stats, old[o].stats, sizeof(r->stats));
			r->latency = old[o].latency;
			memcpy(r->updated_by, old[o].updated_by, sizeof(r->updated_by));
			memcpy(r->updated_at, old[o].updated_at, sizeof(r->updated_at));
			memcpy(r->mode_source, old[o].mode_source, sizeof(r->mode_source));
			r->mode_dirty = old[o].mode_dirty;
			r->step_dirty = old[o].step_dirty;
			r->synced = old[o].synced;
			memcpy(r->pin, old[o].pin, sizeof(r->pin));
			memcpy(r->pin_list, old[o].pin_list, sizeof(r->pin_list));
			r->pinned_reads = old[o].pinned_reads;
			r->unpinned_reads = old[o].unpinned_reads;
			if (old[o].sample && old[o].sample->size == mi->traffic_sample_size) {
				r->sample = old[o].sample; /* the sample survives a reload of the same size */
				old[o].sample = NULL;
			}
		}
		if (!r->sample && mi->traffic_sample_size > 0)
			r->sample = sample_new(mi->traffic_sample_size);
	}
}

void route_table_build(void)
{
	struct route_state *old = routes;
	int n_old = n_routes;
	routes = NULL;
	n_routes = 0;
	table_new(old, n_old);
	free_routes(old, n_old);
	n_sampled = n_pinned = 0;
	for (int i = 0; i < n_routes; i++) {
		n_sampled += routes[i].sample != NULL;
		n_pinned += routes[i].pin[0] != 0;
	}
	routes_pin_gen++;
}

void route_table_free(void)
{
	free_routes(routes, n_routes);
	routes = NULL;
	n_routes = n_sampled = n_pinned = 0;
	routes_pin_gen++;
}

int route_count(void)
{
	return n_routes;
}

struct route_state *route_at(int i)
{
	return i >= 0 && i < n_routes ? &routes[i] : NULL;
}

const char *route_stat_name(enum route_stat s)
{
	return stat_names[s];
}

enum vg_route_mode route_state_effective(const struct route_state *r)
{
	return route_effective(r->mode, r->step_mode);
}

struct route_state *route_find(const char *name)
{
	for (int i = 0; i < n_routes; i++)
		if (!strcmp(routes[i].name, name))
			return &routes[i];
	return NULL;
}

bool routes_for_database(const char *dbname)
{
	for (int i = 0; i < n_routes; i++)
		if (!strcmp(routes[i].database, dbname))
			return true;
	return false;
}

bool routes_sampling(void)
{
	return n_sampled > 0;
}

bool routes_sampled_in(const char *dbname)
{
	for (int i = 0; i < n_routes; i++)
		if (routes[i].sample && !strcmp(routes[i].database, dbname))
			return true;
	return false;
}

bool routes_read_off_primary(void)
{
	for (int i = 0; i < n_routes; i++) {
		enum vg_route_mode m = route_state_effective(&routes[i]);
		if (m == VG_ROUTE_REPLICA || m == VG_ROUTE_FALLBACK)
			return true;
	}
	return false;
}

bool routes_pinning(void)
{
	return n_pinned > 0;
}

bool routes_pinned_in(const char *dbname)
{
	for (int i = 0; i < n_routes; i++)
		if (routes[i].pin[0] && !strcmp(routes[i].database, dbname))
			return true;
	return false;
}

void route_set_pin(struct route_state *r, const char *index, const char *list)
{
	if (!strcmp(r->pin, index) && !strcmp(r->pin_list, list))
		return;
	n_pinned += (index[0] != 0) - (r->pin[0] != 0);
	if (strcmp(r->pin, index))
		log_info("route %s: vector reads through vecgate %s%s", r->name, index[0] ? "are pinned to index " :
		         "are no longer pinned (the planner chooses)", index);
	snprintf(r->pin, sizeof(r->pin), "%s", index);
	snprintf(r->pin_list, sizeof(r->pin_list), "%s", index[0] ? list : "");
	routes_pin_gen++;
}

int routes_pin_hint(const char *dbname, const char *sql, size_t len, char *out, size_t cap, size_t *hint_len,
                    int *route, const char **why)
{
	struct sql_class cls;
	bool classified = false;
	*hint_len = 0;
	*route = -1;
	*why = "";
	for (int i = 0; i < n_routes; i++) {
		struct route_state *r = &routes[i];
		if (!r->pin[0] || strcmp(r->database, dbname))
			continue;
		if (!classified) {
			/* only what only reads: a write keeps the planner's choice */
			sql_classify(sql, len, &cls);
			if (!cls.vector_op || !cls.read_only || cls.locking)
				return PIN_NOT_READ;
			classified = true;
		}
		enum pin_verdict v = pin_hint_for(sql, len, r->schema, r->table, r->pin_list, out, cap, why);
		if (v == PIN_NOT_READ)
			continue;
		*route = i;
		if (v == PIN_HINTED)
			*hint_len = strlen(out);
		return v;
	}
	return PIN_NOT_READ;
}

void routes_pin_count(int route, int verdict, const char *why, const char *sql, size_t len)
{
	struct route_state *r = route_at(route);
	if (!r)
		return;
	if (verdict == PIN_HINTED) {
		r->pinned_reads++;
		return;
	}
	if (verdict != PIN_UNSAFE)
		return;
	r->unpinned_reads++;
	double now = now_sec();
	if (now - r->unpinned_logged_at >= 10) {
		r->unpinned_logged_at = now;
		log_warn("route %s: a vector read passes unpinned, as the planner chooses (%s; %llu so far, logged at most "
		         "every 10 s): %.*s",
		         r->name, why, (unsigned long long)r->unpinned_reads, (int)(len < 160 ? len : 160), sql);
	}
}

void routes_decide(const char *dbname, const char *primary, const struct sql_class *c, struct route_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->target = ROUTE_TO_PRIMARY;
	struct route_table_ref refs[64] = {{0}};
	struct route_state *owners[64];
	int n = 0;
	for (int i = 0; i < n_routes && n < 64; i++) {
		if (strcmp(routes[i].database, dbname) || strcmp(routes[i].backend, primary))
			continue;
		refs[n] = (struct route_table_ref){routes[i].schema, routes[i].table};
		owners[n++] = &routes[i];
	}
	uint64_t hits = route_match(c, refs, n);
	if (!hits)
		return;
	bool first = true;
	enum vg_route_mode mode = VG_ROUTE_PRIMARY;
	for (int i = 0; i < n; i++) {
		if (!(hits & (UINT64_C(1) << i)))
			continue;
		enum vg_route_mode m = route_state_effective(owners[i]);
		mode = first ? m : route_combine(mode, m);
		if (first || m == VG_ROUTE_REFUSE)
			out->route = owners[i];
		first = false;
	}
	out->mode = mode;
	struct backend_state *cands[32];
	struct backend_view views[32];
	int nc = backends_serving(primary, cands, views, 32);
	int pick = route_pick(mode, views, nc);
	out->target = pick;
	out->backend = pick >= 0 ? cands[pick] : NULL;
}

void routes_count(struct route_state *r, enum route_stat what)
{
	if (r)
		r->stats[what]++;
}

void routes_observe_latency(const char *name, double seconds)
{
	struct route_state *r = route_find(name);
	if (r)
		stats_observe(&r->latency, seconds);
}
