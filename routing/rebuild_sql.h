/*
 * The SQL a rebuild runs, built from data (schema, table and index names,
 * settings).  Catalog lookups take their arguments as query parameters; DDL,
 * which cannot, gets identifiers through quote_ident and literals through
 * sql_literal.  The swap follows what PostgreSQL does (README, "What the
 * design rests on"): renaming alone does not move traffic,
 * pg_index.indisvalid decides what the planner may use, and cached plans
 * move only when the table's relcache is invalidated in the same
 * transaction.
 */
#ifndef VG_ROUTING_REBUILD_SQL_H
#define VG_ROUTING_REBUILD_SQL_H

#include <stdbool.h>
#include <stddef.h>

enum swap_mode {
	SWAP_FLIP,   /* superuser: flip indisvalid, old index kept maintained for instant rollback */
	SWAP_RENAME, /* no superuser: rename, then DROP INDEX CONCURRENTLY the old one (no rollback) */
	SWAP_HINT,   /* no superuser, pg_hint_plan loaded: vecgate pins its reads with plan hints */
};
const char *swap_mode_name(enum swap_mode m);
enum swap_mode swap_mode_parse(const char *s); /* unknown: SWAP_FLIP, as older records wrote only flip/rename */

struct swap_names {
	const char *schema;    /* of table and indexes */
	const char *table;
	const char *live;      /* the live index's name (stays the live name after the swap) */
	const char *fresh;     /* the newly built index */
	const char *retired;   /* name the old index gets */
	int lock_timeout_ms;
	const char *fence;     /* a sql_fence statement run first in the transaction, or NULL */
};

/* One transaction (BEGIN ... COMMIT) that moves planner and cached plans to
 * the new index.  Returns 0, or -1 if it does not fit. */
int sql_swap(const struct swap_names *n, enum swap_mode mode, char *out, size_t outlen);
/* The reverse of a SWAP_FLIP: the retired index serves again under the live name. */
int sql_rollback(const struct swap_names *n, char *out, size_t outlen);
/* After the swap (SWAP_RENAME) or when retention ends (SWAP_FLIP). */
int sql_drop_index_concurrently(const char *schema, const char *index, char *out, size_t outlen);

/* Session settings for the maintenance connection, one SET per entry. */
int sql_session_settings(const char *const *names, const char *const *values, int n, char *out, size_t outlen);

/* "UPDATE pg_index SET indisvalid = <valid> WHERE indexrelid = '<schema.index>'::regclass" */
int sql_set_index_valid(const char *schema, const char *index, bool valid, char *out, size_t outlen);
/* Keep a freshly built candidate away from the planner until the swap: one
 * transaction marks it not valid (PostgreSQL keeps maintaining it, as
 * indisready stays true) and invalidates the table's cached plans, so no
 * session, prepared statements included, can pick it before the gate. */
int sql_hide_candidate(const char *schema, const char *table, const char *fresh, const char *fence, char *out,
                       size_t outlen);
/* The same for a candidate that may not exist (a takeover does not know
 * how far the build of the instance it replaces got). */
int sql_hide_candidate_if_there(const char *schema, const char *table, const char *fresh, char *out, size_t outlen);
/* Fencing: one statement that fails ("fenced: ...") unless the backend
 * state_pid holds index_name's rebuild lock; put first in a transaction
 * that must not run for an instance that lost the lock. */
int sql_fence(const char *index_name, int state_pid, char *out, size_t outlen);
/* Inside the verify transaction only: the candidate valid, the live index
 * not, so the eval queries measure the candidate (rolled back afterwards). */
int sql_measure_candidate(const char *schema, const char *live, const char *fresh, char *out, size_t outlen);

/* hypopg (>= 1.4, in schema hypopg_schema): hide schema.index from the plans
 * this session makes under EXPLAIN, and show every index again. */
int sql_hypopg_hide(const char *hypopg_schema, const char *schema, const char *index, char *out, size_t outlen);
int sql_hypopg_unhide_all(const char *hypopg_schema, char *out, size_t outlen);

/* swap_mode hint: one statement that pins the managed index's vector reads
 * to index `pin` ("" unpins) in vecgate.routes and notifies every
 * instance.  The hint's index list is made there from the catalog: the pin
 * first, then the table's other valid indexes except `hidden`.  A pin whose
 * index is missing or not valid fails (a cast of the reason) and changes
 * nothing; so does a `fence` (sql_fence, or NULL) that fails.  Returns one
 * row: (notify, pin_list). */
int sql_pin(const char *route, const char *schema, const char *table, const char *pin, const char *hidden,
            const char *by, const char *fence, char *out, size_t outlen);
/* -> pin_index of the route ($1), no row or NULL when not pinned */
extern const char SQL_PIN_READ[];
/* ALTER INDEX IF EXISTS ... RENAME under a lock_timeout (hint mode gives
 * the live name back to the new index once it is the only one) */
int sql_rename_index(const char *schema, const char *from, const char *to, int lock_timeout_ms, char *out,
                     size_t outlen);

/* schema.name with each part quoted only as needed. */
void sql_qualified(const char *schema, const char *name, char *out, size_t outlen);

/* A string literal with PostgreSQL quoting ('it''s'). */
void sql_literal(const char *s, char *out, size_t outlen);

/* Preflight looks the configured names up in the catalog, each part as
 * spelled (no quoting, no case folding): $1 schema, $2 table, $3 index ->
 * schema found (bool), the table's relkind, the index's relkind (NULL:
 * nothing of that name), the index's oid when it is an index of that table,
 * the table an index of that name belongs to, the table's indexes, and
 * relations whose names differ from the table's or index's only in case. */
extern const char SQL_NAMES_LOOKUP[];
struct names_found {
	bool schema;
	char table_kind, index_kind;     /* pg_class.relkind, 0 when not found */
	const char *index_oid;           /* NULL unless an index of the table */
	const char *index_table;         /* the index's table, or NULL */
	const char *table_indexes;       /* or NULL */
	const char *case_near;           /* or NULL */
};
/* 0 when the names denote a table and one of its indexes; else -1 with the
 * refusal in why: what was looked up (schema, table, index), what was not
 * found or is something else, and the near misses. */
int names_verdict(const char *schema, const char *table, const char *index, const struct names_found *f, char *why,
                  size_t whylen);

/* ---- partitioned tables (routing/partitions.h) ----
 * The live index is a partitioned index over one index per partition.
 * Each partition gets its own candidate (CREATE INDEX CONCURRENTLY on the
 * partition), then a parent candidate ON ONLY the table and every child
 * attached to it; the swap moves the whole tree in one transaction. */
struct part_names {
	const char *schema, *table;         /* the partitioned table; the parent indexes live in its schema */
	const char *live, *fresh, *retired; /* parent indexes */
	int n;
	const char *const *leaf_schema;     /* each partition's schema: its indexes live there */
	const char *const *leaf;
	const char *const *live_child, *const *fresh_child, *const *retired_child;
	int lock_timeout_ms;
	const char *fence; /* sql_fence, or NULL */
};
/* The swap of the whole tree: flip (validity of every index of the old
 * tree false, of the new tree true, renames so that every live name stays,
 * a no-op pg_class update of the table and each partition so that cached
 * plans move) or rename (the renames only; the old tree is dropped after).
 * 0, or -1 when it does not fit. */
int sql_part_swap(const struct part_names *n, enum swap_mode mode, char *out, size_t outlen);
/* The flip back (after the swap the new tree carries the live names). */
int sql_part_rollback(const struct part_names *n, char *out, size_t outlen);
/* Drop a parent index and its children: DROP INDEX CONCURRENTLY cannot drop
 * a partitioned index, so a plain DROP (the parent drops the children
 * attached to it; children not attached yet are named) under lock_timeout,
 * in one transaction, retried by the caller.  children may be NULL. */
int sql_part_drop(const char *schema, const char *parent, int n, const char *const *leaf_schema,
                  const char *const *children, int lock_timeout_ms, char *out, size_t outlen);
/* A partition's candidate is built: record it in vecgate.jobs
 * (partitions_done) and, with hide (flip mode), keep it from the planner
 * (not valid, still maintained) and make the partition's and the table's
 * cached plans go, all in one transaction behind the fence. */
int sql_part_record(long long job_id, const char *leaf_schema, const char *leaf, const char *child, bool hide,
                    const char *schema, const char *table, const char *fence, char *out, size_t outlen);
/* The parent candidate (parent_def: part_parent_def's statement) and every
 * child attached to it, in one transaction under lock_timeout behind the
 * fence; idempotent (IF NOT EXISTS, attaching an attached child is a no-op). */
int sql_part_attach(const struct part_names *n, const char *parent_def, char *out, size_t outlen);
/* partitions: rolling, one partition whose gate passed: its candidate
 * valid and its live index not (names unchanged: the renames of the whole
 * tree wait for the parent's swap, so every step of the job finds each
 * index under one name), the plans of the partition and of the table
 * re-made, and the partition recorded in vecgate.jobs partitions_swapped,
 * in one transaction under lock_timeout. */
int sql_part_swap_one(long long job_id, const char *leaf_schema, const char *leaf, const char *live_child,
                      const char *fresh_child, const char *schema, const char *table, const char *fence,
                      int lock_timeout_ms, char *out, size_t outlen);
/* partitions: rolling, leaving before the parent's swap: every partition
 * back on its live index (the live tree valid, every candidate that exists
 * not), plans re-made, partitions_swapped emptied.  Idempotent. */
int sql_part_unroll(long long job_id, const struct part_names *n, char *out, size_t outlen);
/* Inside the verify transaction only: the new tree valid, the old one not. */
int sql_part_measure(const char *schema, const char *live, const char *fresh, char *out, size_t outlen);
/* $1 live parent index -> per partition (level-1 leaves of the index's
 * tree): schema, table, its index, that index's validity, its definition,
 * the partition's reltuples; then on every row: the table's deepest
 * partition level and its number of leaf partitions */
extern const char SQL_PART_LIST[];
/* $1 text[] of the candidates (schema.name, quoted as needed), $2 job id,
 * $3 the parent candidate -> per candidate, in order: its oid (NULL: not
 * there), valid, recorded in partitions_done, attached to $3 */
extern const char SQL_PART_CANDIDATES[];

/* Catalog queries (parameters in $n comments). */
/* $1 schema.index -> indexrelid, table, def, valid, ready, size, may create in schema, owns table */
extern const char SQL_INDEX_INFO[];
extern const char SQL_INVALID_INDEXES[];     /* $1 schema.table -> invalid index names */
extern const char SQL_BUILDS_RUNNING[];      /* $1 schema.table -> pids of CREATE INDEX in progress */
extern const char SQL_OLD_TRANSACTIONS[];    /* $1 min age seconds -> pid, age, state, query */
extern const char SQL_BUILD_PROGRESS[];      /* $1 pid -> phase, blocks/tuples done/total, lockers done/total,
                                                the backend the build waits for: pid, user, application,
                                                client, transaction age s, query age s, query start */
extern const char SQL_TABLE_LOCKERS[];       /* $1 table -> the oldest other backend holding a lock on it:
                                                pid, user, application, client, ages, query start */
extern const char SQL_IS_SUPERUSER[];
extern const char SQL_HYPOPG[];              /* -> schema, version of the hypopg extension, or no row */
extern const char SQL_HINT_PLAN[];           /* -> pg_hint_plan.enable_hint, NULL when pg_hint_plan is not loaded */
/* $1 old, $2 new schema.index -> idx_scan of each (NULL: gone), the server's start time */
extern const char SQL_INDEX_SCANS[];

/* Route modes, pins and traffic samples shared by every instance:
 * vecgate.routes and vecgate.eval_samples (idempotent DDL, several statements). */
extern const char SQL_ROUTES_SCHEMA[];
/* Durable job state, schema "vecgate" (created on first use). */
extern const char SQL_STATE_SCHEMA[];      /* idempotent DDL, several statements */
/* First on every session that writes vecgate.*: a record confirmed to a job
 * or an operator survives a crash of the server, whatever synchronous_commit
 * the server runs with. */
extern const char SQL_DURABLE_COMMITS[];
extern const char SQL_TRY_LOCK[];          /* $1 index name -> bool (session advisory lock) */
extern const char SQL_JOB_INSERT[];        /* $1 index, $2 fresh, $3 retired -> id */
extern const char SQL_JOB_UPDATE[];        /* $1 id, $2 state, $3 attempts, $4 message, $5 swap_mode,
                                              $6 base recall, $7 p50, $8 p95, $9 cand recall, $10 swap ms */
extern const char SQL_JOB_STEP[];          /* $1 id, $2 from, $3 to, $4 event, $5 message */
extern const char SQL_JOB_UNFINISHED[];    /* $1 index -> the newest non-terminal job */
extern const char SQL_JOB_LATEST[];        /* $1 index -> the newest job, any state */
extern const char SQL_JOB_CLAIM[];         /* $1 id, $2 instance: this session drives it now (notifies) */
extern const char SQL_JOB_HEARTBEAT[];     /* $1 id: the driver is alive */
/* $1 index -> the unfinished job: id, state, driver, driver since, seconds
 * since the driver's heartbeat, message, fresh index */
extern const char SQL_JOB_FOLLOW[];
/* $1 job id, $2 its silent driver, $3 takeover_seconds: end that driver's
 * sessions if it is still the driver and still silent */
extern const char SQL_TAKEOVER_TERMINATE[];
/* $1 index: end (and wait for) a previous driver's sessions -> ended, still there */
extern const char SQL_END_PREVIOUS_DRIVER[];
extern const char SQL_CANCEL_ORPHAN_BUILDS[]; /* $1 schema.table: cancel CREATE INDEX run by vecgate */
/* $1 schema.table, $2 application_name: cancel CREATE INDEX run by other
 * sessions of that name (a job's build on a session it lost) */
extern const char SQL_CANCEL_SESSION_BUILDS[];

#endif
