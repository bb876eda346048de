/*
 * The build plan's arithmetic: what a full index build will cost, told
 * from timed trial builds on a sample of the table.  Pure functions over
 * numbers the control plane measured (proxy/control/plan.c runs the
 * trials), so the model, its fits and the verdicts are unit-tested.
 *
 * The model (details below, "the phase model").  HNSW: per-insert cost
 * curves c(i) = a * i^d fit to a trial's progress samples, one for the
 * inserts while the graph is in maintenance_work_mem and one for those
 * after pgvector's NOTICE ("hnsw graph no longer fits into
 * maintenance_work_mem after N tuples"), integrated over the full build's
 * share of each; where the full build overflows comes from builds that met
 * the NOTICE in small budgets (bytes per tuple).  IVFFlat: its phases
 * (k-means, assigning, loading, validating), each scaled by its own driver
 * from two small trials.  The older pieces
 * (bp_fit: power and linear fits over trial totals) remain for what
 * reads them (the ETA's exponent).
 */
#ifndef VG_ROUTING_BUILD_PLAN_H
#define VG_ROUTING_BUILD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#define BP_MAX_TRIALS 6

enum bp_method { BP_HNSW, BP_IVFFLAT, BP_OTHER };

enum bp_model { BP_POWER, BP_LINEAR };

struct bp_fit {
	enum bp_model model;
	int k;            /* points fit */
	double a, b;      /* power: t = a n^b; linear: t = a + b n */
	double r2;        /* coefficient of determination (in log space for the power law) */
	double sigma;     /* residual standard deviation (log space for power, seconds for linear) */
	double xbar, sxx; /* for the prediction's standard error */
};

/* Fit t(n) to k >= 2 points; -1 when the points cannot be fit (k < 2,
 * non-positive values for a power law, all n equal). */
int bp_fit(enum bp_model model, const double *n, const double *t, int k, struct bp_fit *out);
/* The fit's value at n, and a one-sigma band [lo, hi] around it (for k = 2
 * the band is the spread the fit cannot see: +-25% by convention). */
double bp_predict(const struct bp_fit *f, double n, double *lo, double *hi);

/* ---- the phase model: what one trial's progress says ----
 *
 * An HNSW build inserts tuples one by one, each insert a search of the
 * graph built so far: the cost of the i-th insert grows with i (longer
 * searches, and a working set that outgrows the CPU caches), so a build
 * is the sum of per-insert costs, not a straight line.  pgvector reports
 * tuples_done in pg_stat_progress_create_index as it inserts; sampled over
 * a trial's time it gives the per-insert cost at every graph size the
 * trial passed through, dozens of points from one build instead of three
 * noisy totals.  The cost is fit as c(i) = a * i^d (d near 0.1 to 0.2 in
 * memory), separately for the inserts before pgvector's NOTICE (the graph
 * in maintenance_work_mem) and after it (the rest inserted into the index
 * on disk, several times slower and growing faster with the graph), and
 * the full build is the integral of each phase over its share of the
 * table. */

struct bp_sample {
	double t; /* seconds since the trial's build started */
	double n; /* tuples_done then */
};

struct bp_rate {
	double a, d;  /* c(i) = a * i^d seconds per insert at graph size i */
	double se_d;  /* the standard error of d (0: not measured) */
	int k;        /* windows fit */
	bool ok;
};

/* Fit c(i) over the samples whose tuples_done lies in [lo, hi] (sorted by
 * t): windows of consecutive samples, each at least 1/40 of the range, the
 * rate of each a point at its middle; d is kept within [0, 1] (a per-insert
 * cost that falls, or grows faster than the graph, is noise).  -1 when
 * fewer than two samples fall in the range. */
int bp_fit_rate(const struct bp_sample *s, int k, double lo, double hi, struct bp_rate *out);
/* How far to believe a measured d.  The windows' own standard error
 * understates how much d moves between two identical builds on a shared
 * server, where the load drifts over a trial's seconds: measured on the
 * bench machine (2 shared cores, another test suite running), three builds
 * of the same 20,000 rows in memory gave d = 0.08, 0.22 and 0.54, while the
 * totals of full and trial builds agreed on an exponent of 1.23 to 1.35
 * (d 0.23 to 0.35), as did the progress of a whole 200,000-row build (d
 * 0.25 to 0.33 over 10k to 200k).  So d is combined, by inverse variance,
 * with a prior: the measured d with its standard error widened by
 * BP_D_SPREAD, the prior with BP_D_PRIOR_SD.  On a quiet server the
 * measured d still moves the result; on a busy one the prior holds it. */
#define BP_D_SPREAD 0.2
#define BP_D_PRIOR_SD 0.1
#define BP_D_PRIOR_MEMORY 0.3 /* in memory: a longer search and a working set outgrowing the CPU caches */
/* On disk the slope within a trial says little about how the cost of an
 * insert grows from the trial to the build.  Three bench runs of the same
 * cliff case (200k rows, 57 MB; trials of 20k rows in the sample's share,
 * on disk from 4k tuples): the trials' own on-disk slopes were 0.33, 0.63
 * and 0.60, while the builds' mean cost per on-disk insert over the trials'
 * (3.29 over 1.16, 3.14 over 1.33, 3.04 over 1.43 ms, at ten times the
 * graph) gave exponents of 0.45, 0.37 and 0.33: the build's cost held
 * still and the steeper trials were the ones predicted 44 and 58% high.
 * So on disk the measured slope is given a spread that leaves it about 1%
 * of the weight, and the prior is the exponent between scales, 0.4
 * (with it the three runs come out -11%, +6% and +19%, from +3%, +40%
 * and +55%). */
#define BP_D_SPREAD_DISK 1.0
#define BP_D_PRIOR_DISK 0.4
/* r.d combined with the prior d0 (see above), the measured d's standard
 * error widened by spread; r.a re-anchored so the fit still spends the
 * measured seconds over [from, to]. */
void bp_rate_shrink(struct bp_rate *r, double d0, double spread, double from, double to);

/* The seconds of inserts from graph size `from` to `to` under r
 * (the integral of c); d_shift moves d by that much (the band), keeping
 * the fit's value at `pivot`, the middle of what it saw. */
double bp_rate_seconds(const struct bp_rate *r, double from, double to);
double bp_rate_seconds_shifted(const struct bp_rate *r, double from, double to, double d_shift, double pivot);

/* An HNSW build of `rows` tuples: in memory up to cliff (0: the graph
 * fits), then on disk; the flushes (the graph written out at the cliff
 * or at the end) per tuple of what they write. */
struct bp_hnsw_model {
	double rows;
	double cliff;               /* the full build's overflow point, 0 = fits */
	struct bp_rate mem, disk;   /* disk.ok false: no trial went on disk */
	double mem_pivot, disk_pivot; /* graph sizes at the middle of what each fit saw */
	double flush_per_tuple;     /* after the inserts, per row: the final flush, CONCURRENTLY's validation */
	double cliff_flush_per_tuple; /* the flush at the cliff, per tuple in memory */
	double disk_factor;         /* no disk fit: disk inserts this many times the in-memory cost */
};
/* Seconds, with a band from the fits' slope errors (lo, hi may be NULL). */
double bp_hnsw_predict(const struct bp_hnsw_model *m, double *lo, double *hi);

/* ---- IVFFlat: a component model (pgvector ivfbuild.c, ivfkmeans.c) ----
 *
 * pgvector builds an IVFFlat index in phases it names in
 * pg_stat_progress_create_index, each driven by something else:
 *  - "performing k-means": a reservoir sample of n_k = min(rows,
 *    max(50 x lists, 10000)) rows, read one heap block at a time (up to
 *    n_k blocks, each its own little scan), then k-means++ seeding (n_k x
 *    lists distances) and Elkan's iterations until no sample changes list.
 *    The iterations' count, hence the cost per sample x list pair, depends
 *    on the samples per list (rho = n_k / lists), not on the scale: a
 *    trial with lists / s centers on n_k / s rows keeps rho and costs 1/s^2
 *    of the build's k-means.
 *  - "assigning tuples": every row's distance to every center, then the
 *    tuplesort: rows x (a scan's cost + lists x a distance).
 *  - "loading tuples": the sorted tuples written into the lists' pages:
 *    linear in rows.
 * CREATE INDEX CONCURRENTLY adds a validation pass (linear in rows, 1 to
 * 3% of the build) and waits for other transactions (not the build's
 * cost); the trials run without it (plan.c says why), so neither is in
 * the prediction.  So two trials on one small sample: one with the
 * build's own lists (the per-row cost of assigning at the real lists,
 * loading) and one with lists cut to keep the build's samples per list
 * (the cost of a k-means pair). */
enum bp_phase { BP_PH_OTHER, BP_PH_WAIT, BP_PH_KMEANS, BP_PH_ASSIGN, BP_PH_LOAD, BP_PH_VALIDATE, BP_PH_N };
/* pg_stat_progress_create_index's phase text as one of the above. */
enum bp_phase bp_phase_of(const char *name);
/* The seconds a build spent in each phase, from progress samples (phase[i]
 * an enum bp_phase, seen at s[i].t with s[i].n tuples done) and the
 * build's end: the time between two samples of different phases is split
 * half and half, the time before the first sample goes to its phase, after
 * the last to the last's.  Loading ends when tuples_done reaches `tuples`
 * (0: not known), though the phase's name stays until the statement moves
 * on: what follows (the sort's end, the build's commit, per build, not per
 * row) is BP_PH_OTHER.  Scaled by rows, a trial's 50 ms of it became 5 s
 * of a 1M-row build's 2 s of loading in the bench. */
void bp_phase_seconds(const struct bp_sample *s, const unsigned char *phase, int k, double end, double tuples,
                      double out[BP_PH_N]);

/* pgvector's k-means sample for lists on a table of rows. */
double bp_ivfflat_samples(int lists, double rows);
/* The trials' sizes.  The main trial (the build's lists) on a fifth of
 * pgvector's k-means sample, at least BP_IVF_MIN_ROWS so that assigning
 * and loading take 10 ms or more each (the phases are told apart by polls
 * 2 to 5 ms apart; more rows buy little precision and cost much, since a
 * trial's own k-means at the build's lists costs three times its
 * assigning and loading); when that is all of the build's k-means sample,
 * the main trial runs the build's k-means too and there is no k-means
 * trial (kmeans_rows 0).  Otherwise the k-means trial, with lists cut to
 * keep the build's samples per list, a 25th of the build's k-means pairs
 * but at least BP_IVF_MIN_PAIRS (about 20 ms: measured on 200k rows, the
 * build's time per pair held within 10% from 80,000 pairs to 2M).  When
 * the two trials' rows are within a quarter of each other, both build the
 * k-means trial's rows: one sample, no second copy.  Both at most max_rows
 * (the sample fraction) and the table; the main trial never under twice
 * the lists (fewer samples than lists: pgvector warns of "little data" and
 * pads the centers at random, not the k-means the build runs). */
#define BP_IVF_SCALE 5
#define BP_IVF_MIN_ROWS 3000.0 /* was 10,000 with 10 ms polls: a plan cost a quarter of a 2 s build */
#define BP_IVF_MIN_PAIRS 100000.0
struct bp_ivf_sizes {
	double main_rows, kmeans_rows;
	int kmeans_lists;
};
void bp_ivfflat_trials(int lists, double rows, double max_rows, struct bp_ivf_sizes *out);

/* Reading a heap block for pgvector's sample costs about this many k-means
 * pairs (each block is a scan of its own: a snapshot, an executor state).
 * Measured on the bench machine: 10,000 sampled blocks of a 200k-row table
 * took 0.19 to 0.58 s more than the same k-means on a 10,000-row table,
 * while a k-means pair at 50 samples per list took 165 to 340 ns, both
 * moving with the load together: 150 to 250 pairs a block. */
#define BP_IVF_BLOCK_PAIRS 200.0

struct bp_ivf_trial {
	double rows, pages; /* the trial's table */
	int lists;
	double phase_s[BP_PH_N];
};
struct bp_ivf_model {
	double rows, pages; /* the real table */
	int lists;
	struct bp_ivf_trial kmeans; /* lists cut, the build's samples per list; rows 0: the main trial's k-means is the build's */
	struct bp_ivf_trial main;   /* the build's lists */
};
struct bp_ivf_parts {
	double pair_s;      /* one k-means sample x list pair */
	double sample_s, kmeans_s, assign_s, load_s, fixed_s;
};
/* Seconds of the full build, its parts (may be NULL), and a band: the
 * k-means part is carried over a factor of BP_IVF_SCALE^2 from a trial of
 * a few hundred milliseconds, so -30%/+50% of it; the rest, measured on
 * the build's own lists and scaled by rows, +-15%. */
double bp_ivfflat_predict(const struct bp_ivf_model *m, struct bp_ivf_parts *parts, double *lo, double *hi);

/* Sample sizes for `count` trials growing by 2x up to fraction * total,
 * each at least min_rows (and at most total); returns how many. */
int bp_sample_sizes(double total, double fraction, double min_rows, int count, double *out);
/* The HNSW graph's memory from where builds overflowed: k points of
 * (maintenance_work_mem in kB, the tuples it held at pgvector's NOTICE).
 * pgvector counts a fixed part besides the elements, which a small budget
 * feels most, so with two budgets a line bytes = fixed + per_tuple * n
 * separates them; with one (or a line that makes no sense) the largest
 * budget's ratio, fixed 0 (the line is fit through the first
 * BP_MAX_TRIALS points).  -1 without a point. */
int bp_graph_memory(const double *kb, const double *tuples, int k, double *per_tuple, double *fixed);

/* A trial's maintenance_work_mem (kB): the full build's, scaled by
 * n / total, never under floor_kb (PostgreSQL's minimum is 1024). */
long bp_trial_mwm_kb(long mwm_kb, double n, double total, long floor_kb);

/* "hnsw graph no longer fits into maintenance_work_mem after N tuples":
 * true with *tuples set when msg is that NOTICE. */
bool bp_parse_cliff_notice(const char *msg, long long *tuples);
/* What an operator should do about a NOTICE/WARNING of a build, or NULL. */
const char *bp_notice_advice(const char *msg);

/* IVFFlat's k-means working set (pgvector ivfkmeans.c): the build fails
 * with "memory required is ..." when maintenance_work_mem is smaller. */
double bp_ivfflat_kmeans_bytes(int lists, int dims, double rows);
/* IVFFlat's tuple sort of rows: each a list number and the vector, with
 * the sort's own overhead; more than maintenance_work_mem spills. */
double bp_ivfflat_sort_bytes(int dims, double rows);

/* How many parallel workers PostgreSQL plans for CREATE INDEX on a heap
 * of heap_pages (plan_create_index_workers): by size from
 * min_parallel_table_scan_size (pages), capped by
 * max_parallel_maintenance_workers, then cut until every participant
 * has 32 MB of maintenance_work_mem.  reloption < 0 when not set. */
int bp_parallel_workers(double heap_pages, int max_workers, long mwm_kb, double min_scan_pages, int reloption);
/* The workers pgvector's HNSW build launches: none when PostgreSQL plans
 * none (the table under min_parallel_table_scan_size, or less than 32 MB
 * of maintenance_work_mem per participant), else the table's
 * parallel_workers reloption or max_parallel_maintenance_workers, whichever
 * is set (hnswbuild.c ComputeParallelWorkers: not PostgreSQL's count by
 * size). */
int bp_hnsw_workers(double heap_pages, int max_workers, long mwm_kb, double min_scan_pages, int reloption);

/* A build in flight: its remaining seconds from the plan's prediction and
 * the live progress (tuples done of total), following the fitted curve:
 * under t ~ n^b, the first share p of the inserts takes p^b of the time.
 * After the memory cliff (cliff_tuples > 0, done past it) the rate
 * measured since the cliff carries the rest.  NAN when nothing is known. */
struct bp_eta_in {
	double predicted_s;    /* the plan's full build, or NAN */
	double exponent;       /* the fit's b (1 for linear / unknown) */
	double elapsed_s;      /* since the build started */
	double done, total;    /* tuples (or blocks) done of total */
	double cliff_tuples;   /* where the graph stopped fitting, 0 = not (yet) */
	double cliff_elapsed_s; /* elapsed when it did */
};
double bp_eta(const struct bp_eta_in *in);

/* The plan's verdict against the limits an operator set: refused (true)
 * with the reason naming the setting that fixes it. */
struct bp_limits {
	double mwm_bytes, peak_bytes;       /* peak NAN: not measured */
	bool cliff;                         /* the graph would not fit maintenance_work_mem */
	double free_bytes, need_bytes;      /* free NAN: not known */
	double max_build_s, predicted_s;    /* max 0: no window */
};
bool bp_refuse(const struct bp_limits *l, char *why, size_t len);
/* Which limit the plan is over (the first of memory, disk, window), and
 * the setting an operator changes to fix it. */
enum bp_over { BP_OVER_NONE, BP_OVER_MEMORY, BP_OVER_DISK, BP_OVER_WINDOW };
enum bp_over bp_check(const struct bp_limits *l, char *why, size_t len);
const char *bp_over_setting(enum bp_over o);

/* n bytes as "12.3 MB" / "1.20 GB" (kB for small). */
void bp_bytes_str(double bytes, char *out, size_t len);

#endif
