/*
 * Route selection: which statements count as routable vector reads of which
 * managed tables, which mode is in force during rebuild steps, how modes of
 * several tables combine, and which backend a mode picks from a health
 * snapshot (lag bounds, down replicas, least lag, fallback, refusal).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "conf/config.h"
#include "routing/rebuild_job.h"
#include "routing/route.h"

static const struct route_table_ref tables[] = {{"public", "items"}, {"rag", "docs"}};

static uint64_t match(const char *sql)
{
	struct sql_class c;
	sql_classify(sql, strlen(sql), &c);
	return route_match(&c, tables, 2);
}

static void test_match(void **state)
{
	(void)state;
	assert_int_equal(match("SELECT id FROM items ORDER BY v <-> $1 LIMIT 10"), 1);
	assert_int_equal(match("select id from public.items order by v <=> '[1,2]' limit 3"), 1);
	assert_int_equal(match("SELECT id FROM rag.docs ORDER BY v <#> $1 LIMIT 10"), 2);
	assert_int_equal(match("SELECT * FROM docs d JOIN items i ON i.id = d.id ORDER BY i.v <-> $1 LIMIT 5"), 3);
	assert_int_equal(match("WITH q AS (SELECT id FROM items ORDER BY v <-> $1 LIMIT 50) SELECT * FROM q"), 1);
	/* not vector reads, or not of a managed table: the primary */
	assert_int_equal(match("SELECT id FROM items WHERE id = 1"), 0);
	assert_int_equal(match("SELECT id FROM other ORDER BY v <-> $1 LIMIT 10"), 0);
	assert_int_equal(match("SELECT id FROM items ORDER BY v <-> $1 LIMIT 1 FOR UPDATE"), 0);
	assert_int_equal(match("SELECT id FROM items ORDER BY v <-> $1 LIMIT 1; SELECT 1"), 0);
	assert_int_equal(match("BEGIN; SELECT id FROM items ORDER BY v <-> $1 LIMIT 1"), 0);
	assert_int_equal(match("SELECT '<->' FROM items"), 0);
	assert_int_equal(match("SELECT id FROM items /* ORDER BY v <-> $1 */"), 0);
	assert_int_equal(match("WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM items ORDER BY v <-> $1"), 0);
	assert_int_equal(match("INSERT INTO items SELECT * FROM items ORDER BY v <-> $1 LIMIT 1"), 0);
	assert_int_equal(match("SELECT nextval('s') FROM items ORDER BY v <-> $1"), 0);
	assert_int_equal(match("SELECT id INTO t2 FROM items ORDER BY v <-> $1"), 0);
	assert_int_equal(match("EXPLAIN ANALYZE DELETE FROM items WHERE v <-> $1 < 1"), 0);
	assert_int_equal(match("SELECT id FROM otherschema.items ORDER BY v <-> $1 LIMIT 3"), 0);
}

static void test_effective_and_combine(void **state)
{
	(void)state;
	assert_int_equal(route_effective(VG_ROUTE_PRIMARY, -1), VG_ROUTE_PRIMARY);
	assert_int_equal(route_effective(VG_ROUTE_PRIMARY, VG_ROUTE_REPLICA), VG_ROUTE_REPLICA);
	assert_int_equal(route_effective(VG_ROUTE_REFUSE, VG_ROUTE_REPLICA), VG_ROUTE_REPLICA);
	assert_int_equal(route_effective(VG_ROUTE_FALLBACK, 99), VG_ROUTE_FALLBACK);
	assert_int_equal(route_combine(VG_ROUTE_REPLICA, VG_ROUTE_REPLICA), VG_ROUTE_REPLICA);
	assert_int_equal(route_combine(VG_ROUTE_REPLICA, VG_ROUTE_FALLBACK), VG_ROUTE_PRIMARY);
	assert_int_equal(route_combine(VG_ROUTE_PRIMARY, VG_ROUTE_REFUSE), VG_ROUTE_REFUSE);
	assert_int_equal(route_combine(VG_ROUTE_REFUSE, VG_ROUTE_REPLICA), VG_ROUTE_REFUSE);
}

static struct backend_view replica(bool up, int64_t lag_bytes, double lag_s)
{
	return (struct backend_view){VG_ROLE_REPLICA, up, lag_bytes, lag_s, 1000, 5.0, false};
}

static void test_pick(void **state)
{
	(void)state;
	struct backend_view v[4];
	v[0] = replica(true, 500, 0.1);
	v[1] = replica(true, 20, 0.2);
	v[2] = replica(false, 0, 0);
	v[3] = (struct backend_view){VG_ROLE_FALLBACK, true, 0, 0, 0, 0, false};
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 4), 1); /* least lag */
	assert_int_equal(route_pick(VG_ROUTE_PRIMARY, v, 4), ROUTE_TO_PRIMARY);
	assert_int_equal(route_pick(VG_ROUTE_REFUSE, v, 4), ROUTE_TO_REFUSE);
	assert_int_equal(route_pick(VG_ROUTE_FALLBACK, v, 4), 3);
	v[1].lag_bytes = 5000; /* beyond max_lag_bytes: out of rotation */
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 4), 0);
	v[0].lag_seconds = 6; /* beyond max_lag_seconds */
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 4), ROUTE_TO_PRIMARY);
	v[0].lag_seconds = 0.1;
	v[0].up = false;
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 4), ROUTE_TO_PRIMARY);
	v[3].up = false;
	assert_int_equal(route_pick(VG_ROUTE_FALLBACK, v, 4), ROUTE_TO_PRIMARY);
	/* equal byte lag: fewer seconds wins, then the first */
	v[0] = replica(true, 10, 0.5);
	v[1] = replica(true, 10, 0.2);
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 2), 1);
	v[1].lag_seconds = 0.5;
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 2), 0);
	/* a promoted replica (out of recovery) leaves the rotation, lag or not,
	 * and comes back once a check finds it a replica again */
	v[0].promoted = true;
	assert_false(backend_in_rotation(&v[0]));
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 2), 1);
	v[1].promoted = true;
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 2), ROUTE_TO_PRIMARY);
	v[0].promoted = false;
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 2), 0);
	/* a fallback is not expected to be a replica: promoted means nothing there */
	v[3] = (struct backend_view){VG_ROLE_FALLBACK, true, 0, 0, 0, 0, true};
	assert_true(backend_in_rotation(&v[3]));
	assert_int_equal(route_pick(VG_ROUTE_REPLICA, v, 0), ROUTE_TO_PRIMARY);
}

/* The config's step names and the job's state order are one list. */
static void test_policy_steps_follow_job_states(void **state)
{
	(void)state;
	assert_int_equal(JOB_RETAIN - JOB_PREFLIGHT + 1, VG_POLICY_STEPS);
	for (int i = 0; i < VG_POLICY_STEPS; i++)
		assert_string_equal(config_policy_steps[i], job_state_name((enum job_state)(JOB_PREFLIGHT + i)));
}

static void test_config_routing(void **state)
{
	(void)state;
	static const char yaml[] = "backends:\n"
	                           "  primary: {host: 127.0.0.1, port: 5432}\n"
	                           "  r1: {host: 127.0.0.1, port: 5433, role: replica, max_lag_bytes: 1MB, max_lag_seconds: 2}\n"
	                           "  fb: {host: 10.0.0.9, role: fallback}\n"
	                           "health_check: {user: mon, password: pw, interval: 0.5}\n"
	                           "routing: {refresh_seconds: 2}\n"
	                           "databases:\n  - name: app\n"
	                           "managed_indexes:\n"
	                           "  - {database: app, table: items, index: items_v, eval_query: 'SELECT 1', eval_file: /x,\n"
	                           "     route: refuse, route_policy: {build: fallback, verify: keep, swap: replica}}\n";
	char err[512];
	struct vg_config *cfg = config_load_string("r.yaml", yaml, strlen(yaml), err, sizeof(err));
	if (!cfg)
		fail_msg("%s", err);
	const struct vg_backend *r1 = config_find_backend(cfg, "r1");
	assert_int_equal(r1->role, VG_ROLE_REPLICA);
	assert_string_equal(r1->serves, "primary");
	assert_int_equal(r1->max_lag_bytes, 1u << 20);
	assert_int_equal(config_find_backend(cfg, "fb")->role, VG_ROLE_FALLBACK);
	assert_int_equal(cfg->indexes[0].route, VG_ROUTE_REFUSE);
	assert_int_equal(cfg->indexes[0].route_policy[JOB_BUILD - JOB_PREFLIGHT], VG_ROUTE_FALLBACK);
	assert_int_equal(cfg->indexes[0].route_policy[JOB_VERIFY - JOB_PREFLIGHT], -1);
	assert_int_equal(cfg->indexes[0].route_policy[JOB_SWAP - JOB_PREFLIGHT], VG_ROUTE_REPLICA);
	assert_true(cfg->health.interval == 0.5);
	config_free(cfg);

	static const struct {
		const char *yaml, *where;
	} bad[] = {
		{"backends:\n  primary: {host: a}\n  r: {host: b, role: replica}\ndatabases:\n  - name: app\n",
		 "r.yaml:2:3: backend 'r' is a replica: health_check.user"},
		{"backends:\n  primary: {host: a}\n  r: {host: b, role: leader}\ndatabases:\n  - name: app\n", "r.yaml:3:22: role must be one of"},
		{"backends:\n  primary: {host: a}\n  r: {host: b, role: replica, serves: r}\nhealth_check: {user: u}\n"
		 "databases:\n  - name: app\n",
		 "r.yaml:2:3: backend 'r' serves 'r', which is not a backend with role primary"},
		{"backends:\n  primary: {host: a}\n  r: {host: b, role: replica}\nhealth_check: {user: u}\n"
		 "databases:\n  - {name: app, backend: r}\n",
		 "r.yaml:6:5: database 'app' names backend 'r', a replica"},
		{"backends:\n  primary: {host: a}\ndatabases:\n  - name: app\nmanaged_indexes:\n"
		 "  - {database: app, table: t, index: i, eval_query: q, eval_file: f, route_policy: {building: replica}}\n",
		 "r.yaml:6:85: route_policy: unknown step 'building'"},
		{"backends:\n  primary: {host: a}\ndatabases:\n  - name: app\nmanaged_indexes:\n"
		 "  - {database: app, table: t, index: i, eval_query: q, eval_file: f, route_policy: {build: sideways}}\n",
		 "r.yaml:6:92: route_policy: 'sideways' is not a route mode"},
		{"backends:\n  primary: {host: a}\ndatabases:\n  - name: app\nrouting: {refresh_seconds: 0}\n",
		 "r.yaml:5:10: routing.refresh_seconds"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		cfg = config_load_string("r.yaml", bad[i].yaml, strlen(bad[i].yaml), err, sizeof(err));
		if (cfg)
			fail_msg("case %zu loaded", i);
		if (strncmp(err, bad[i].where, strlen(bad[i].where)))
			fail_msg("case %zu: got '%s', want '%s...'", i, err, bad[i].where);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_effective_and_combine),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_policy_steps_follow_job_states),
		cmocka_unit_test(test_config_routing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
