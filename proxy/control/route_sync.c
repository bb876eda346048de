/*
 * The route table: per managed index, the mode its vector reads are routed
 * by, shared by every vecgate instance through the database.  Modes live in
 * vecgate.routes on the index's primary; a change (admin API, or a rebuild
 * step's policy) is applied here at once, written with pg_notify() in the
 * same statement, and every instance LISTENing on vecgate_routes re-reads
 * the table when the commit's notification arrives.  A periodic re-read
 * (routing.refresh_seconds, health_check.quiet_interval while no client
 * talks) is the safety net for lost connections.  A local
 * change that is not yet written is never overwritten by a re-read.
 */
#include "proxy/control/route_sync.h"
#include "proxy/control/health.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/route_table.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/pgconn_params.h"
#include "proxy/runtime/runtime.h"
#include "routing/rebuild_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the shared schema (routing/rebuild_sql.c), then the notifications */
static const char *routes_setup_sql(void)
{
	static char sql[2048];
	if (!sql[0])
		snprintf(sql, sizeof(sql), "%s;LISTEN vecgate_routes;LISTEN vecgate_jobs", SQL_ROUTES_SCHEMA);
	return sql;
}

#define SQL_ROUTE_SEED "INSERT INTO vecgate.routes (index_name, mode, updated_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"

#define SQL_ROUTE_SET_MODE                                                                                         \
	"WITH u AS (INSERT INTO vecgate.routes AS r (index_name, mode, updated_by) VALUES ($1, $2, $3)"                \
	" ON CONFLICT (index_name) DO UPDATE SET mode = EXCLUDED.mode, updated_at = now(),"                            \
	" updated_by = EXCLUDED.updated_by RETURNING r.index_name)"                                                    \
	" SELECT pg_notify('vecgate_routes', index_name) FROM u"

#define SQL_ROUTE_SET_STEP                                                                                         \
	"WITH u AS (INSERT INTO vecgate.routes AS r (index_name, mode, step_mode, step, updated_by)"                   \
	" VALUES ($1, $2, $3, $4, $5) ON CONFLICT (index_name) DO UPDATE SET step_mode = EXCLUDED.step_mode,"          \
	" step = EXCLUDED.step, updated_at = now(), updated_by = EXCLUDED.updated_by RETURNING r.index_name)"          \
	" SELECT pg_notify('vecgate_routes', index_name) FROM u"

/* a pin counts only while its index exists and is valid: a hint naming a
 * missing index would leave the planner no index at all */
#define SQL_ROUTES_READ                                                                                            \
	"SELECT index_name, mode, step_mode, step, updated_by, to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MSOF')," \
	" pin_index, pin_list, EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"           \
	" WHERE c.relname = r.pin_index AND i.indisvalid) FROM vecgate.routes r"

/* One session per (database, backend) holding managed indexes. */
struct route_sync {
	char *database, *backend, *user, *password;
	struct pg_session *s;
	bool ready;        /* table exists and LISTEN is on */
	bool reading;      /* a re-read is in flight */
	bool reread;       /* another notification came meanwhile */
	bool warned;       /* setup failure logged once */
	uint64_t reads;    /* completed re-reads; the first one lets clients in (route_sync_settled) */
};

static struct route_sync *syncs;
static int n_syncs;
static struct event *timer;

static void sync_connect(struct route_sync *y);
static void sync_read(struct route_sync *y);

static bool in_sync(const struct route_sync *y, const struct route_state *r)
{
	return !strcmp(y->database, r->database) && !strcmp(y->backend, r->backend);
}

static struct route_sync *sync_of(const struct route_state *r)
{
	for (int i = 0; i < n_syncs; i++)
		if (in_sync(&syncs[i], r))
			return &syncs[i];
	return NULL;
}

/* ---- writes ---- */

static void mode_written(void *arg, PGresult *res, const char *error)
{
	(void)res;
	struct route_state *r = arg;
	if (error) {
		log_warn("route %s: cannot record mode %s in vecgate.routes (retrying): %s", r->name,
		         config_route_mode_name(r->mode), error);
		return;
	}
	if (r->mode_gen == r->mode_gen_sent)
		r->mode_dirty = false;
}

static void step_written(void *arg, PGresult *res, const char *error)
{
	(void)res;
	struct route_state *r = arg;
	if (error) {
		log_warn("route %s: cannot record step policy in vecgate.routes (retrying): %s", r->name, error);
		return;
	}
	if (r->step_gen == r->step_gen_sent)
		r->step_dirty = false;
}

static void write_route(struct route_state *r)
{
	struct route_sync *y = sync_of(r);
	if (!y || !y->ready || !pg_session_connected(y->s))
		return; /* written when the session is back (refresh) */
	char by[200];
	if (r->mode_dirty) {
		snprintf(by, sizeof(by), "%s (%s)", vg_instance_id(), r->mode_source);
		const char *p[] = {r->name, config_route_mode_name(r->mode), by};
		if (pg_session_query(y->s, SQL_ROUTE_SET_MODE, 3, p, mode_written, r) == 0)
			r->mode_gen_sent = r->mode_gen;
	}
	if (r->step_dirty) {
		snprintf(by, sizeof(by), "%s (rebuild)", vg_instance_id());
		const char *p[] = {r->name, config_route_mode_name(r->mode),
		                   r->step_mode >= 0 ? config_route_mode_name((enum vg_route_mode)r->step_mode) : NULL,
		                   r->step[0] ? r->step : NULL, by};
		if (pg_session_query(y->s, SQL_ROUTE_SET_STEP, 5, p, step_written, r) == 0)
			r->step_gen_sent = r->step_gen;
	}
}

/* ---- reads ---- */

/* The pin as the database has it, unless this instance wrote one a moment
 * ago (a re-read sent before that commit would undo it until the NOTIFY). */
static void apply_pin(struct route_state *r, const PGresult *res, int row)
{
	if (now_sec() - r->pin_local_at < 1.0)
		return;
	const char *pin = PQgetisnull(res, row, 6) ? "" : PQgetvalue(res, row, 6);
	const char *list = PQgetisnull(res, row, 7) ? "" : PQgetvalue(res, row, 7);
	bool exists = !strcmp(PQgetvalue(res, row, 8), "t");
	if (pin[0] && (!exists || !list[0])) {
		if (r->pin[0] || !r->pin_missing_warned)
			log_warn("route %s: vecgate.routes pins vector reads to index %s, which is missing or not valid (dropped "
			         "or renamed outside vecgate?): reads pass unpinned, as the planner chooses, until the pin names "
			         "a valid index", r->name, pin);
		r->pin_missing_warned = true;
		route_set_pin(r, "", "");
		return;
	}
	r->pin_missing_warned = false;
	route_set_pin(r, pin, list);
}

static void read_done(void *arg, PGresult *res, const char *error)
{
	struct route_sync *y = arg;
	y->reading = false;
	if (error) {
		log_warn("routes: cannot read vecgate.routes in %s: %s", y->database, error);
		return;
	}
	y->reads++;
	for (int row = 0; row < PQntuples(res); row++) {
		const char *name = PQgetvalue(res, row, 0);
		for (int i = 0; i < route_count(); i++) {
			struct route_state *r = route_at(i);
			if (strcmp(r->name, name) || !in_sync(y, r))
				continue;
			enum vg_route_mode before = route_state_effective(r);
			int m = config_route_mode_parse(PQgetvalue(res, row, 1));
			if (!r->mode_dirty && m >= 0)
				r->mode = (enum vg_route_mode)m;
			if (!r->step_dirty) {
				r->step_mode = PQgetisnull(res, row, 2) ? -1 : config_route_mode_parse(PQgetvalue(res, row, 2));
				snprintf(r->step, sizeof(r->step), "%s", PQgetisnull(res, row, 3) ? "" : PQgetvalue(res, row, 3));
			}
			snprintf(r->updated_by, sizeof(r->updated_by), "%s", PQgetvalue(res, row, 4));
			snprintf(r->updated_at, sizeof(r->updated_at), "%s", PQgetvalue(res, row, 5));
			r->synced = true;
			apply_pin(r, res, row);
			if (route_state_effective(r) != before)
				log_info("route %s: vector reads now go by mode %s (set by %s)", r->name,
				         config_route_mode_name(route_state_effective(r)), r->updated_by);
		}
	}
	if (y->reread) {
		y->reread = false;
		sync_read(y);
	}
}

static void sync_read(struct route_sync *y)
{
	if (y->reading) {
		y->reread = true;
		return;
	}
	if (pg_session_query(y->s, SQL_ROUTES_READ, 0, NULL, read_done, y) == 0)
		y->reading = true;
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
	struct route_sync *y = arg;
	if (!strcmp(channel, "vecgate_routes") && y->ready)
		sync_read(y);
	else if (!strcmp(channel, "vecgate_jobs") && payload)
		rebuild_follow(payload); /* a job another instance drives: follow it */
}

/* ---- session ---- */

static void setup_done(void *arg, PGresult *res, const char *error)
{
	(void)res;
	struct route_sync *y = arg;
	if (error) {
		if (!y->warned)
			log_warn("routes: cannot use vecgate.routes in database %s (route modes stay local to this "
			         "instance until it works): %s",
			         y->database, error);
		y->warned = true;
		return;
	}
	if (y->warned)
		log_info("routes: vecgate.routes in database %s is usable now", y->database);
	y->warned = false;
	y->ready = true;
	for (int i = 0; i < route_count(); i++) {
		struct route_state *r = route_at(i);
		if (!in_sync(y, r))
			continue;
		char by[200];
		snprintf(by, sizeof(by), "%s (config)", vg_instance_id());
		const char *p[] = {r->name, config_route_mode_name(r->config_mode), by};
		pg_session_query(y->s, SQL_ROUTE_SEED, 3, p, NULL, NULL);
		write_route(r);
	}
	sync_read(y);
}

static void sync_connected(void *arg, const char *error)
{
	struct route_sync *y = arg;
	if (error) {
		y->s = NULL;
		if (!y->warned)
			log_warn("routes: cannot connect to database %s for vecgate.routes: %s", y->database, error);
		y->warned = true;
		return;
	}
	/* a route flip the operator was told about must outlive a crash */
	pg_session_query(y->s, SQL_DURABLE_COMMITS, 0, NULL, NULL, NULL);
	pg_session_query(y->s, routes_setup_sql(), 0, NULL, setup_done, y);
}

static void sync_lost(void *arg, const char *error)
{
	struct route_sync *y = arg;
	log_warn("routes: connection for vecgate.routes in %s lost: %s", y->database, error ? error : "?");
	y->s = NULL;
	y->ready = y->reading = y->reread = false;
}

static void sync_connect(struct route_sync *y)
{
	const struct vg_backend *be = config_find_backend(vg.cfg, y->backend);
	if (!be)
		return;
	char port[16];
	snprintf(port, sizeof(port), "%d", be->port);
	const char *kw[6 + PGCONN_TLS_MAX + 1] = {"host", "port", "dbname", "user", "password", "application_name"};
	const char *val[6 + PGCONN_TLS_MAX + 1] = {be->host, port, y->database, y->user, y->password ? y->password : "",
	                                           "vecgate routes"};
	pgconn_add_tls(&vg.cfg->server_tls, be->host, kw, val, 6, sizeof(kw) / sizeof(*kw));
	y->ready = y->reading = y->reread = false;
	y->s = pg_session_connect(vg.base, kw, val, vg.cfg->timeouts.server_connect, sync_connected, sync_lost, y);
	if (y->s)
		pg_session_on_notify(y->s, on_notify);
}

static void refresh(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* the re-read is a safety net beside NOTIFY: while no client talks and
	 * no read leaves the primary it keeps the health checks' quiet pace */
	static struct quiet_pace pace;
	if (quiet_pace_rest(&pace, now_sec()))
		return;
	for (int i = 0; i < n_syncs; i++) {
		struct route_sync *y = &syncs[i];
		if (!y->s) {
			sync_connect(y);
		} else if (!pg_session_connected(y->s)) {
			continue;
		} else if (!y->ready) {
			pg_session_query(y->s, routes_setup_sql(), 0, NULL, setup_done, y);
		} else {
			for (int r = 0; r < route_count(); r++)
				if (in_sync(y, route_at(r)))
					write_route(route_at(r));
			sync_read(y);
		}
	}
}

/* ---- lifetime ---- */

/* One session per (database, backend) that holds managed indexes. */
static void start_syncs(void)
{
	const struct vg_config *cfg = vg.cfg;
	syncs = calloc(cfg->n_indexes + 1, sizeof(*syncs));
	if (!syncs)
		return;
	for (int i = 0; i < route_count(); i++) {
		struct route_state *r = route_at(i);
		if (sync_of(r))
			continue;
		const struct vg_managed_index *mi = config_find_index(cfg, r->name);
		struct route_sync *y = &syncs[n_syncs++];
		y->database = strdup(mi->database);
		y->backend = strdup(mi->backend);
		y->user = strdup(mi->user ? mi->user : "postgres");
		y->password = mi->password ? strdup(mi->password) : NULL;
	}
	for (int i = 0; i < n_syncs; i++)
		sync_connect(&syncs[i]);
	struct timeval tv = timeval_of(cfg->routing.refresh_seconds);
	if (!timer)
		timer = event_new(vg.base, -1, EV_PERSIST, refresh, NULL);
	event_add(timer, &tv);
}

static void free_syncs(void)
{
	for (int i = 0; i < n_syncs; i++) {
		pg_session_close(syncs[i].s); /* pending callbacks are dropped with it */
		free(syncs[i].database);
		free(syncs[i].backend);
		free(syncs[i].user);
		free(syncs[i].password);
	}
	free(syncs);
	syncs = NULL;
	n_syncs = 0;
}

/* ---- operations ---- */

struct pg_session *route_sync_session(const struct route_state *r)
{
	struct route_sync *y = sync_of(r);
	return y && y->ready && y->s && pg_session_connected(y->s) ? y->s : NULL;
}

enum op_status routes_set_mode(const char *name, enum vg_route_mode mode, const char *source)
{
	struct route_state *r = route_find(name);
	if (!r)
		return OP_NOT_FOUND;
	if (r->mode != mode)
		log_info("route %s: mode %s -> %s (%s)", r->name, config_route_mode_name(r->mode),
		         config_route_mode_name(mode), source);
	r->mode = mode;
	snprintf(r->mode_source, sizeof(r->mode_source), "%s", source);
	r->mode_dirty = true;
	r->mode_gen++;
	write_route(r);
	return OP_OK;
}

void routes_job_step(const char *name, enum job_state state)
{
	struct route_state *r = route_find(name);
	const struct vg_managed_index *mi = config_find_index(vg.cfg, name);
	if (!r || !mi)
		return;
	int step = (int)state - (int)JOB_PREFLIGHT;
	bool active = step >= 0 && step < VG_POLICY_STEPS;
	int mode = active ? mi->route_policy[step] : -1;
	const char *label = mode >= 0 ? job_state_name(state) : "";
	if (mode == r->step_mode && !strcmp(label, r->step))
		return;
	if (mode != r->step_mode)
		log_info("route %s: rebuild step %s %s", r->name, job_state_name(state),
		         mode >= 0 ? config_route_mode_name((enum vg_route_mode)mode) : "leaves the operator's mode");
	r->step_mode = mode;
	snprintf(r->step, sizeof(r->step), "%s", label);
	r->step_dirty = true;
	r->step_gen++;
	write_route(r);
}

void routes_pin_written(const char *name, const char *index, const char *list)
{
	struct route_state *r = route_find(name);
	if (!r)
		return;
	r->pin_local_at = now_sec();
	route_set_pin(r, index, list);
}

bool route_sync_settled(void)
{
	for (int i = 0; i < n_syncs; i++)
		if (!syncs[i].reads)
			return false;
	return true;
}

void route_sync_start(void)
{
	route_table_build();
	start_syncs();
}

void route_sync_reload(void)
{
	free_syncs(); /* their callbacks point into the old table */
	route_table_build();
	start_syncs();
}

void route_sync_stop(void)
{
	free_syncs();
	route_table_free();
	if (timer)
		event_free(timer);
	timer = NULL;
}
