/*
 * swap_check DSN: proves on a real server that vecgate's generated SQL moves
 * traffic.  It builds a second GiST (cube) index with the rewritten
 * definition, swaps with sql_swap(SWAP_FLIP) while another session holds a
 * cached generic plan, checks by OID which index that session's plan uses,
 * checks that the retired index is still maintained by an INSERT, rolls back
 * with sql_rollback and checks again.  Exit 0 only if every check held.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "routing/indexdef.h"
#include "routing/rebuild_sql.h"

static int failures;

static PGresult *run(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "swap_check: SQL failed: %s\n  %s\n", sql, PQerrorMessage(c));
		exit(2);
	}
	return r;
}

static void exec(PGconn *c, const char *sql)
{
	PQclear(run(c, sql));
}

static long long oid_of(PGconn *c, const char *name)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT '%s'::regclass::oid", name);
	PGresult *r = run(c, sql);
	long long v = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

/* OID of the index the session's cached plan for q scans, 0 if none. */
static long long plan_index_oid(PGconn *app)
{
	PGresult *r = run(app, "EXPLAIN (FORMAT JSON) EXECUTE q");
	const char *plan = PQgetvalue(r, 0, 0);
	const char *p = strstr(plan, "\"Index Name\": \"");
	char name[128] = "";
	if (p) {
		p += strlen("\"Index Name\": \"");
		size_t n = strcspn(p, "\"");
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
	}
	PQclear(r);
	if (!name[0])
		return 0;
	char q[160];
	snprintf(q, sizeof(q), "public.%s", name);
	return oid_of(app, q);
}

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok  " : "FAIL", what);
	if (!ok)
		failures++;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: swap_check DSN\n");
		return 2;
	}
	PGconn *maint = PQconnectdb(argv[1]);
	PGconn *app = PQconnectdb(argv[1]);
	if (PQstatus(maint) != CONNECTION_OK || PQstatus(app) != CONNECTION_OK) {
		fprintf(stderr, "swap_check: cannot connect: %s", PQerrorMessage(maint));
		return 2;
	}
	exec(maint, "CREATE EXTENSION IF NOT EXISTS cube");
	exec(maint, "DROP TABLE IF EXISTS emb");
	exec(maint, "CREATE TABLE emb (id bigserial PRIMARY KEY, v cube)");
	exec(maint, "INSERT INTO emb (v) SELECT cube(array[random(), random(), random()]) FROM generate_series(1, 20000)");
	exec(maint, "CREATE INDEX emb_live ON emb USING gist (v)");
	exec(maint, "ANALYZE emb");
	long long old_oid = oid_of(maint, "public.emb_live");

	/* the app session caches a generic plan before anything happens */
	exec(app, "SET plan_cache_mode = force_generic_plan");
	exec(app, "PREPARE q AS SELECT id FROM emb ORDER BY v <-> cube(array[0.5, 0.5, 0.5]) LIMIT 5");
	exec(app, "EXECUTE q");
	check(plan_index_oid(app) == old_oid, "before: cached plan scans the live index");

	/* build the new index from the live one's definition */
	PGresult *r = run(maint, "SELECT pg_get_indexdef('public.emb_live'::regclass)");
	char def[1024], err[256];
	struct index_param with[] = {{"buffering", "on"}};
	if (indexdef_rewrite(PQgetvalue(r, 0, 0), "emb_live_vgnew", with, 1, def, sizeof(def), err, sizeof(err)) < 0) {
		fprintf(stderr, "swap_check: rewrite failed: %s\n", err);
		return 2;
	}
	PQclear(r);
	exec(maint, def);
	long long new_oid = oid_of(maint, "public.emb_live_vgnew");

	char sql[4096];
	struct swap_names n = {.schema = "public", .table = "emb", .live = "emb_live", .fresh = "emb_live_vgnew",
	                       .retired = "emb_live_vgold", .lock_timeout_ms = 200};
	sql_swap(&n, SWAP_FLIP, sql, sizeof(sql));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	exec(maint, sql);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double swap_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;

	check(oid_of(maint, "public.emb_live") == new_oid, "after swap: the live name belongs to the new index");
	check(plan_index_oid(app) == new_oid, "after swap: the session with the cached plan scans the new index");
	PGconn *fresh = PQconnectdb(argv[1]);
	exec(fresh, "PREPARE q AS SELECT id FROM emb ORDER BY v <-> cube(array[0.5, 0.5, 0.5]) LIMIT 5");
	check(plan_index_oid(fresh) == new_oid, "after swap: a new session scans the new index");
	r = run(maint, "SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = 'public.emb_live_vgold'::regclass");
	check(!strcmp(PQgetvalue(r, 0, 0), "f") && !strcmp(PQgetvalue(r, 0, 1), "t"),
	      "after swap: old index invalid for the planner but still ready (maintained)");
	PQclear(r);

	/* a write between swap and rollback must be in the old index too */
	exec(app, "INSERT INTO emb (id, v) VALUES (-1, cube(array[0.123456, 0.654321, 0.5]))");
	sql_rollback(&n, sql, sizeof(sql));
	exec(maint, sql);
	check(oid_of(maint, "public.emb_live") == old_oid, "after rollback: the live name is the old index again");
	check(plan_index_oid(app) == old_oid, "after rollback: the cached-plan session scans the old index");
	check(plan_index_oid(fresh) == old_oid, "after rollback: the other session scans the old index");
	exec(app, "PREPARE near AS SELECT id FROM emb ORDER BY v <-> cube(array[0.123456, 0.654321, 0.5]) LIMIT 1");
	r = run(app, "EXPLAIN (FORMAT JSON) EXECUTE near");
	int via_old = strstr(PQgetvalue(r, 0, 0), "\"emb_live\"") != NULL;
	PQclear(r);
	r = run(app, "EXECUTE near");
	check(via_old && !strcmp(PQgetvalue(r, 0, 0), "-1"),
	      "after rollback: the row written during the swap is found through the old index (no lost rows)");
	PQclear(r);

	printf("swap_lock_ms=%.2f\n", swap_ms);
	PQfinish(fresh);
	PQfinish(app);
	PQfinish(maint);
	printf("swap_check: %d failed\n", failures);
	return failures ? 1 : 0;
}
