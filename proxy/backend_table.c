/*
 * Hold what vecgate knows about each configured backend, so that routing
 * decisions in the data plane read plain values while health checks (the
 * control plane) refresh them.
 */
#include "proxy/backend_table.h"
#include "proxy/strpool.h"
#include "proxy/runtime/log.h"
#include "proxy/runtime/runtime.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static struct backend_state *backends;
static int n_backends;

static void table_new(void)
{
	const struct vg_config *cfg = vg.cfg;
	backends = calloc(cfg->n_backends, sizeof(*backends));
	if (!backends)
		return;
	for (size_t i = 0; i < cfg->n_backends; i++) {
		const struct vg_backend *be = &cfg->backends[i];
		struct backend_state *b = &backends[n_backends++];
		b->name = strdup(be->name);
		b->key = strpool_pin(be->name);
		b->host = strdup(be->host);
		b->serves = be->serves ? strdup(be->serves) : NULL;
		b->port = be->port;
		b->view.role = be->role;
		b->view.max_lag_bytes = be->max_lag_bytes;
		b->view.max_lag_seconds = be->max_lag_seconds;
	}
}

void backend_table_free(void)
{
	for (int i = 0; i < n_backends; i++) {
		free(backends[i].name);
		free(backends[i].host);
		free(backends[i].serves);
	}
	free(backends);
	backends = NULL;
	n_backends = 0;
}

bool backend_table_matches_config(void)
{
	const struct vg_config *cfg = vg.cfg;
	bool same = backends && (size_t)n_backends == cfg->n_backends;
	for (int i = 0; same && i < n_backends; i++) {
		const struct vg_backend *be = &cfg->backends[i];
		same = !strcmp(be->name, backends[i].name) && !strcmp(be->host, backends[i].host) &&
		       be->port == backends[i].port && be->role == backends[i].view.role &&
		       !be->serves == !backends[i].serves && (!be->serves || !strcmp(be->serves, backends[i].serves));
	}
	return same;
}

void backend_table_take_bounds(void)
{
	for (int i = 0; i < n_backends; i++) {
		backends[i].view.max_lag_bytes = vg.cfg->backends[i].max_lag_bytes;
		backends[i].view.max_lag_seconds = vg.cfg->backends[i].max_lag_seconds;
	}
}

void backend_table_build(void)
{
	backend_table_free();
	table_new();
}

int backend_count(void)
{
	return n_backends;
}

struct backend_state *backend_at(int i)
{
	return i >= 0 && i < n_backends ? &backends[i] : NULL;
}

struct backend_state *backend_find(const char *name)
{
	for (int i = 0; i < n_backends; i++)
		if (!strcmp(backends[i].name, name))
			return &backends[i];
	return NULL;
}

static const char *const write_state_names[] = {
	[BW_UNKNOWN] = "unknown", [BW_WRITABLE] = "primary", [BW_STANDBY] = "standby",
	[BW_READ_ONLY] = "read-only", [BW_UNREACHABLE] = "unreachable",
};

void backend_write_seen(const char *name, enum backend_write_state to, const char *detail)
{
	struct backend_state *b = backend_find(name);
	if (!b || b->write_state == to)
		return; /* every refused retry of an episode says the same: logged once */
	assert(to != BW_UNKNOWN);
	enum backend_write_state from = b->write_state;
	double now = now_sec();
	b->write_state = to;
	if (to == BW_WRITABLE) {
		if (from == BW_UNKNOWN)
			return; /* the first login: nothing failed over */
		b->last_unwritable_secs = now - b->unwritable_since;
		log_warn("backend %s (%s:%d): primary writable again after %.1f s (was %s)", b->name, b->host, b->port,
		         b->last_unwritable_secs, write_state_names[from]);
		return;
	}
	if (from == BW_WRITABLE || from == BW_UNKNOWN) {
		b->unwritable_since = now;
		log_warn("backend %s (%s:%d) is not writable: %s (%s); clients wait for a writable server", b->name, b->host,
		         b->port, write_state_names[to], detail);
	} else {
		log_info("backend %s (%s:%d) is %s now (%s), not writable for %.1f s", b->name, b->host, b->port,
		         write_state_names[to], detail, now - b->unwritable_since);
	}
}

const char *backend_current_role(const struct backend_state *b)
{
	if (b->view.role == VG_ROLE_PRIMARY && b->write_state != BW_UNKNOWN)
		return write_state_names[b->write_state];
	if (!b->checked)
		return "unknown";
	if (!b->view.up)
		return "unreachable";
	return b->in_recovery ? "standby" : "primary";
}

int backends_serving(const char *primary, struct backend_state **out, struct backend_view *views, int max)
{
	int n = 0;
	for (int i = 0; i < n_backends && n < max; i++) {
		if (!backends[i].serves || strcmp(backends[i].serves, primary))
			continue;
		out[n] = &backends[i];
		views[n] = backends[i].view;
		n++;
	}
	return n;
}
