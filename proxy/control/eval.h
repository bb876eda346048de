/*
 * The eval runner (eval.c), shared by rebuild jobs and the drift monitor:
 * an eval set (query vectors, optionally with their exact top-k) and one
 * run of it on a maintenance session.  A run computes missing ground truth
 * exactly and times every k-NN query in one REPEATABLE READ snapshot, so
 * rows ingested meanwhile cannot make an index look as if it lost recall;
 * it reports recall@k, p50 and p95 to its owner's callback exactly once.
 *
 * Ground truth comes from one exact scan of the table for all queries at
 * once (a binary COPY of id and vector in the eval snapshot, distances and
 * top-k computed in C: protocol/topk.h) when the eval query is a plain k-NN
 * query over integer ids and a vector or halfvec column (routing/knn_query.h)
 * and `ground_truth` allows it; a WHERE clause of simple predicates is read
 * in the same COPY and applied to each row (routing/knn_filter.h), once per
 * distinct set of filter values among the queries.  Otherwise from one
 * exact query per eval vector with index scans disabled.  The outcome says
 * which, and why.
 */
#ifndef VG_PROXY_CONTROL_EVAL_H
#define VG_PROXY_CONTROL_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

struct pg_session;
struct pg_result;

#define EVAL_MAX_PARAMS 16 /* $1 the vector, $2 k, $3.. given with each eval query */

struct eval_query {
	char *vector;
	char **params;   /* the values of $3, $4, ... for this query (eval file: "VECTOR ; v3 ; v4") */
	size_t n_params;
	unsigned line;   /* in the eval file, 0 for a traffic sample */
	int64_t *truth;
	size_t n_truth;
	/* the exact scan's boundary ties: ids outside truth at the k-th
	 * distance, which recall counts as hits (routing/gate.h) */
	int64_t *ties;
	size_t n_ties;
	bool truth_from_file; /* else recomputed exactly in every run */
	bool from_traffic;    /* sampled from vector reads (vecgate.eval_samples), not the eval file */
};

struct eval_set {
	struct eval_query *queries;
	size_t n;
};

/* Lines "VECTOR [; v3 [; v4 ...]] [| id, id, ...]" ('#' comments): the
 * vector ($1), the values of the eval query's further parameters ($3, $4,
 * ... as text, blanks around them trimmed), the ground truth.  0, or -1
 * with a reason. */
int eval_set_load(struct eval_set *set, const char *path, char *err, size_t errlen);
/* Every query gives the values the eval query's parameters after $2 need,
 * no more, no fewer.  0, or -1 with the line that does not. */
int eval_set_check_params(const struct eval_set *set, const struct vg_managed_index *mi, char *err, size_t errlen);
void eval_set_free(struct eval_set *set);
/* dst: src's queries (vectors and parameters) without any ground truth, so
 * that a run over one partition computes that partition's.  0, or -1 out
 * of memory (dst empty). */
int eval_set_copy_untruthed(struct eval_set *dst, const struct eval_set *src);
/* Append a query vector sampled from traffic (ground truth computed in the run).  0, or -1 out of memory. */
int eval_set_add_traffic(struct eval_set *set, const char *vector);
/* Drop the traffic queries (before loading a fresh sample). */
void eval_set_drop_traffic(struct eval_set *set);
size_t eval_set_count(const struct eval_set *set, bool from_traffic);
/* The traffic sample as read from vecgate.eval_samples (a failed read, error
 * set, counts as none) replaces the set's traffic queries: all of them with
 * eval_source traffic, else only when there are traffic_min_samples.
 * Returns the number of samples read. */
int eval_set_take_samples(struct eval_set *set, const struct vg_managed_index *mi, const struct pg_result *res,
                          const char *error);

struct eval_outcome {
	double recall, p50_ms, p95_ms;
	/* recall over the eval file's queries and over the traffic sample's
	 * (NAN where the set has none); `recall` is over all of them */
	double recall_file, recall_traffic;
	size_t n_file, n_traffic;
	const char *plan_index; /* the index EXPLAIN showed, when the run checked */
	const char *truth;      /* how the ground truth was had, for the job's message */
	/* with eval_opts.per_partition: the partitions the true neighbours live
	 * in, each with its share of the recall (part_recall_add); none when
	 * the lookup could not run (the note says why) */
	const struct eval_leaf *leaves;
	int n_leaves;
	const char *leaves_note;
};
/* error NULL: the run finished; else it stopped, and `transient` says
 * whether trying again later may help. */
typedef void (*eval_done_cb)(void *arg, const struct eval_outcome *out, const char *error, bool transient);

/* A partition of the measured table and the true neighbours found in it. */
struct eval_leaf {
	char schema[64], name[64];
	double hits, want; /* summed over the queries: recall = hits / want */
};

struct eval_opts {
	const char *setup_sql;    /* run inside the eval transaction first (e.g. hide the live index), or NULL */
	const char *expect_index; /* EXPLAIN must show this index serving the eval query, or NULL */
	const char *expect_hint;  /* appended to the refusal when it does not */
	/* Time the queries through one prepared statement whose generic plan is
	 * made by EXPLAIN EXECUTE right after plan_setup_sql and reused by every
	 * query.  This is how a role without superuser measures a candidate:
	 * hypopg hides an index from plans made while EXPLAIN runs, never from
	 * a query's own planning, so only a plan made under EXPLAIN and cached
	 * carries the hide into execution (README, "Without superuser"). */
	bool generic_plan;
	const char *plan_setup_sql;    /* before the plan is made, or NULL */
	const char *plan_teardown_sql; /* after the timed queries, or NULL */
	/* schema-qualified indexes: the timed queries must have scanned `scans_on`
	 * once each and `no_scans_on` never (the cached plan held; a concurrent
	 * ANALYZE or DDL re-plans it without the hide), or NULL */
	const char *scans_on, *no_scans_on;
	/* a plan hint (swap_mode hint) put in front of the timed queries and
	 * the EXPLAIN, never of the exact queries of the ground truth; or NULL */
	const char *hint;
	/* a partitioned table: after the timed queries, in the same snapshot,
	 * look up which partition each true neighbour lives in (one statement
	 * over the neighbours' ids) and split the recall by partition */
	bool per_partition;
	/* the query run instead of the configured eval_query, and the table
	 * it reads (schema, name), or NULL: a rolling rebuild gates one
	 * partition with the eval query restricted to it (pin_retarget); the
	 * ground truth is then that partition's */
	const char *query, *query_schema, *query_table;
};

enum eval_truth_method { EVAL_TRUTH_PER_QUERY = 0, EVAL_TRUTH_SCAN = 1 };
struct eval_scan; /* the exact scan in progress (eval.c) */

/* One run in progress; embedded (zeroed) in its owner, which keeps it, the
 * set and the session alive until the callback. */
struct eval_run {
	struct pg_session *s;
	char index_name[128]; /* looked up on every step: a reload may replace the config */
	struct eval_set *set;
	char setup_sql[2400], expect_index[128], expect_hint[200];
	bool generic_plan;
	char plan_setup_sql[1800], plan_teardown_sql[300], scans_on[700], no_scans_on[700];
	char hint[1400];
	char *timed_sql; /* hint + eval query, built at the first timed query */
	char *query;     /* opts.query (owned), or NULL: the configured eval_query */
	char query_schema[64], query_table[64];
	long long scans_before[2]; /* the two indexes' scan counters before the timed queries */
	eval_done_cb done;
	void *arg;
	size_t i;
	bool truth_pass, prepared, finished, scans_checked;
	double sent;
	double *lat_ms;
	double recall_sum, recall_sum_traffic;
	char plan_index[128];
	double started;          /* monotonic seconds */
	size_t truth_total, steps_done; /* exact queries to run; queries answered so far (both passes) */
	enum eval_truth_method method;
	struct eval_scan *scan; /* while the exact scan runs */
	bool copy_in_flight;    /* its COPY streams on the session */
	char truth_note[300];
	/* per_partition: each query's answers (k each, n_got[i] of them), the
	 * partitions found and a note when the lookup failed */
	bool per_partition, leaves_looked;
	int64_t *got;
	size_t *n_got, got_k;
	size_t leaves_ids;   /* distinct true neighbours looked up */
	double leaves_sent;  /* when the lookup went out, for the log */
	struct eval_leaf *leaves;
	int n_leaves;
	char leaves_note[300];
};

/* Where a run stands, for the API, the CLI and the metrics.  false when no
 * run is in progress. */
struct eval_progress {
	const char *pass; /* "ground truth", "ground truth scan" or "timed queries" */
	const char *unit; /* "queries", or "rows" for the scan (total: the planner's estimate, or a count) */
	size_t done, total;
	double percent, eta_s;
};
bool eval_run_progress(const struct eval_run *run, struct eval_progress *out);

void eval_run_start(struct eval_run *run, struct pg_session *s, const struct vg_managed_index *mi,
                    struct eval_set *set, const struct eval_opts *opts, eval_done_cb done, void *arg);
void eval_run_release(struct eval_run *run); /* free what a run holds (after its callback or to abandon it) */
/* The owner stops caring about a run still in progress (its job moved on):
 * no callback will come.  Returns true when statements of the run may still
 * be running on the session (an exact scan streams a whole table): the owner
 * must then close or replace the session, which also rolls the eval
 * transaction back on the server and stops the scan at once. */
bool eval_run_abandon(struct eval_run *run);

#endif
