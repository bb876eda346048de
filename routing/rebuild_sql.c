/*
 * SQL text for the rebuild job.  Kept apart from the coordinator so that the
 * exact statements, which carry the design's hard-won facts, can be read and
 * unit-tested in one place.
 */
#include "routing/rebuild_sql.h"
#include "routing/indexdef.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char SQL_INDEX_INFO[] =
	"SELECT i.indexrelid, i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisvalid, "
	/* a partitioned index has no storage: its partitions' indexes have */
	"i.indisready, coalesce((SELECT sum(pg_relation_size(relid))::bigint FROM pg_partition_tree(i.indexrelid)),"
	" pg_relation_size(i.indexrelid)), "
	"has_schema_privilege(c.relnamespace, 'CREATE'), pg_has_role(t.relowner, 'USAGE'), t.relkind, "
	"(SELECT count(*) FROM pg_partition_tree(t.oid) WHERE isleaf) "
	"FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
	"WHERE i.indexrelid = $1::regclass";

const char SQL_NAMES_LOOKUP[] =
	"WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1::name),"
	" t AS (SELECT c.oid, c.relkind FROM pg_class c, ns WHERE c.relnamespace = ns.oid AND c.relname = $2::name),"
	" x AS (SELECT c.oid, c.relkind FROM pg_class c, ns WHERE c.relnamespace = ns.oid AND c.relname = $3::name)"
	" SELECT EXISTS (SELECT 1 FROM ns), (SELECT relkind::text FROM t), (SELECT relkind::text FROM x),"
	" (SELECT i.indexrelid::text FROM pg_index i, x, t WHERE i.indexrelid = x.oid AND i.indrelid = t.oid),"
	" (SELECT i.indrelid::regclass::text FROM pg_index i, x WHERE i.indexrelid = x.oid),"
	" (SELECT string_agg(format('%I', c.relname), ', ' ORDER BY c.relname) FROM pg_index i"
	" JOIN pg_class c ON c.oid = i.indexrelid, t WHERE i.indrelid = t.oid),"
	" (SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY n.nspname, c.relname)"
	" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm', 'i', 'I')"
	" AND lower(n.nspname) = lower($1::text) AND lower(c.relname) IN (lower($2::text), lower($3::text))"
	" AND NOT (n.nspname = $1::name AND c.relname IN ($2::name, $3::name)))";

static bool table_kind(char k)
{
	return k == 'r' || k == 'p' || k == 'm';
}

int names_verdict(const char *schema, const char *table, const char *index, const struct names_found *f, char *why,
                  size_t whylen)
{
	char s[140], t[140], x[140], what[700], rel[420];
	if (f->schema && table_kind(f->table_kind) && (f->index_kind == 'i' || f->index_kind == 'I') && f->index_oid)
		return 0;
	quote_ident_always(schema, s, sizeof(s));
	quote_ident_always(table, t, sizeof(t));
	quote_ident_always(index, x, sizeof(x));
	if (!f->schema)
		snprintf(what, sizeof(what), "no schema %s", s);
	else if (!f->table_kind)
		snprintf(what, sizeof(what), "no table %s in schema %s", t, s);
	else if (!table_kind(f->table_kind))
		snprintf(what, sizeof(what), "%s.%s is not a table (relkind '%c')", s, t, f->table_kind);
	else if (!f->index_kind)
		snprintf(what, sizeof(what), "no index %s in schema %s (the table's indexes: %s)", x, s,
		         f->table_indexes ? f->table_indexes : "none");
	else if (f->index_kind != 'i' && f->index_kind != 'I')
		snprintf(what, sizeof(what), "%s.%s is not an index (relkind '%c')", s, x, f->index_kind);
	else {
		sql_qualified(schema, table, rel, sizeof(rel));
		snprintf(what, sizeof(what), "index %s belongs to table %s, not to %s", x,
		         f->index_table ? f->index_table : "?", rel);
	}
	int n = snprintf(why, whylen, "looked up schema %s, table %s, index %s: %s", s, t, x, what);
	if (f->case_near && n >= 0 && (size_t)n < whylen)
		snprintf(why + n, whylen - (size_t)n, "; names that differ only in case: %s (quote a name in the "
		         "configuration as SQL does, \"Name\", or write it raw exactly as the catalog spells it)",
		         f->case_near);
	return -1;
}

/* (for a partitioned table: its partitions' indexes too, where a build of
 * a partition's candidate runs and leaves what it leaves) */
#define TABLE_TREE(p) "(SELECT " p "::regclass UNION ALL SELECT relid FROM pg_partition_tree(" p "::regclass) WHERE level > 0)"

const char SQL_INVALID_INDEXES[] =
	"SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
	"WHERE i.indrelid IN " TABLE_TREE("$1") " AND NOT i.indisvalid ORDER BY c.relname";

const char SQL_BUILDS_RUNNING[] =
	"SELECT pid, phase FROM pg_stat_progress_create_index WHERE relid IN " TABLE_TREE("$1");

const char SQL_PART_LIST[] =
	"SELECT tn.nspname, t.relname, c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid),"
	" greatest(t.reltuples, 0)::float8,"
	" (SELECT max(level) FROM pg_partition_tree(i0.indrelid)),"
	" (SELECT count(*) FROM pg_partition_tree(i0.indrelid) WHERE isleaf)"
	" FROM pg_index i0, pg_partition_tree($1::regclass) pt JOIN pg_index i ON i.indexrelid = pt.relid"
	" JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
	" JOIN pg_namespace tn ON tn.oid = t.relnamespace"
	" WHERE i0.indexrelid = $1::regclass AND pt.level > 0 ORDER BY pt.level, tn.nspname, t.relname";

const char SQL_PART_CANDIDATES[] =
	"SELECT to_regclass(c.n)::oid::text, x.indisvalid, c.n = ANY(coalesce(j.partitions_done, '{}')),"
	" EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = to_regclass(c.n) AND h.inhparent = to_regclass($3)),"
	" c.n = ANY(coalesce(j.partitions_swapped, '{}'))"
	" FROM unnest($1::text[]) WITH ORDINALITY c(n, o) LEFT JOIN pg_index x ON x.indexrelid = to_regclass(c.n)"
	" LEFT JOIN vecgate.jobs j ON j.id = $2::bigint ORDER BY c.o";

const char SQL_OLD_TRANSACTIONS[] =
	"SELECT pid, extract(epoch FROM now() - xact_start)::float8 AS age, state, left(query, 200) "
	"FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
	"AND now() - xact_start > make_interval(secs => $1::float8) ORDER BY xact_start";

const char SQL_BUILD_PROGRESS[] =
	"SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, p.lockers_done, p.lockers_total,"
	" a.pid, a.usename, a.application_name, host(a.client_addr),"
	" extract(epoch FROM now() - a.xact_start), extract(epoch FROM now() - a.query_start), left(a.query, 200)"
	" FROM pg_stat_progress_create_index p"
	" LEFT JOIN pg_stat_activity a ON a.pid = p.current_locker_pid AND p.current_locker_pid <> 0"
	" WHERE p.pid = $1::int";

const char SQL_TABLE_LOCKERS[] =
	"SELECT a.pid, a.usename, a.application_name, host(a.client_addr),"
	" extract(epoch FROM now() - a.xact_start), extract(epoch FROM now() - a.query_start), left(a.query, 200)"
	" FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
	" WHERE l.relation = $1::regclass AND l.granted AND a.pid <> pg_backend_pid()"
	" ORDER BY a.xact_start NULLS LAST LIMIT 1";

const char SQL_IS_SUPERUSER[] = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user";

const char SQL_HYPOPG[] = "SELECT n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = "
                          "e.extnamespace WHERE e.extname = 'hypopg'";

/* NULL when pg_hint_plan is not loaded (its placeholder does not exist) */
const char SQL_HINT_PLAN[] = "SELECT current_setting('pg_hint_plan.enable_hint', true)";

/* an index, or a partitioned index's partitions' indexes (the parent
 * itself is never scanned and has no statistics row) */
#define INDEX_LEAVES(p) "(SELECT to_regclass(" p ") UNION ALL SELECT relid FROM pg_partition_tree(to_regclass(" p ")) WHERE isleaf AND level > 0)"

/* $1 schema.index (old), $2 schema.index (new) -> idx_scan of each (NULL: gone) */
const char SQL_INDEX_SCANS[] =
	"SELECT (SELECT sum(idx_scan)::bigint FROM pg_stat_user_indexes WHERE indexrelid IN " INDEX_LEAVES("$1") "),"
	" (SELECT sum(idx_scan)::bigint FROM pg_stat_user_indexes WHERE indexrelid IN " INDEX_LEAVES("$2") "),"
	" pg_postmaster_start_time()::text";

const char SQL_DURABLE_COMMITS[] = "SET synchronous_commit = on";

const char SQL_STATE_SCHEMA[] =
	"CREATE SCHEMA IF NOT EXISTS vecgate;"
	"CREATE TABLE IF NOT EXISTS vecgate.jobs ("
	" id bigserial PRIMARY KEY, index_name text NOT NULL, state text NOT NULL, attempts int NOT NULL DEFAULT 1,"
	" fresh_index text, retired_index text, swap_mode text, message text,"
	" baseline_recall float8, baseline_p50_ms float8, baseline_p95_ms float8, candidate_recall float8,"
	" swap_lock_ms float8, driver text DEFAULT coalesce(inet_client_addr()::text, 'local') || ':' || pg_backend_pid(),"
	" created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());"
	"CREATE TABLE IF NOT EXISTS vecgate.job_steps ("
	" job_id bigint NOT NULL REFERENCES vecgate.jobs ON DELETE CASCADE, at timestamptz NOT NULL DEFAULT now(),"
	" from_state text, to_state text, event text, message text);"
	"CREATE INDEX IF NOT EXISTS jobs_index_name ON vecgate.jobs (index_name, id);"
	"ALTER TABLE vecgate.jobs ADD COLUMN IF NOT EXISTS driver_instance text,"
	" ADD COLUMN IF NOT EXISTS driver_since timestamptz, ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz;"
	/* a partitioned rebuild: the partitions' candidates built so far */
	"ALTER TABLE vecgate.jobs ADD COLUMN IF NOT EXISTS partitions_done text[];"
	/* a rolling rebuild: the partitions swapped so far (their candidates serve) */
	"ALTER TABLE vecgate.jobs ADD COLUMN IF NOT EXISTS partitions_swapped text[]";

const char SQL_JOB_CLAIM[] =
	"UPDATE vecgate.jobs SET driver_instance = $2, driver_since = now(), heartbeat_at = now(),"
	" driver = coalesce(inet_client_addr()::text, 'local') || ':' || pg_backend_pid() WHERE id = $1::bigint"
	" RETURNING pg_notify('vecgate_jobs', index_name)";

const char SQL_JOB_HEARTBEAT[] = "UPDATE vecgate.jobs SET heartbeat_at = now() WHERE id = $1::bigint";

const char SQL_JOB_FOLLOW[] =
	"SELECT id, state, coalesce(driver_instance, driver), to_char(driver_since, 'YYYY-MM-DD\"T\"HH24:MI:SS.MSOF'),"
	" extract(epoch from clock_timestamp() - coalesce(heartbeat_at, updated_at)), message, fresh_index"
	" FROM vecgate.jobs WHERE index_name = $1 AND state NOT IN ('done', 'failed', 'cancelled', 'rolled_back')"
	" ORDER BY id DESC LIMIT 1";

/* The sessions of the instance that drives job $1, only while vecgate.jobs
 * still names $2 as its driver and its heartbeat is older than $3 seconds:
 * its state session (the lock holder whose pid the claim recorded) and the
 * maintenance and progress sessions it opened before it went silent.  Every
 * condition is read in this one statement, so a follower that sends it after
 * another follower took the lock (and before or after that one claimed the
 * job) ends nothing of the new driver's. */
const char SQL_TAKEOVER_TERMINATE[] =
	"SELECT pg_terminate_backend(a.pid) FROM vecgate.jobs j, pg_stat_activity a"
	" WHERE j.id = $1::bigint AND coalesce(j.driver_instance, j.driver) = $2"
	" AND coalesce(j.heartbeat_at, j.updated_at) < clock_timestamp() - make_interval(secs => $3::float8)"
	" AND a.pid <> pg_backend_pid() AND ("
	" (a.application_name IN ('vecgate rebuild ' || j.index_name, 'vecgate progress ' || j.index_name)"
	" AND a.backend_start < coalesce(j.heartbeat_at, j.updated_at) + make_interval(secs => $3::float8 / 2))"
	" OR a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
	" AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('vecgate:rebuild:' || j.index_name)::bigint"
	" AND l.pid = substring(j.driver from '([0-9]+)$')::int))";

/* Run by the instance that just took the lock, before it reads the catalog:
 * whatever a previous driver left running on $1 (a swap waiting for its
 * locks, a build) ends first, and the call waits for each session to exit,
 * so that nothing it had in flight can commit after the new driver looked. */
const char SQL_END_PREVIOUS_DRIVER[] =
	"SELECT count(*), count(*) FILTER (WHERE NOT pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
	" WHERE pid <> pg_backend_pid() AND application_name IN ('vecgate rebuild ' || $1, 'vecgate progress ' || $1)";

const char SQL_ROUTES_SCHEMA[] =
	"CREATE SCHEMA IF NOT EXISTS vecgate;"
	"CREATE TABLE IF NOT EXISTS vecgate.routes ("
	" index_name text PRIMARY KEY,"
	" mode text NOT NULL CHECK (mode IN ('primary','replica','fallback','refuse')),"
	" step_mode text CHECK (step_mode IN ('primary','replica','fallback','refuse')),"
	" step text,"
	" updated_at timestamptz NOT NULL DEFAULT now(),"
	" updated_by text);"
	"ALTER TABLE vecgate.routes ADD COLUMN IF NOT EXISTS pin_index text, ADD COLUMN IF NOT EXISTS pin_list text;"
	"CREATE TABLE IF NOT EXISTS vecgate.eval_samples ("
	" index_name text NOT NULL, slot int NOT NULL, vector text NOT NULL,"
	" sampled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (index_name, slot))";

const char SQL_PIN_READ[] = "SELECT pin_index FROM vecgate.routes WHERE index_name = $1";

const char SQL_TRY_LOCK[] = "SELECT pg_try_advisory_lock(hashtext('vecgate:rebuild:' || $1))";

const char SQL_JOB_INSERT[] =
	"INSERT INTO vecgate.jobs (index_name, state, fresh_index, retired_index) VALUES ($1, 'preflight', $2, $3) "
	"RETURNING id";

const char SQL_JOB_UPDATE[] =
	"UPDATE vecgate.jobs SET state = $2, attempts = $3::int, message = $4, swap_mode = $5, "
	"baseline_recall = $6::float8, baseline_p50_ms = $7::float8, baseline_p95_ms = $8::float8, "
	"candidate_recall = $9::float8, swap_lock_ms = $10::float8, updated_at = now() WHERE id = $1::bigint";

const char SQL_JOB_STEP[] =
	"INSERT INTO vecgate.job_steps (job_id, from_state, to_state, event, message) VALUES ($1::bigint, $2, $3, $4, $5)";

const char SQL_JOB_UNFINISHED[] =
	"SELECT id, state, attempts, fresh_index, retired_index, swap_mode, baseline_recall, baseline_p50_ms, "
	"baseline_p95_ms FROM vecgate.jobs WHERE index_name = $1 "
	"AND state NOT IN ('done', 'failed', 'cancelled', 'rolled_back') ORDER BY id DESC LIMIT 1";

const char SQL_JOB_LATEST[] =
	"SELECT id, state, message, swap_mode, baseline_recall, baseline_p50_ms, baseline_p95_ms, candidate_recall, "
	"swap_lock_ms, fresh_index, retired_index FROM vecgate.jobs WHERE index_name = $1 ORDER BY id DESC LIMIT 1";

const char SQL_CANCEL_ORPHAN_BUILDS[] =
	"SELECT pg_cancel_backend(p.pid) FROM pg_stat_progress_create_index p JOIN pg_stat_activity a USING (pid) "
	"WHERE p.relid IN " TABLE_TREE("$1") " AND a.application_name LIKE 'vecgate rebuild %'";

const char SQL_CANCEL_SESSION_BUILDS[] =
	"SELECT pg_cancel_backend(p.pid) FROM pg_stat_progress_create_index p JOIN pg_stat_activity a USING (pid) "
	"WHERE p.relid IN " TABLE_TREE("$1") " AND a.application_name = $2 AND p.pid <> pg_backend_pid()";

void sql_literal(const char *s, char *out, size_t outlen)
{
	size_t o = 0;
	if (outlen < 3) {
		if (outlen)
			out[0] = 0;
		return;
	}
	out[o++] = '\'';
	for (; *s && o + 3 < outlen; s++) {
		if (*s == '\'')
			out[o++] = '\'';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = 0;
}

void sql_qualified(const char *schema, const char *name, char *out, size_t outlen)
{
	char qs[200], qn[200];
	quote_ident(schema, qs, sizeof(qs));
	quote_ident(name, qn, sizeof(qn));
	snprintf(out, outlen, "%s.%s", qs, qn);
}

/* a regclass literal for the same relation */
static void regclass_lit(const char *schema, const char *name, char *out, size_t outlen)
{
	char q[420];
	sql_qualified(schema, name, q, sizeof(q));
	char lit[860];
	sql_literal(q, lit, sizeof(lit));
	snprintf(out, outlen, "%s::regclass", lit);
}

int sql_set_index_valid(const char *schema, const char *index, bool valid, char *out, size_t outlen)
{
	char rc[900];
	regclass_lit(schema, index, rc, sizeof(rc));
	int len = snprintf(out, outlen, "UPDATE pg_index SET indisvalid = %s WHERE indexrelid = %s",
	                   valid ? "true" : "false", rc);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_hide_candidate(const char *schema, const char *table, const char *fresh, const char *fence, char *out,
                       size_t outlen)
{
	char hide[1100], table_rc[900];
	if (sql_set_index_valid(schema, fresh, false, hide, sizeof(hide)) < 0)
		return -1;
	regclass_lit(schema, table, table_rc, sizeof(table_rc));
	int len = snprintf(out, outlen, "BEGIN;\n%s%s%s;\nUPDATE pg_class SET relname = relname WHERE oid = %s;\nCOMMIT;",
	                   fence ? fence : "", fence ? ";\n" : "", hide, table_rc);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_fence(const char *index_name, int state_pid, char *out, size_t outlen)
{
	char lname[300], lmsg[400], msg[300];
	sql_literal(index_name, lname, sizeof(lname));
	snprintf(msg, sizeof(msg), "fenced: this vecgate no longer holds the rebuild lock of %s", index_name);
	sql_literal(msg, lmsg, sizeof(lmsg));
	int len = snprintf(out, outlen,
	                   "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
	                   " AND l.objsubid = 1 AND l.pid = %d AND ((l.classid::bigint << 32) | l.objid::bigint) ="
	                   " hashtext('vecgate:rebuild:' || %s)::bigint) THEN 0 ELSE (SELECT %s::text)::int END",
	                   state_pid, lname, lmsg);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_hide_candidate_if_there(const char *schema, const char *table, const char *fresh, char *out, size_t outlen)
{
	char q[420], lit[900], table_rc[900];
	sql_qualified(schema, fresh, q, sizeof(q));
	sql_literal(q, lit, sizeof(lit));
	regclass_lit(schema, table, table_rc, sizeof(table_rc));
	int len = snprintf(out, outlen,
	                   "BEGIN;\nUPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(%s) AND indisvalid;\n"
	                   "UPDATE pg_class SET relname = relname WHERE oid = %s;\nCOMMIT;",
	                   lit, table_rc);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_measure_candidate(const char *schema, const char *live, const char *fresh, char *out, size_t outlen)
{
	char show[1100], hide[1100];
	if (sql_set_index_valid(schema, fresh, true, show, sizeof(show)) < 0 ||
	    sql_set_index_valid(schema, live, false, hide, sizeof(hide)) < 0)
		return -1;
	int len = snprintf(out, outlen, "%s;\n%s", show, hide);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_hypopg_hide(const char *hypopg_schema, const char *schema, const char *index, char *out, size_t outlen)
{
	char fn[420], rc[900];
	sql_qualified(hypopg_schema, "hypopg_hide_index", fn, sizeof(fn));
	regclass_lit(schema, index, rc, sizeof(rc));
	int len = snprintf(out, outlen, "SELECT %s(%s)", fn, rc);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_hypopg_unhide_all(const char *hypopg_schema, char *out, size_t outlen)
{
	char fn[420];
	sql_qualified(hypopg_schema, "hypopg_unhide_all_indexes", fn, sizeof(fn));
	int len = snprintf(out, outlen, "SELECT %s()", fn);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_swap(const struct swap_names *n, enum swap_mode mode, char *out, size_t outlen)
{
	char live_q[420], fresh_q[420], retired_name[200], live_name[200], hide[1100], show[1100], table_rc[900];
	sql_qualified(n->schema, n->live, live_q, sizeof(live_q));
	sql_qualified(n->schema, n->fresh, fresh_q, sizeof(fresh_q));
	quote_ident(n->retired, retired_name, sizeof(retired_name));
	quote_ident(n->live, live_name, sizeof(live_name));
	sql_set_index_valid(n->schema, n->live, false, hide, sizeof(hide));
	sql_set_index_valid(n->schema, n->fresh, true, show, sizeof(show));
	regclass_lit(n->schema, n->table, table_rc, sizeof(table_rc));
	int len;
	if (mode == SWAP_FLIP) {
		/* Validity is looked up by OID before the renames, so the order
		 * inside the transaction does not matter to the planner; the no-op
		 * pg_class update is what makes sessions re-plan. */
		len = snprintf(out, outlen,
		               "BEGIN;\n%s%s"
		               "SET LOCAL lock_timeout = '%dms';\n"
		               "%s;\n"
		               "%s;\n"
		               "ALTER INDEX %s RENAME TO %s;\n"
		               "ALTER INDEX %s RENAME TO %s;\n"
		               "UPDATE pg_class SET relname = relname WHERE oid = %s;\n"
		               "COMMIT;",
		               n->fence ? n->fence : "", n->fence ? ";\n" : "", n->lock_timeout_ms, hide, show, live_q,
		               retired_name, fresh_q, live_name, table_rc);
	} else {
		len = snprintf(out, outlen,
		               "BEGIN;\n%s%s"
		               "SET LOCAL lock_timeout = '%dms';\n"
		               "ALTER INDEX %s RENAME TO %s;\n"
		               "ALTER INDEX %s RENAME TO %s;\n"
		               "COMMIT;",
		               n->fence ? n->fence : "", n->fence ? ";\n" : "", n->lock_timeout_ms, live_q, retired_name,
		               fresh_q, live_name);
	}
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_rollback(const struct swap_names *n, char *out, size_t outlen)
{
	/* after the swap the new index carries the live name and the old one
	 * the retired name: swap them back the same way */
	struct swap_names back = *n;
	back.fresh = n->retired;
	back.retired = n->fresh;
	return sql_swap(&back, SWAP_FLIP, out, outlen);
}

int sql_drop_index_concurrently(const char *schema, const char *index, char *out, size_t outlen)
{
	char q[420];
	sql_qualified(schema, index, q, sizeof(q));
	int len = snprintf(out, outlen, "DROP INDEX CONCURRENTLY IF EXISTS %s", q);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

const char *swap_mode_name(enum swap_mode m)
{
	return m == SWAP_HINT ? "hint" : m == SWAP_RENAME ? "rename" : "flip";
}

enum swap_mode swap_mode_parse(const char *s)
{
	return !strcmp(s, "hint") ? SWAP_HINT : !strcmp(s, "rename") ? SWAP_RENAME : SWAP_FLIP;
}

int sql_pin(const char *route, const char *schema, const char *table, const char *pin, const char *hidden,
            const char *by, const char *fence, char *out, size_t outlen)
{
	char lroute[300], lpin[300], lhidden[300], lby[500], rpin[900], rtable[900], lmissing[400];
	sql_literal(route, lroute, sizeof(lroute));
	sql_literal(pin, lpin, sizeof(lpin));
	sql_literal(hidden, lhidden, sizeof(lhidden));
	sql_literal(by, lby, sizeof(lby));
	regclass_lit(schema, table, rtable, sizeof(rtable));
	char qpin[420], msg[500];
	sql_qualified(schema, pin, qpin, sizeof(qpin));
	sql_literal(qpin, rpin, sizeof(rpin));
	snprintf(msg, sizeof(msg), "cannot pin reads to %s: no valid index of that name", pin);
	sql_literal(msg, lmissing, sizeof(lmissing));
	/* the check fails the statement with its own words (a failed cast, of a
	 * subquery's value so that planning does not fold it in advance) */
	int len = snprintf(
		out, outlen,
		"WITH chk AS (SELECT CASE WHEN %s = '' OR EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) "
		"AND indisvalid) THEN 0 ELSE (SELECT %s::text)::int END AS ok), fence AS (%s)"
		" INSERT INTO vecgate.routes AS r (index_name, mode, pin_index, pin_list, updated_by)"
		" SELECT %s, 'primary', NULLIF(%s, ''), CASE WHEN %s = '' THEN NULL ELSE"
		" (SELECT string_agg('\"' || replace(c.relname, '\"', '\"\"') || '\"', ' ' ORDER BY c.relname <> %s, c.relname)"
		" FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s AND i.indisvalid"
		" AND c.relname <> %s AND strpos(c.relname, '/*') = 0 AND strpos(c.relname, '*/') = 0) END, %s FROM chk, fence"
		" ON CONFLICT (index_name) DO UPDATE SET pin_index = EXCLUDED.pin_index, pin_list = EXCLUDED.pin_list,"
		" updated_at = now(), updated_by = EXCLUDED.updated_by"
		" RETURNING pg_notify('vecgate_routes', r.index_name), r.pin_list",
		lpin, rpin, lmissing, fence ? fence : "SELECT 0", lroute, lpin, lpin, lpin, rtable, lhidden, lby);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_rename_index(const char *schema, const char *from, const char *to, int lock_timeout_ms, char *out,
                     size_t outlen)
{
	char q[420], qto[200];
	sql_qualified(schema, from, q, sizeof(q));
	quote_ident(to, qto, sizeof(qto));
	int len = snprintf(out, outlen, "BEGIN; SET LOCAL lock_timeout = '%dms'; ALTER INDEX IF EXISTS %s RENAME TO %s; COMMIT",
	                   lock_timeout_ms > 0 ? lock_timeout_ms : 50, q, qto);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int sql_session_settings(const char *const *names, const char *const *values, int n, char *out, size_t outlen)
{
	size_t o = 0;
	if (outlen)
		out[0] = 0;
	for (int i = 0; i < n; i++) {
		char qn[200], lit[600];
		quote_ident(names[i], qn, sizeof(qn));
		/* dotted custom settings (hnsw.ef_search) stay as written */
		const char *name = strchr(names[i], '.') ? names[i] : qn;
		for (const char *p = names[i]; *p; p++)
			if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9')))
				return -1;
		sql_literal(values[i], lit, sizeof(lit));
		int len = snprintf(out + o, outlen - o, "SET %s = %s;%s", name, lit, i + 1 < n ? " " : "");
		if (len < 0 || (size_t)len >= outlen - o)
			return -1;
		o += (size_t)len;
	}
	return 0;
}

/* ---- partitioned tables ---- */

/* append to out at *o; false when it does not fit */
static bool addf(char *out, size_t outlen, size_t *o, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool addf(char *out, size_t outlen, size_t *o, const char *fmt, ...)
{
	if (*o >= outlen)
		return false;
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(out + *o, outlen - *o, fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= outlen - *o) {
		*o = outlen;
		return false;
	}
	*o += (size_t)len;
	return true;
}

/* UPDATE pg_index SET indisvalid = v for a parent index and every index under it */
static bool add_tree_valid(char *out, size_t outlen, size_t *o, const char *schema, const char *parent, bool valid)
{
	char rc[900];
	regclass_lit(schema, parent, rc, sizeof(rc));
	return addf(out, outlen, o,
	            "UPDATE pg_index SET indisvalid = %s WHERE indexrelid IN (SELECT %s UNION ALL SELECT relid FROM "
	            "pg_partition_tree(%s) WHERE level > 0);\n",
	            valid ? "true" : "false", rc, rc);
}

static bool add_rename(char *out, size_t outlen, size_t *o, const char *schema, const char *from, const char *to)
{
	char q[420], qto[200];
	sql_qualified(schema, from, q, sizeof(q));
	quote_ident(to, qto, sizeof(qto));
	return addf(out, outlen, o, "ALTER INDEX %s RENAME TO %s;\n", q, qto);
}

static bool add_head(char *out, size_t outlen, size_t *o, const char *fence, int lock_timeout_ms)
{
	return addf(out, outlen, o, "BEGIN;\n%s%sSET LOCAL lock_timeout = '%dms';\n", fence ? fence : "",
	            fence ? ";\n" : "", lock_timeout_ms > 0 ? lock_timeout_ms : 50);
}

int sql_part_swap(const struct part_names *n, enum swap_mode mode, char *out, size_t outlen)
{
	size_t o = 0;
	char table_rc[900];
	regclass_lit(n->schema, n->table, table_rc, sizeof(table_rc));
	bool ok = add_head(out, outlen, &o, n->fence, n->lock_timeout_ms);
	if (mode == SWAP_FLIP)
		ok = ok && add_tree_valid(out, outlen, &o, n->schema, n->live, false) &&
		     add_tree_valid(out, outlen, &o, n->schema, n->fresh, true);
	/* the old tree takes the retired names first, so the live names are
	 * free for the new one */
	ok = ok && add_rename(out, outlen, &o, n->schema, n->live, n->retired);
	for (int i = 0; ok && i < n->n; i++)
		ok = add_rename(out, outlen, &o, n->leaf_schema[i], n->live_child[i], n->retired_child[i]);
	ok = ok && add_rename(out, outlen, &o, n->schema, n->fresh, n->live);
	for (int i = 0; ok && i < n->n; i++)
		ok = add_rename(out, outlen, &o, n->leaf_schema[i], n->fresh_child[i], n->live_child[i]);
	/* the plans of the table and of each partition are re-made */
	if (mode == SWAP_FLIP)
		ok = ok && addf(out, outlen, &o,
		                "UPDATE pg_class SET relname = relname WHERE oid IN (SELECT %s UNION ALL SELECT relid FROM "
		                "pg_partition_tree(%s) WHERE level > 0);\n",
		                table_rc, table_rc);
	ok = ok && addf(out, outlen, &o, "COMMIT;");
	return ok ? 0 : -1;
}

int sql_part_rollback(const struct part_names *n, char *out, size_t outlen)
{
	struct part_names back = *n;
	back.fresh = n->retired;
	back.retired = n->fresh;
	back.fresh_child = n->retired_child;
	back.retired_child = n->fresh_child;
	return sql_part_swap(&back, SWAP_FLIP, out, outlen);
}

int sql_part_drop(const char *schema, const char *parent, int n, const char *const *leaf_schema,
                  const char *const *children, int lock_timeout_ms, char *out, size_t outlen)
{
	size_t o = 0;
	char q[420];
	sql_qualified(schema, parent, q, sizeof(q));
	bool ok = add_head(out, outlen, &o, NULL, lock_timeout_ms) &&
	          addf(out, outlen, &o, "DROP INDEX IF EXISTS %s;\n", q);
	for (int i = 0; ok && children && i < n; i++) {
		sql_qualified(leaf_schema[i], children[i], q, sizeof(q));
		ok = addf(out, outlen, &o, "DROP INDEX IF EXISTS %s;\n", q);
	}
	ok = ok && addf(out, outlen, &o, "COMMIT;");
	return ok ? 0 : -1;
}

int sql_part_record(long long job_id, const char *leaf_schema, const char *leaf, const char *child, bool hide,
                    const char *schema, const char *table, const char *fence, char *out, size_t outlen)
{
	size_t o = 0;
	char q[420], lit[900], hide_sql[1100], leaf_rc[900], table_rc[900];
	sql_qualified(leaf_schema, child, q, sizeof(q));
	sql_literal(q, lit, sizeof(lit));
	bool ok = addf(out, outlen, &o, "BEGIN;\n%s%s", fence ? fence : "", fence ? ";\n" : "");
	if (hide) {
		if (sql_set_index_valid(leaf_schema, child, false, hide_sql, sizeof(hide_sql)) < 0)
			return -1;
		regclass_lit(leaf_schema, leaf, leaf_rc, sizeof(leaf_rc));
		regclass_lit(schema, table, table_rc, sizeof(table_rc));
		ok = ok && addf(out, outlen, &o, "%s;\nUPDATE pg_class SET relname = relname WHERE oid IN (%s, %s);\n",
		                hide_sql, leaf_rc, table_rc);
	}
	ok = ok && addf(out, outlen, &o,
	                "UPDATE vecgate.jobs SET partitions_done = array_append(array_remove(coalesce(partitions_done, "
	                "'{}'), %s), %s) WHERE id = %lld;\nCOMMIT;",
	                lit, lit, job_id);
	return ok ? 0 : -1;
}

int sql_part_attach(const struct part_names *n, const char *parent_def, char *out, size_t outlen)
{
	size_t o = 0;
	char qp[420], qc[420];
	sql_qualified(n->schema, n->fresh, qp, sizeof(qp));
	bool ok = add_head(out, outlen, &o, n->fence, n->lock_timeout_ms) && addf(out, outlen, &o, "%s;\n", parent_def);
	for (int i = 0; ok && i < n->n; i++) {
		sql_qualified(n->leaf_schema[i], n->fresh_child[i], qc, sizeof(qc));
		ok = addf(out, outlen, &o, "ALTER INDEX %s ATTACH PARTITION %s;\n", qp, qc);
	}
	ok = ok && addf(out, outlen, &o, "COMMIT;");
	return ok ? 0 : -1;
}

int sql_part_measure(const char *schema, const char *live, const char *fresh, char *out, size_t outlen)
{
	size_t o = 0;
	bool ok = add_tree_valid(out, outlen, &o, schema, fresh, true) && add_tree_valid(out, outlen, &o, schema, live, false);
	if (ok && o > 0 && out[o - 1] == '\n')
		out[--o] = 0; /* run as one setup string */
	return ok ? 0 : -1;
}

int sql_part_swap_one(long long job_id, const char *leaf_schema, const char *leaf, const char *live_child,
                      const char *fresh_child, const char *schema, const char *table, const char *fence,
                      int lock_timeout_ms, char *out, size_t outlen)
{
	size_t o = 0;
	char hide[1100], show[1100], leaf_rc[900], table_rc[900], q[420], lit[900];
	if (sql_set_index_valid(leaf_schema, live_child, false, hide, sizeof(hide)) < 0 ||
	    sql_set_index_valid(leaf_schema, fresh_child, true, show, sizeof(show)) < 0)
		return -1;
	regclass_lit(leaf_schema, leaf, leaf_rc, sizeof(leaf_rc));
	regclass_lit(schema, table, table_rc, sizeof(table_rc));
	sql_qualified(leaf_schema, fresh_child, q, sizeof(q));
	sql_literal(q, lit, sizeof(lit));
	bool ok = add_head(out, outlen, &o, fence, lock_timeout_ms) &&
	          addf(out, outlen, &o,
	               "%s;\n%s;\nUPDATE pg_class SET relname = relname WHERE oid IN (%s, %s);\n"
	               "UPDATE vecgate.jobs SET partitions_swapped = array_append(array_remove(coalesce(partitions_swapped, "
	               "'{}'), %s), %s) WHERE id = %lld;\nCOMMIT;",
	               hide, show, leaf_rc, table_rc, lit, lit, job_id);
	return ok ? 0 : -1;
}

int sql_part_unroll(long long job_id, const struct part_names *n, char *out, size_t outlen)
{
	size_t o = 0;
	char table_rc[900], q[420], lit[900];
	regclass_lit(n->schema, n->table, table_rc, sizeof(table_rc));
	bool ok = add_head(out, outlen, &o, n->fence, n->lock_timeout_ms) &&
	          add_tree_valid(out, outlen, &o, n->schema, n->live, true) &&
	          addf(out, outlen, &o, "UPDATE pg_index SET indisvalid = false WHERE indexrelid IN (0");
	for (int i = 0; ok && i < n->n; i++) {
		sql_qualified(n->leaf_schema[i], n->fresh_child[i], q, sizeof(q));
		sql_literal(q, lit, sizeof(lit));
		ok = addf(out, outlen, &o, ", coalesce(to_regclass(%s), 0)", lit);
	}
	ok = ok && addf(out, outlen, &o,
	                ");\nUPDATE pg_class SET relname = relname WHERE oid IN (SELECT %s UNION ALL SELECT relid FROM "
	                "pg_partition_tree(%s) WHERE level > 0);\n"
	                "UPDATE vecgate.jobs SET partitions_swapped = '{}' WHERE id = %lld;\nCOMMIT;",
	                table_rc, table_rc, job_id);
	return ok ? 0 : -1;
}
