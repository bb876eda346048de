/*
 * Config loader: a full config read back field by field, defaults for a
 * minimal one, and a table of broken configs each pinned to the exact
 * file:line:column and message the operator will see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"

static const char *full_yaml =
	"listen:\n"
	"  - host: 0.0.0.0\n"
	"    port: 7432\n"
	"  - unix_socket_dir: /tmp\n"
	"    port: 7432\n"
	"tls:\n"
	"  client: {mode: require, cert: /c.crt, key: /c.key, ca: /ca.crt}\n"
	"  server: {mode: verify-full, ca: /sca.crt}\n"
	"backends:\n"
	"  primary: {host: db1, port: 5433}\n"
	"  other: {host: /var/run/postgresql}\n"
	"databases:\n"
	"  - name: app\n"
	"    dbname: app_real\n"
	"    pool_mode: transaction\n"
	"    pool_size: 7\n"
	"    min_pool_size: 2\n"
	"    max_db_connections: 50\n"
	"  - name: '*'\n"
	"    backend: other\n"
	"    user: svc\n"
	"    password: svcpw\n"
	"auth:\n"
	"  type: md5\n"
	"  users:\n"
	"    - {name: alice, password: plain, server_password: be}\n"
	"    - {name: bob, password: md553f48b7c4b76a86ce72276c5755f217d}\n"
	"    - name: carol\n"
	"      password: "
	"\"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\"\n"
	"  auth_query: SELECT usename, passwd FROM pg_shadow WHERE usename=$1\n"
	"  auth_user: pgauth\n"
	"  auth_password: x\n"
	"timeouts: {client_login: 2.5, query_wait: 0, server_idle: 30}\n"
	"limits: {max_client_conn: 50, max_message_size: 2MB, max_startup_size: 4kB}\n"
	"logging: {level: debug, file: /tmp/vg.log, log_connections: off}\n"
	"pool: {server_reset_query: 'RESET ALL', server_reset_query_always: yes}\n";

static void test_full(void **state)
{
	(void)state;
	char err[512];
	struct vg_config *c = config_load_string("full.yaml", full_yaml, strlen(full_yaml), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(c->n_listen, 2);
	assert_string_equal(c->listen[0].host, "0.0.0.0");
	assert_int_equal(c->listen[0].port, 7432);
	assert_string_equal(c->listen[1].unix_socket_dir, "/tmp");
	assert_int_equal(c->client_tls.mode, VG_CTLS_REQUIRE);
	assert_string_equal(c->client_tls.ca_file, "/ca.crt");
	assert_int_equal(c->server_tls.mode, VG_STLS_VERIFY_FULL);
	assert_int_equal(c->n_backends, 2);
	assert_int_equal(config_find_backend(c, "primary")->port, 5433);
	assert_int_equal(config_find_backend(c, "other")->port, 5432);
	const struct vg_database *d = config_find_database(c, "app");
	assert_string_equal(d->dbname, "app_real");
	assert_int_equal(d->pool_mode, VG_POOL_TRANSACTION);
	assert_int_equal(d->pool_size, 7);
	assert_int_equal(d->min_pool_size, 2);
	assert_int_equal(d->max_db_connections, 50);
	assert_string_equal(d->backend, "primary");
	const struct vg_database *w = config_find_database(c, "anything");
	assert_string_equal(w->name, "*");
	assert_null(w->dbname);
	assert_string_equal(w->user, "svc");
	assert_int_equal(w->pool_mode, VG_POOL_SESSION);
	assert_int_equal(w->pool_size, 20);
	assert_int_equal(c->auth.type, VG_AUTH_MD5);
	assert_int_equal(c->auth.n_users, 3);
	assert_string_equal(config_find_user(c, "alice")->server_password, "be");
	assert_null(config_find_user(c, "dave"));
	assert_string_equal(c->auth.auth_user, "pgauth");
	assert_true(c->timeouts.client_login == 2.5);
	assert_true(c->timeouts.query_wait == 0);
	assert_true(c->timeouts.server_idle == 30);
	assert_true(c->timeouts.server_connect == 15);
	assert_int_equal(c->limits.max_client_conn, 50);
	assert_int_equal(c->limits.max_message_size, 2 * 1024 * 1024);
	assert_int_equal(c->limits.max_startup_size, 4096);
	assert_int_equal(c->logging.level, VG_LOG_DEBUG);
	assert_false(c->logging.log_connections);
	assert_true(c->logging.log_disconnections);
	assert_string_equal(c->pool.server_reset_query, "RESET ALL");
	assert_true(c->pool.server_reset_query_always);
	config_free(c);
}

static void test_defaults(void **state)
{
	(void)state;
	const char *y = "backends:\n  primary: {host: 127.0.0.1}\ndatabases:\n  - name: app\n";
	char err[512];
	struct vg_config *c = config_load_string("min.yaml", y, strlen(y), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0].host, "127.0.0.1");
	assert_int_equal(c->listen[0].port, 6432);
	assert_int_equal(c->auth.type, VG_AUTH_SCRAM);
	assert_int_equal(c->limits.max_message_size, 16 * 1024 * 1024);
	assert_int_equal(c->limits.max_client_conn, 1000);
	assert_string_equal(c->pool.server_reset_query, "DISCARD ALL");
	assert_string_equal(c->databases[0].dbname, "app");
	assert_int_equal(c->databases[0].pool_mode, VG_POOL_SESSION);
	assert_true(c->timeouts.query_wait == 120);
	assert_int_equal(c->client_tls.mode, VG_CTLS_DISABLE);
	assert_false(c->admin.metrics_without_token); /* /metrics needs the token unless said otherwise */
	assert_true(c->health.interval == 1);
	assert_true(c->health.quiet_interval == 10);
	/* PgBouncer's dns_max_ttl and dns_nxdomain_ttl, glibc's timeout and attempts */
	assert_true(c->dns.max_ttl == 15);
	assert_true(c->dns.min_ttl == 1);
	assert_true(c->dns.nxdomain_ttl == 15);
	assert_true(c->dns.timeout == 5);
	assert_int_equal(c->dns.attempts, 2);
	assert_int_equal(c->dns.n_nameservers, 0); /* /etc/resolv.conf */
	config_free(c);
	const char *d = "backends:\n  primary: {host: db.example}\ndatabases:\n  - name: app\n"
	                "dns:\n  max_ttl: 30\n  min_ttl: 0\n  nxdomain_ttl: 2.5\n  timeout: 0.5\n  attempts: 3\n"
	                "  nameservers: ['10.0.0.2', '127.0.0.1:5353', '[::1]:53', 'fe80::1']\n";
	c = config_load_string("dns.yaml", d, strlen(d), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_true(c->dns.max_ttl == 30);
	assert_true(c->dns.min_ttl == 0);
	assert_true(c->dns.nxdomain_ttl == 2.5);
	assert_true(c->dns.timeout == 0.5);
	assert_int_equal(c->dns.attempts, 3);
	assert_int_equal(c->dns.n_nameservers, 4);
	assert_string_equal(c->dns.nameservers[1], "127.0.0.1:5353");
	assert_string_equal(c->dns.nameservers[2], "[::1]:53");
	config_free(c);
	const char *q = "backends:\n  primary: {host: 127.0.0.1}\ndatabases:\n  - name: app\n"
	                "health_check: {user: mon, interval: 0.5, quiet_interval: 0}\n";
	c = config_load_string("quiet.yaml", q, strlen(q), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_true(c->health.interval == 0.5);
	assert_true(c->health.quiet_interval == 0); /* always the interval */
	config_free(c);
	/* target_session_attrs: read-write for a primary unless it says any;
	 * replicas and fallbacks take any session */
	const char *t = "backends:\n  primary: {host: 127.0.0.1}\n  reports: {host: r, target_session_attrs: any}\n"
	                "  r1: {host: r1, role: replica}\n  f1: {host: f1, role: fallback, target_session_attrs: any}\n"
	                "databases:\n  - name: app\nhealth_check: {user: mon}\n";
	c = config_load_string("tsa.yaml", t, strlen(t), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(config_find_backend(c, "primary")->target_session_attrs, VG_TSA_READ_WRITE);
	assert_int_equal(config_find_backend(c, "reports")->target_session_attrs, VG_TSA_ANY);
	assert_int_equal(config_find_backend(c, "r1")->target_session_attrs, VG_TSA_ANY);
	assert_int_equal(config_find_backend(c, "f1")->target_session_attrs, VG_TSA_ANY);
	assert_string_equal(config_session_attrs_name(VG_TSA_READ_WRITE), "read-write");
	config_free(c);
}

struct bad_case {
	const char *yaml;
	const char *prefix;   /* expected "name:line:col:" */
	const char *fragment; /* expected part of the message */
};

#define BASE "backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n"

static const struct bad_case bad_cases[] = {
	{BASE "bogus: 1\n", "t.yaml:5:1:", "unknown top-level key 'bogus'"},
	{BASE "limits:\n  max_client_con: 5\n", "t.yaml:6:3:", "unknown key 'max_client_con' in limits"},
	{"backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n    pool_mode: tx\n", "t.yaml:5:16:",
	 "pool_mode must be one of 'session', 'transaction', got 'tx'"},
	{"backends:\n  primary: {host: h, port: abc}\ndatabases:\n  - name: app\n", "t.yaml:2:28:",
	 "port must be an integer, got 'abc'"},
	{"backends:\n  primary: {host: h, port: 0}\ndatabases:\n  - name: app\n", "t.yaml:2:28:",
	 "port must be between 1 and 65535"},
	{BASE "limits:\n  max_message_size: 12XB\n", "t.yaml:6:21:", "max_message_size must be a size"},
	{BASE "limits:\n  max_message_size: 10\n", "t.yaml:6:21:", "between 1024"},
	{BASE "timeouts:\n  query_wait: -1\n", "t.yaml:6:15:", "query_wait must not be negative"},
	{BASE "timeouts:\n  query_wait: soon\n", "t.yaml:6:15:", "must be a number of seconds"},
	{BASE "logging:\n  log_connections: maybe\n", "t.yaml:6:20:", "must be true or false"},
	{"databases:\n  - name: app\n", "t.yaml:1:1:", "missing required key 'backends'"},
	{"backends:\n  primary: {host: h}\n", "t.yaml:1:1:", "missing required key 'databases'"},
	{"backends:\n  main: {host: h}\ndatabases:\n  - name: app\n", "t.yaml:2:3:", "backends must contain 'primary'"},
	{"backends:\n  primary: {port: 1}\ndatabases:\n  - name: app\n", "t.yaml:2:12:", "needs host"},
	{"backends:\n  primary: {host: h, target_session_attrs: read-only}\ndatabases:\n  - name: app\n", "t.yaml:2:44:",
	 "target_session_attrs must be one of 'read-write', 'any', got 'read-only'"},
	{"backends:\n  primary: {host: h}\n  r1: {host: r, role: replica, target_session_attrs: read-write}\n"
	 "databases:\n  - name: app\nhealth_check: {user: mon}\n", "t.yaml:3:7:",
	 "backend 'r1': target_session_attrs read-write is for role primary"},
	{"backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n    backend: replica9\n", "t.yaml:4:5:",
	 "names backend 'replica9', which is not in backends"},
	{"backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n  - name: app\n", "t.yaml:5:5:",
	 "duplicate database 'app'"},
	{BASE "auth:\n  users:\n    - {name: a, password: x}\n    - {name: a, password: y}\n", "t.yaml:8:7:",
	 "duplicate user 'a'"},
	{BASE "auth:\n  users:\n    - {name: a, password: 'SCRAM-SHA-256$4096:abc'}\n", "t.yaml:7:7:",
	 "invalid SCRAM secret"},
	{BASE "auth:\n  users:\n    - {name: a, password: md5ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ}\n", "t.yaml:7:7:",
	 "md5 secret must be"},
	{BASE "auth:\n  users:\n    - {name: a}\n", "t.yaml:7:7:", "user 'a' needs password"},
	{BASE "auth:\n  type: kerberos\n", "t.yaml:6:9:", "type must be one of 'trust', 'md5', 'scram-sha-256'"},
	{BASE "auth:\n  auth_query: SELECT 1\n", "t.yaml:6:3:", "auth_query needs auth.auth_user"},
	{BASE "listen: {host: x}\n", "t.yaml:5:9:", "listen must be a list, got a mapping"},
	{BASE "listen:\n  - {port: 5}\n", "t.yaml:6:5:", "needs host or unix_socket_dir"},
	{BASE "listen:\n  - {host: a, port: 5}\n  - {host: a, port: 5}\n", "t.yaml:7:5:", "duplicate listen entry"},
	{BASE "tls:\n  client: {mode: require}\n", "t.yaml:6:11:", "needs cert and key"},
	{BASE "tls:\n  server: {mode: verify-ca}\n", "t.yaml:6:11:", "needs ca"},
	{BASE "databases2: [\n", "t.yaml:6:1:", "YAML syntax error"},
	{"backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n    pool_size: 5\n    min_pool_size: 6\n",
	 "t.yaml:4:5:", "min_pool_size (6) exceeds pool_size (5)"},
	{BASE "pool:\n  server_reset_query: [a]\n", "t.yaml:6:23:", "must be a scalar value, got a list"},
	{BASE "limits:\n  max_client_conn: 5\n  max_client_conn: 6\n", "t.yaml:7:3:", "duplicate key 'max_client_conn'"},
	{"", "t.yaml:1:1:", "configuration is empty"},
	{BASE "admin: {port: 6480, token: short}\n", "t.yaml:5:8:", "admin.token of at least 16 characters"},
	{BASE "admin: {port: 6480, token: 0123456789abcdef, metrics_without_token: maybe}\n", "t.yaml:5:69:",
	 "metrics_without_token must be true or false, got 'maybe'"},
	{BASE "dns:\n  nameservers: ['ns1.example']\n", "t.yaml:6:17:", "dns.nameservers entries must be IP addresses"},
	{BASE "dns:\n  nameservers: ['10.0.0.1:99999']\n", "t.yaml:6:17:", "got 10.0.0.1:99999"},
	{BASE "dns:\n  nameservers: ['[::1']\n", "t.yaml:6:17:", "must be IP addresses"},
	{BASE "dns:\n  nameservers: []\n", "t.yaml:6:16:", "dns.nameservers must not be empty"},
	{BASE "dns:\n  nameservers: 10.0.0.1\n", "t.yaml:6:16:", "dns.nameservers must be a list"},
	{BASE "dns:\n  timeout: 0\n", "t.yaml:6:3:", "dns.timeout must be at least 0.01"},
	{BASE "dns:\n  attempts: 0\n", "t.yaml:6:13:", "attempts must be between 1 and 10"},
	{BASE "dns:\n  max_ttl: -1\n", "t.yaml:6:12:", "max_ttl must not be negative"},
	{BASE "dns:\n  ttl: 5\n", "t.yaml:6:3:", "unknown key 'ttl' in dns"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i}\n", "t.yaml:6:5:", "needs eval_query"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_query: q}\n", "t.yaml:6:5:",
	 "needs eval_file, or eval_source: traffic"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_query: q, eval_source: traffic, "
	      "traffic_sample_size: 0}\n", "t.yaml:6:5:", "traffic_sample_size must be above 0"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_query: q, eval_source: everything}\n",
	 "t.yaml:6:", "eval_source"},
	{BASE "managed_indexes:\n  - {database: app, table: t}\n", "t.yaml:6:5:", "needs database, table and index"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, backend: nope}\n",
	 "t.yaml:6:5:", "names backend 'nope'"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, with: {'m; x': 1}}\n",
	 "t.yaml:6:77:", "not a valid setting name"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, swap_mode: fast}\n",
	 "t.yaml:6:81:", "swap_mode must be one of 'auto', 'flip', 'rename'"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, ground_truth: scan}\n",
	 "t.yaml:6:84:", "ground_truth must be one of 'auto', 'exact_scan', 'per_query'"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_source: traffic, eval_query: 'SELECT id FROM t "
	      "WHERE a = $3 ORDER BY e <-> $1 LIMIT $2'}\n",
	 "t.yaml:6:75:", "eval_query uses parameters after $2, which only eval_file lines give"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, method: 'hnsw; x'}\n",
	 "t.yaml:6:78:", "method 'hnsw; x' is not an access method's name"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, opclass: 'a.b.c'}\n",
	 "t.yaml:6:79:", "opclass 'a.b.c': more parts than schema.name"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, expression: ' '}\n",
	 "t.yaml:6:82:", "expression must not be empty"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, swap_mode: rename, "
	      "partitions: rolling}\n",
	 "t.yaml:6:101:", "partitions: rolling needs swap mode flip"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, partitions: each}\n",
	 "t.yaml:6:82:", "partitions must be one of 'whole', 'rolling'"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, plan_over_limit: maybe}\n",
	 "t.yaml:6:87:", "plan_over_limit must be one of 'refuse', 'approve', got 'maybe'"},
	{BASE "managed_indexes:\n  - {database: app, table: t, index: i, eval_file: f, eval_query: q, plan: off, plan_over_limit: approve}\n",
	 "t.yaml:6:98:", "plan_over_limit needs plan: auto"},
};

static void test_bad_configs(void **state)
{
	(void)state;
	int failures = 0;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(*bad_cases); i++) {
		const struct bad_case *bc = &bad_cases[i];
		char err[512] = "";
		struct vg_config *c = config_load_string("t.yaml", bc->yaml, strlen(bc->yaml), err, sizeof(err));
		if (c) {
			config_free(c);
			print_error("case %zu loaded but should fail (%s)\n", i, bc->fragment);
			failures++;
		} else if (strncmp(err, bc->prefix, strlen(bc->prefix)) != 0 || !strstr(err, bc->fragment)) {
			print_error("case %zu: got \"%s\", want prefix \"%s\" and \"%s\"\n", i, err, bc->prefix,
			            bc->fragment);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_managed_index(void **state)
{
	(void)state;
	const char *y = BASE "admin: {port: 6480, token: 0123456789abcdef}\n"
	                "managed_indexes:\n"
	                "  - database: app\n"
	                "    table: docs.items\n"
	                "    index: items_hnsw\n"
	                "    eval_file: /e.txt\n"
	                "    eval_query: SELECT id FROM docs.items ORDER BY v <-> $1::vector LIMIT $2\n"
	                "    search_settings: {hnsw.ef_search: 100}\n"
	                "    with: {m: 24, ef_construction: 128}\n"
	                "    maintenance_settings: {maintenance_work_mem: 1GB}\n"
	                "    swap_mode: flip\n"
	                "    ground_truth: per_query\n"
	                "    lock_timeout_ms: 25\n"
	                "    method: hnsw\n"
	                "    opclass: '\"Ext\".halfvec_l2_ops'\n"
	                "    expression: embedding::halfvec(3)\n";
	char err[512];
	struct vg_config *c = config_load_string("m.yaml", y, strlen(y), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_int_equal(c->admin.port, 6480);
	assert_string_equal(c->admin.host, "127.0.0.1");
	assert_false(c->admin.metrics_without_token);
	const struct vg_managed_index *m = config_find_index(c, "items_hnsw");
	assert_non_null(m);
	assert_string_equal(m->schema, "docs");
	assert_string_equal(m->table, "items");
	assert_string_equal(m->backend, "primary");
	assert_int_equal(m->k, 10);
	assert_int_equal(m->n_with, 2);
	assert_string_equal(m->with[1].name, "ef_construction");
	assert_string_equal(m->with[1].value, "128");
	assert_string_equal(m->search_settings[0].name, "hnsw.ef_search");
	assert_int_equal(m->swap_mode, VG_SWAP_FLIP);
	assert_int_equal(m->ground_truth, VG_TRUTH_PER_QUERY);
	assert_int_equal(m->lock_timeout_ms, 25);
	assert_int_equal(m->swap_attempts, 20);
	assert_true(m->retention_seconds == 86400);
	assert_string_equal(m->method, "hnsw");
	assert_string_equal(m->opclass_schema, "Ext");
	assert_string_equal(m->opclass, "halfvec_l2_ops");
	assert_string_equal(m->expression, "embedding::halfvec(3)");
	config_free(c);
}

static void test_admin_metrics_without_token(void **state)
{
	(void)state;
	const char *y = BASE "admin: {host: 0.0.0.0, port: 6480, token: 0123456789abcdef, metrics_without_token: true}\n";
	char err[512];
	struct vg_config *c = config_load_string("a.yaml", y, strlen(y), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_true(c->admin.metrics_without_token);
	assert_string_equal(c->admin.host, "0.0.0.0");
	config_free(c);
	y = BASE "admin: {port: 6480, token: 0123456789abcdef, metrics_without_token: false}\n";
	c = config_load_string("a.yaml", y, strlen(y), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_false(c->admin.metrics_without_token);
	config_free(c);
}

static void test_missing_file(void **state)
{
	(void)state;
	char err[512];
	assert_null(config_load("/nonexistent/vecgate.yaml", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/vecgate.yaml:1:1: cannot open configuration file"));
}

static void test_example_file(void **state)
{
	(void)state;
	/* the documented example and the packaged configs must stay valid */
	static const char *const files[] = {"/conf/vecgate.example.yaml", "/docker/compose/vecgate.yaml",
	                                     "/docker/k8s/config/vecgate.yaml"};
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		char path[1024], err[512];
		snprintf(path, sizeof(path), "%s%s", VG_SOURCE_DIR, files[i]);
		struct vg_config *c = config_load(path, err, sizeof(err));
		if (!c)
			fail_msg("%s", err);
		config_free(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),         cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_configs),  cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_managed_index), cmocka_unit_test(test_admin_metrics_without_token),
		cmocka_unit_test(test_example_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
