/*
 * Inside the rebuild coordinator (proxy/control/rebuild/): the job object
 * and what its files share.  job.c owns the lifecycle, the one transition
 * path (job_event/job_apply over routing/rebuild_job.h) and the operator
 * API; steps.c runs each state's SQL and the actions between states;
 * state.c keeps the job durable in vecgate.jobs and resumes it after a
 * restart.  Views (admin/) read the struct; nothing outside writes it.
 *
 * Every session a job uses is an index_link (proxy/control/session.h): it
 * comes back after PostgreSQL restarts.  A step whose session died fails
 * with JEV_TRANSIENT; its retry waits for the backoff, a working
 * maintenance session and the advisory lock, then cleans up and runs the
 * step again.  Index changes that must happen (drops, the rollback) are
 * kept as cleanup work until they are done, not fired and forgotten.
 */
#ifndef VG_PROXY_CONTROL_REBUILD_JOB_H
#define VG_PROXY_CONTROL_REBUILD_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "conf/config.h"
#include "proxy/control/eval.h"
#include "proxy/control/plan.h"
#include "proxy/control/session.h"
#include "proxy/pool.h"
#include "proxy/runtime/pgasync.h"
#include "routing/partitions.h"
#include "routing/rebuild_job.h"
#include "routing/rebuild_sql.h"

struct history_entry {
	double at;
	enum job_state from, to;
	enum job_event event;
	char kind[12]; /* "" = a transition; "notice", "warning": what the server said during a step */
	char message[600];
};

/* A NOTICE or WARNING of the maintenance session (the build's: pgvector
 * says there when its graph stops fitting maintenance_work_mem). */
struct job_notice {
	double at;
	char severity[16];
	char message[400];
	const char *advice; /* static text, or NULL */
};
#define JOB_NOTICES_MAX 8

enum eval_purpose { EVAL_BASELINE, EVAL_VERIFY, EVAL_WATCH };

/* a retry after a transient failure: backoff first, then ready to go on
 * once the maintenance session works and the lock is held */
enum job_retry { RETRY_NONE, RETRY_BACKOFF, RETRY_READY };

/* index changes still owed (steps.c run_cleanup), in this order; each is
 * idempotent and is run again after a reconnect until it is confirmed */
enum {
	CLEAN_CANCEL_BUILD = 1,   /* a build of ours on a backend we lost may still run */
	CLEAN_ROLLBACK = 2,       /* flip back, if the catalog says the swap still stands */
	CLEAN_DROP_FRESH = 4,     /* the candidate, invalid or rolled back */
	CLEAN_DROP_RETIRED = 8,   /* the old index (rename mode after the swap, flip and hint mode at the end) */
	CLEAN_UNPIN = 16,         /* hint mode: reads go back to the planner (one index is left) */
	CLEAN_RENAME_FRESH = 32,  /* hint mode: the new index takes the live name */
};

/* where the state session stands: looking for a job to adopt, taking the
 * lock for a new job, holding it (re-taken after every reconnect), or
 * following a job another instance drives (until its lock comes free) */
enum state_phase { SP_PROBING, SP_STARTING, SP_HOLDING, SP_FOLLOWING };

#define JOB_HISTORY_MAX 64

/* A partitioned table's rebuild (partitions.c): one candidate per
 * partition, built in this order, then attached under the parent candidate
 * (job->fresh); names without quotes, each index in its partition's schema. */
struct job_partition {
	char leaf_schema[64], leaf[64];
	char live_child[64], fresh_child[64], retired_child[64];
	char *live_def;           /* pg_get_indexdef of the partition's live index */
	double rows;              /* the partition's reltuples when preflight read them */
	enum part_state state;
	enum part_do todo;        /* what the catalog said at the build's (re)start */
	double percent;           /* of this partition's build */
	long long tuples_done;    /* pgvector's loaded tuples, as the progress view last said */
	double build_started, build_s;
	char fresh_oid[16];       /* the candidate's oid once built ("" before) */
	/* the whole gate's eval split by partition (part_recall_add): the true
	 * neighbours living here and the share of them the baseline (live
	 * tree) and the candidate found, each in its own snapshot (writes
	 * between them move neighbours); NAN until measured or with none here */
	double base_neighbours, base_recall, neighbours, new_recall;
	/* partitions: rolling, this partition's own gate (the eval restricted
	 * to it): its live index's recall and p95, then its candidate's (NAN
	 * until measured; an empty partition is swapped ungated), and how long
	 * its swap transaction took */
	double gate_base_recall, gate_base_p95, gate_recall, gate_p95, swap_ms;
	bool empty;
};

struct rebuild_job {
	struct rebuild_job *next;
	struct rebuild_job *loose_next; /* on the list of jobs not registered yet (a probe at start) */
	int id;
	char *index_name;
	enum job_state state;
	int attempts;
	char message[1024];
	double created, updated, state_since; /* monotonic seconds */

	char *schema, *table, *live, *fresh, *retired, *live_def;
	char live_oid[16]; /* of the live index, as preflight found it by name */
	/* the new index's shape as preflight accepted it (method, opclass,
	 * expression: routing/index_shape.h); not set: the live one's */
	struct {
		bool set;
		char method[64], opclass[300], expression[1024];
	} shape;
	char key_type[16]; /* the type oid of a new key expression */
	bool superuser;
	enum swap_mode mode;
	/* hypopg >= 1.4 in the database (schema "" when absent): without
	 * superuser, verify hides the live index from a generic plan it makes
	 * under EXPLAIN and reuses (eval.h, generic_plan) */
	char hypopg_schema[64], hypopg_version[16];
	char hint_plan[16]; /* pg_hint_plan.enable_hint as the maintenance role sees it; "" = not loaded */
	long long live_size;
	struct event *settle_timer; /* hint mode: instances follow a pin change before an index goes */

	/* proof that traffic moved (watch): idx_scan of the old and the new
	 * index from the watch's start to its end (pg_stat_user_indexes), and
	 * the vector reads vecgate sent to the primary meanwhile */
	long long scans_old_start, scans_new_start, scans_old, scans_new;
	uint64_t reads_primary_start, reads_primary, pinned_start, pinned, unpinned_start, unpinned;
	bool have_scans_start, have_proof, proof_rechecked;
	char scans_server[48]; /* pg_postmaster_start_time() where the counts started: another server counts anew */
	char proof[300];

	/* measurements */
	struct eval_set evals;
	struct eval_run eval;
	enum eval_purpose purpose;
	double base_recall, base_p50, base_p95, new_recall, new_p50, new_p95;
	/* the same recalls split by where the queries came from (NAN: none) */
	double base_recall_file, base_recall_traffic, new_recall_file, new_recall_traffic;
	size_t samples_loaded; /* traffic queries in evals, from vecgate.eval_samples at preflight */
	bool have_base, have_new;
	double swap_ms, swap_sent;
	int swap_tries;
	bool approved;
	char gate_refusal[512]; /* the gate's refusal of a candidate held for the operator, or "" */

	/* traffic through vecgate on the index's database: before = job start to
	 * build start (the old index, reads not yet moved by the route policy),
	 * after = swap to the end of watch */
	struct traffic_stats t_pre_start, t_pre_end, t_swap;
	bool have_pre_end;
	double pre_err_rate, pre_mean_ms, post_err_rate, post_mean_ms;
	uint64_t post_requests;
	bool have_watch;

	/* build progress */
	char phase[128];
	long long blocks_done, blocks_total, tuples_done, tuples_total;
	double percent, eta_s, build_started;
	/* the backend a wait phase of the build waits for (pg_stat_progress_create_index
	 * current_locker_pid joined with pg_stat_activity), pid 0 = none */
	struct build_blocker {
		int pid;
		char user[64], application[64], client[64];
		double xact_age_s, query_age_s;
		char query[201];
	} blocker;
	double blocked_since; /* when the build started waiting for blocker.pid */

	struct index_link maint, poll;
	struct event *timer, *poll_timer;
	int build_pid;
	bool building;
	bool build_pinned;   /* hint mode: reads are pinned to the live index before the build starts */
	bool step_busy;      /* a step's SQL is in flight on maint: losing it is a transient failure */
	bool run_on_connect; /* the step waits for maint */
	enum job_retry retry;
	unsigned cleanup;    /* CLEAN_* still owed */
	bool cleanup_running;
	struct event *cleanup_timer; /* a cleanup statement failed for now */

	int pf_stage; /* enum preflight_stage (steps.c): which preflight check runs */
	double free_bytes; /* preflight's free space figure, NAN when not known */

	/* the build plan preflight ran (plan.h): its prediction drives the
	 * build's ETA; planning is the plan still running for the job */
	struct build_plan *planning;
	struct plan_result plan;
	bool have_plan;
	char plan_error[600];
	/* plan_over_limit: approve: the plan was over a limit and the job waits
	 * in preflight for the operator (vecgatectl approve); "" = not held */
	char plan_hold[700];
	const char *plan_hold_setting; /* the setting that would lift it (static) */
	bool plan_approved;
	/* what the maintenance session said; the memory cliff where the build met it */
	struct job_notice notices[JOB_NOTICES_MAX];
	int n_notices;
	long long cliff_tuples;
	double cliff_elapsed;

	struct history_entry hist[JOB_HISTORY_MAX];
	int n_hist;

	/* a partitioned live index (preflight found relkind 'p'): the
	 * partitions, the one whose candidate is being built (-1: none), and
	 * whether the parent candidate exists with every child attached */
	bool partitioned;
	struct job_partition *parts;
	int n_parts, part_cur;
	bool parts_attached;
	/* partitions: rolling (flip mode): each partition gated and swapped as
	 * soon as its candidate is built; the leaf eval's queries (the job's,
	 * with the partition's own ground truth computed in each run) */
	bool rolling;
	bool leaf_candidate; /* the partition's gate measures its candidate (else its live index) */
	struct eval_set leaf_evals;

	/* durable state: a session that holds the index's advisory lock */
	struct index_link state_l;
	enum state_phase sphase;
	bool locked;                   /* the advisory lock is held now */
	int hist_written, hist_sent;   /* history entries confirmed / sent to vecgate.job_steps */
	int hist_failed;               /* 1 + the first entry whose write failed since the session came up, or 0 */
	long long db_id;
	bool persistent;
	bool resuming;
	enum job_state resume_to;
	int state_pid;                 /* the state session's backend: the lock holder (fencing) */
	struct event *beat_timer;      /* driving: the heartbeat; following: the look at the lock */
	struct event *lock_timer;      /* the lock is held by this instance's previous job: try again */
	int lock_waits;                /* tries so far while that job lets go */
	/* who drives it (vecgate.jobs driver_instance, driver_since); a
	 * follower also keeps the driver's silence, in seconds */
	char driver[160], driver_since[40];
	double driver_silent_s;
	bool following;
	bool taking_over;              /* following, and the lock was had: the job's record is read */
	bool registered;               /* in the job list (job_register) */
	bool takeover_sent;            /* the silent driver's sessions were ended once */
	/* a step's DDL waits for the fence (the lock still held) on the maintenance session */
	char fenced_sql[16384];   /* as large as the longest statement built (a partition tree's drop, swap) */
	pg_result_cb fenced_cb;
};

/* job.c */
const struct vg_managed_index *job_index(const struct rebuild_job *job);
/* Read-side views shared by the admin JSON and /metrics, so both report the
 * same thing: build percent (100 once the build is behind the job), the
 * session the build or swap waits for (NULL when not waiting), and the
 * progress of the eval pass the job is running (false when none). */
double job_build_percent(const struct rebuild_job *job);
const struct build_blocker *job_waiting_for(const struct rebuild_job *job);
bool job_eval_progress(const struct rebuild_job *job, struct eval_progress *out);
/* Without superuser: can verify hide the live index with hypopg (>= 1.4)? */
bool job_hides_with_hypopg(const struct rebuild_job *job);
/* Why the job swaps the way it does, and what would give it more (preflight's message). */
void job_mode_reason(const struct rebuild_job *job, char *out, size_t len);
struct rebuild_job *job_new(const struct vg_managed_index *mi, char *err, size_t errlen);
void job_register(struct rebuild_job *job);
void job_free(struct rebuild_job *job);
struct rebuild_job *job_first(void);
/* Feed an event to the transition function and carry out its result. */
void job_event(struct rebuild_job *job, enum job_event ev, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Put what the server said (kind "notice" or "warning") in the history
 * and the log, without a transition. */
void job_note(struct rebuild_job *job, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Carry out a transition: history, log, route policy, durable record, the
 * action on the way and the new state's step. */
void job_apply(struct rebuild_job *job, enum job_event ev, struct job_transition t, const char *msg);
/* Set up a link of the job (label "rebuild <id> (<index>) <what>"). */
void job_link_init(struct rebuild_job *job, struct index_link *l, const char *role, const char *what,
                   bool retry_first, pg_state_cb on_up, pg_state_cb on_down);
/* Queue on the maintenance session; a dead session is a transient failure. */
void job_query(struct rebuild_job *job, const char *sql, int nparams, const char *const *params, pg_result_cb cb);
/* After an error in a statement that holds a transaction (BEGIN; ...;
 * COMMIT): the session stays in the aborted transaction until a ROLLBACK,
 * which goes first, before the retry or the cleanup. */
void job_end_failed_transaction(struct rebuild_job *job, const char *error);
void job_schedule(struct rebuild_job *job, double seconds);
void job_set_str(char **dst, const char *v);

/* steps.c */
void job_run_step(struct rebuild_job *job);
/* false when the statement worked; else the job's failure event (see steps.c) */
bool job_step_failed(struct rebuild_job *job, PGresult *res, const char *error, const char *what);
/* A candidate's CREATE INDEX CONCURRENTLY from a live definition (the
 * configured WITH overrides and the accepted shape applied), named name. */
int job_new_definition(const struct rebuild_job *job, const char *live_def, const char *name, char *def, size_t len,
                       char *err, size_t errlen);
/* Progress polling of the CREATE INDEX running on the maintenance session. */
void job_build_poll_start(struct rebuild_job *job);
void job_build_poll_stop(struct rebuild_job *job);

/* partitions.c: a partitioned table's rebuild */
/* preflight: the partitions from SQL_PART_LIST; false after a refusal */
bool part_preflight(struct rebuild_job *job, const PGresult *res);
void part_build_start(struct rebuild_job *job); /* the build step: every partition, then the parent */
/* The names of the partitioned swap, rollback and drops (valid while job lives). */
void part_names_of(const struct rebuild_job *job, struct part_names *n, const char **buf, int lock_timeout_ms,
                   const char *fence);
/* The whole build's percent after a progress poll of the partition building. */
void part_progress(struct rebuild_job *job, double fraction);
void part_free(struct rebuild_job *job);
/* partitions: rolling: how many partitions are swapped */
int part_swapped_count(const struct rebuild_job *job);
void job_perform(struct rebuild_job *job, enum job_state from, enum job_action action);
void job_step_timer(evutil_socket_t fd, short what, void *arg);
void job_stop_sessions(struct rebuild_job *job); /* cancels a running build first */
void job_init_links(struct rebuild_job *job);
/* A job that ended: owed cleanup first, then sessions and the lock go. */
void job_finish(struct rebuild_job *job);
/* The state session holds the lock again: what waited for it goes on. */
void job_lock_regained(struct rebuild_job *job);

/* state.c */
void job_state_open(struct rebuild_job *job); /* schema, advisory lock, job row; then the first step */
/* Run sql (no transaction block: CONCURRENTLY) on the maintenance session
 * only after a fence statement proved the lock is still this instance's;
 * cb gets the fence's error otherwise ("fenced: ..."). */
void job_query_fenced(struct rebuild_job *job, const char *sql, pg_result_cb cb);
/* Is this error a failed fence (another instance holds the lock)? */
bool job_fenced_error(const char *error);

/* Bring vecgate.jobs / job_steps up to date (kept in memory while the lock is not held). */
void job_persist(struct rebuild_job *job);
void job_state_release(struct rebuild_job *job); /* last records out, then the lock goes */
void job_resume_continue(struct rebuild_job *job); /* preflight found the index of a resumed job */
/* Did the swap commit (the old index carries the retired name)?  Go on
 * from the catalog's truth through job_resume: watch, or swap (again). */
void job_swap_check(struct rebuild_job *job);

#endif
