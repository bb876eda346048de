/*
 * The build plan (plan.c): before a rebuild, what the new index's build
 * will cost on the real table, told from timed trial builds of the new
 * definition on growing samples of it, copied into an unlogged scratch
 * table in schema vecgate (routing/build_plan.h has the model).  A plan
 * runs on its own session ("vecgate plan <index>" in pg_stat_activity),
 * reports its progress while it runs, and drops its scratch tables
 * whatever happens; a plan abandoned by its owner cancels what runs and
 * still cleans up.  The admin API and a rebuild's preflight start plans.
 */
#ifndef VG_PROXY_CONTROL_PLAN_H
#define VG_PROXY_CONTROL_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"
#include "proxy/runtime/pgasync.h"
#include "routing/build_plan.h"

/* What a trial is for.  HNSW: MEMORY builds the sample with the full
 * build's own maintenance_work_mem (and workers): the per-insert cost of
 * the graph in memory over every size the sample passes through; DISK
 * (when the full graph will not fit) builds it in 1 MB, so the graph
 * overflows after a few hundred tuples and the inserts after pgvector's
 * NOTICE give the on-disk cost over a wide range of graph sizes.
 * SCALED: IVFFlat and the rest, one build with maintenance_work_mem
 * scaled by sample / table (the same regime: a sort that spills).
 * KMEANS: IVFFlat's second build of the sample with lists cut so its
 * k-means keeps the build's samples per list (build_plan.h). */
enum plan_trial_kind { TRIAL_SCALED, TRIAL_MEMORY, TRIAL_DISK, TRIAL_KMEANS };

#define PLAN_MAX_SAMPLES 2048

struct plan_trial {
	enum plan_trial_kind kind;
	double rows, seconds, mwm_kb, index_bytes;
	long long cliff_tuples; /* pgvector's NOTICE in this trial: the graph stopped fitting after; 0 = fit */
	bool floored;           /* mwm could not be scaled down that far: a kinder regime than the full build */
	int workers;            /* parallel workers the trial was allowed (the table's parallel_workers) */
	/* from pg_stat_progress_create_index sampled over the build */
	int progress_samples;
	double notice_s;        /* seconds into the build when the NOTICE came, NAN = none */
	double load_end_s;      /* the last sample still inserting: the rest is the final flush */
	struct bp_rate mem, disk; /* per-insert cost before and after the NOTICE (ok false: not seen) */
	double cliff_flush_s;   /* writing the in-memory graph out at the NOTICE */
	double tail_s;          /* after the last insert: the final flush (trials run without CONCURRENTLY) */
	double kmeans_s;        /* IVFFlat: from the start to the end of k-means, NAN = not seen */
	int lists;              /* IVFFlat: the lists it built with */
	double pages;           /* its table's heap pages */
	double phase_s[BP_PH_N]; /* seconds in each phase, from the progress samples */
};

struct plan_replica {
	char name[64];
	double replay_bps; /* bytes/s it replayed during the plan, NAN when not measurable */
	double lag_s;      /* how far the build's WAL would put it behind at that rate */
};

/* What a finished plan says (NAN: not known). */
enum plan_state {
	PLAN_CONNECTING, PLAN_FACTS, PLAN_SAMPLE, PLAN_TRIAL, PLAN_PROBE, PLAN_EVAL, PLAN_CLEANUP, PLAN_DONE,
	PLAN_FAILED
};

struct plan_result {
	char method[16];         /* hnsw, ivfflat, ... */
	char definition[1024];   /* the new index's CREATE INDEX CONCURRENTLY */
	double rows;             /* of the real table */
	int n_trials;
	struct plan_trial trials[BP_MAX_TRIALS];
	bool have_fit;
	struct bp_fit fit;     /* HNSW: b = 1 + the in-memory d (the ETA's curve) */
	bool have_model;
	struct bp_hnsw_model model; /* HNSW: what the prediction integrates */
	double kmeans_s;       /* IVFFlat: k-means' share of the prediction (its sampling included) */
	bool have_ivf;
	struct bp_ivf_parts ivf; /* IVFFlat: the prediction's parts */
	double predicted_s, predicted_lo, predicted_hi;
	double mwm_bytes, peak_bytes, mwm_to_fit_bytes;
	bool peak_is_bound;      /* peak_bytes is an upper bound (no trial reached the cliff) */
	double probe_tuples;     /* the 1 MB probe overflowed after, 0 = not run / never */
	double graph_fixed_bytes; /* pgvector's fixed part of the graph's memory, from two budgets */
	bool cliff;              /* the graph (or k-means) will not fit maintenance_work_mem */
	double cliff_tuples;     /* where the full build falls off it */
	bool sort_spills;        /* ivfflat: the sort goes to disk (slower, not a cliff) */
	int workers, max_workers;
	double index_bytes, wal_bytes, free_bytes, disk_need_bytes;
	double wal_rate_bps;     /* the primary's WAL rate during the plan */
	int n_replicas;
	struct plan_replica replicas[4];
	double eval_s;
	double eval_query_s; /* one eval query on the live index, as timed (NaN: not timed) */
	int eval_queries;
	double cost_s, cost_ratio;
	double step_s[PLAN_FAILED + 1]; /* cost_s by the state it was spent in (probes count as trials) */
	char notes[900];         /* how far to trust it: why the band is wide, regimes that differ */
};

struct build_plan;
typedef void (*plan_cb)(void *arg, const struct build_plan *p);

struct build_plan {
	struct build_plan *next;
	int id;
	char *index_name;
	enum plan_state state;
	double started, finished, entered;
	char step[200];   /* what runs now */
	double percent;
	char error[600];  /* PLAN_FAILED: why */
	struct plan_result r;
	/* internal */
	struct pg_session *s;
	plan_cb cb;
	void *cb_arg;
	bool abandoned;     /* the owner left: no callback, clean up, free */
	bool statement_out; /* a statement of ours runs (cancel it when abandoned) */
	bool probing;       /* the memory probe: cancel the build at pgvector's NOTICE */
	int probed;         /* probes run: 1 MB, then 2 MB (two budgets separate pgvector's fixed part) */
	long long probe_cliff[2]; /* the tuples each held at the NOTICE, 0 = never came */
	/* the progress poller: its own session reads pg_stat_progress_create_index
	 * for the trial's backend while the build runs */
	struct pg_session *ps;
	struct event *poll_timer;
	bool polling, poll_out;
	int n_samples;
	struct bp_sample samples[PLAN_MAX_SAMPLES];
	unsigned char sample_phase[PLAN_MAX_SAMPLES]; /* enum bp_phase */
	double poll_s;     /* between progress samples: short builds are sampled finely */
	double notice_s;
	char scratch[64], trial_table[64], trial_index[64];
	char column[128], def[1200];
	double relpages, min_scan_pages, live_bytes, sample_rows, copy_s, t0, wal0, wal1, wall0;
	double replay0[4];
	long mwm_kb;
	int max_pmw, reloption_workers, dims, lists, cur;
	struct bp_ivf_sizes ivf;  /* IVFFlat: the two trials' rows and the k-means trial's lists */
	bool own_table;           /* the trial builds a prefix of the sample, in trial_table */
	char trial_def[1024]; /* the definition the current trial builds */
	double sizes[BP_MAX_TRIALS];
	int n_sizes;
	long long notice_cliff;
	bool retried;      /* the trial ran again with the memory pgvector asked for */
	double kmeans_kb;  /* the most an IVFFlat trial's k-means asked for */
	double q_s, eval_t0;
	bool eval_out, eval_wait; /* the eval query timed on the progress session during the sample's copy */
	char vec[65536];
};

/* Start a plan of mi's rebuild; cb (may be NULL) hears once when it is
 * done or failed.  NULL with a reason when it cannot start. */
struct build_plan *plan_start(const struct vg_managed_index *mi, int eval_queries, plan_cb cb, void *arg, char *err,
                              size_t errlen);
/* The owner goes: no callback; what runs is cancelled, scratch dropped. */
void plan_abandon(struct build_plan *p);
const struct build_plan *plan_latest(const char *index_name);
bool plan_running(const struct build_plan *p);
const char *plan_state_name(enum plan_state s);
/* How many eval queries a rebuild of mi would run (the eval file's lines, or the traffic sample). */
int plan_eval_queries(const struct vg_managed_index *mi);
void plan_shutdown(void);

#endif
