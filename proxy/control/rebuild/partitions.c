/*
 * The build step of a partitioned table's rebuild.  PostgreSQL builds no
 * partitioned index concurrently, so the job builds one candidate per
 * partition with CREATE INDEX CONCURRENTLY, records each in vecgate.jobs
 * (partitions_done) as it finishes, and then makes the parent candidate
 * (CREATE INDEX ... ON ONLY the table, instant) with every child attached
 * to it.  Verify, swap, rollback and the drops then treat the tree as one
 * index (steps.c, rebuild_sql.h).
 *
 * The build (re)starts from the catalog's truth, as a non-partitioned
 * resume does: at every start of the step (first run, retry, a vecgate or
 * PostgreSQL restart) the candidates are looked up, and each partition's
 * next move is part_decide()'s (routing/partitions.h): a recorded
 * candidate is kept, a valid unrecorded one only recorded, an invalid
 * unrecorded one (a build that died) dropped and built again.  A finished
 * partition is never built twice.
 *
 * Flip mode hides each candidate from the planner in the same transaction
 * that records it: a fresh graph would win the planner at once (the
 * candidate of a partition is chosen for that partition's scans like any
 * index), and traffic would move partition by partition before any gate.
 */
#include "proxy/control/rebuild/job.h"
#include "routing/gate.h"
#include "routing/indexdef.h"
#include "routing/pin_hint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTS_MAX 256

static void advance(struct rebuild_job *job);

void part_free(struct rebuild_job *job)
{
	for (int i = 0; i < job->n_parts; i++)
		free(job->parts[i].live_def);
	free(job->parts);
	job->parts = NULL;
	job->n_parts = 0;
	eval_set_free(&job->leaf_evals);
}

int part_swapped_count(const struct rebuild_job *job)
{
	int n = 0;
	for (int i = 0; i < job->n_parts; i++)
		n += job->parts[i].state == PART_SWAPPED;
	return n;
}

static bool fits_name(const char *s)
{
	return strlen(s) <= INDEX_NAME_MAX;
}

bool part_preflight(struct rebuild_job *job, const PGresult *res)
{
	int rows = PQntuples(res);
	if (rows < 1 || PQnfields(res) < 8) {
		job_event(job, JEV_FATAL, "preflight: %s.%s is partitioned but its index %s has no partition index; attach "
		          "an index to each partition first", job->schema, job->table, job->live);
		return false;
	}
	int depth = atoi(PQgetvalue(res, 0, 6)), leaves = atoi(PQgetvalue(res, 0, 7));
	if (depth > 1) {
		job_event(job, JEV_FATAL, "preflight: %s.%s has sub-partitions (partition tree %d levels deep); vecgate "
		          "rebuilds a table partitioned one level deep only (each partition a table with its own index)",
		          job->schema, job->table, depth);
		return false;
	}
	if (rows != leaves || rows > PARTS_MAX) {
		job_event(job, JEV_FATAL, "preflight: %s.%s has %d partitions but %d of them have an index attached to %s%s",
		          job->schema, job->table, leaves, rows, job->live,
		          rows > PARTS_MAX ? " (vecgate rebuilds at most 256 partitions)" : "; attach one to each first");
		return false;
	}
	part_free(job);
	job->parts = calloc((size_t)rows, sizeof(*job->parts));
	if (!job->parts) {
		job_event(job, JEV_FATAL, "out of memory");
		return false;
	}
	job->n_parts = rows;
	job->part_cur = -1;
	for (int i = 0; i < rows; i++) {
		struct job_partition *p = &job->parts[i];
		const char *ls = PQgetvalue(res, i, 0), *leaf = PQgetvalue(res, i, 1), *child = PQgetvalue(res, i, 2);
		if (!fits_name(ls) || !fits_name(leaf) || !fits_name(child)) {
			job_event(job, JEV_FATAL, "preflight: a name longer than PostgreSQL keeps in partition %s", leaf);
			return false;
		}
		snprintf(p->leaf_schema, sizeof(p->leaf_schema), "%s", ls);
		snprintf(p->leaf, sizeof(p->leaf), "%s", leaf);
		snprintf(p->live_child, sizeof(p->live_child), "%s", child);
		part_child_name(child, job->fresh, p->fresh_child, sizeof(p->fresh_child));
		part_child_name(child, job->retired, p->retired_child, sizeof(p->retired_child));
		p->live_def = strdup(PQgetvalue(res, i, 4));
		p->rows = atof(PQgetvalue(res, i, 5));
		p->base_neighbours = p->neighbours = p->base_recall = p->new_recall = NAN;
		p->gate_base_recall = p->gate_base_p95 = p->gate_recall = p->gate_p95 = p->swap_ms = NAN;
		if (!p->live_def) {
			job_event(job, JEV_FATAL, "out of memory");
			return false;
		}
		if (strcmp(PQgetvalue(res, i, 3), "t") && !job->resuming) {
			job_event(job, JEV_FATAL, "preflight: the index %s of partition %s.%s is invalid; rebuild it by hand first",
			          child, ls, leaf);
			return false;
		}
	}
	return true;
}

void part_names_of(const struct rebuild_job *job, struct part_names *n, const char **buf, int lock_timeout_ms,
                   const char *fence)
{
	int k = job->n_parts < PARTS_MAX ? job->n_parts : PARTS_MAX;
	const char **ls = buf, **leaf = buf + k, **live = buf + 2 * k, **fresh = buf + 3 * k, **retired = buf + 4 * k;
	for (int i = 0; i < k; i++) {
		ls[i] = job->parts[i].leaf_schema;
		leaf[i] = job->parts[i].leaf;
		live[i] = job->parts[i].live_child;
		fresh[i] = job->parts[i].fresh_child;
		retired[i] = job->parts[i].retired_child;
	}
	*n = (struct part_names){job->schema, job->table, job->live, job->fresh, job->retired, k, ls, leaf, live, fresh,
	                         retired, lock_timeout_ms, fence};
}

void part_progress(struct rebuild_job *job, double fraction)
{
	if (job->part_cur < 0 || job->part_cur >= job->n_parts)
		return;
	struct job_partition *p = &job->parts[job->part_cur];
	if (fraction * 100 > p->percent)
		p->percent = fraction * 100;
	p->tuples_done = job->tuples_done;
	double rows[PARTS_MAX];
	enum part_state st[PARTS_MAX];
	for (int i = 0; i < job->n_parts; i++) {
		rows[i] = job->parts[i].rows;
		st[i] = job->parts[i].state;
	}
	double pct = part_percent(rows, st, job->n_parts, p->percent / 100);
	if (pct > job->percent)
		job->percent = pct;
	/* the whole's ETA: the rate so far over what is left (partitions
	 * differ in size, so a per-partition plan would say little more) */
	double elapsed = now_sec() - job->build_started;
	job->eta_s = job->percent > 1 ? elapsed * (100 - job->percent) / job->percent : NAN;
}

/* ---- one partition at a time ---- */

static void qualified_candidate(const struct rebuild_job *job, int i, char *out, size_t len)
{
	const struct job_partition *p = &job->parts[i];
	sql_qualified(p->leaf_schema, p->fresh_child, out, len);
}

static void recorded(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	int i = job->part_cur;
	char what[300];
	job_end_failed_transaction(job, error);
	snprintf(what, sizeof(what), "cannot record the built candidate of partition %s", job->parts[i].leaf);
	if (job_step_failed(job, res, error, what))
		return;
	struct job_partition *p = &job->parts[i];
	p->state = PART_BUILT;
	p->todo = PART_DO_KEEP;
	p->percent = 100;
	log_info("rebuild %d (%s): partition %s.%s built (%s)%s", job->id, job->index_name, p->leaf_schema, p->leaf,
	         p->fresh_child, job->mode == SWAP_FLIP ? ", kept invisible to the planner until the swap" : "");
	advance(job);
}

static void record(struct rebuild_job *job, int i)
{
	char sql[4096], fence[1200];
	struct job_partition *p = &job->parts[i];
	job->part_cur = i;
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	if (sql_part_record(job->db_id, p->leaf_schema, p->leaf, p->fresh_child, job->mode == SWAP_FLIP, job->schema,
	                    job->table, fence, sql, sizeof(sql)) < 0) {
		job_event(job, JEV_FATAL, "record statement too long");
		return;
	}
	job_query(job, sql, 0, NULL, recorded);
}

static void built(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	int i = job->part_cur;
	job_build_poll_stop(job);
	char what[300];
	snprintf(what, sizeof(what), "CREATE INDEX CONCURRENTLY on partition %s failed", job->parts[i].leaf);
	if (job_step_failed(job, res, error, what))
		return;
	struct job_partition *p = &job->parts[i];
	p->build_s = now_sec() - p->build_started;
	p->todo = PART_DO_RECORD;
	record(job, i);
}

static void build(struct rebuild_job *job, int i)
{
	struct job_partition *p = &job->parts[i];
	char def[8192], err[256];
	if (job_new_definition(job, p->live_def, p->fresh_child, def, sizeof(def), err, sizeof(err)) < 0) {
		job_event(job, JEV_FATAL, "cannot derive partition %s's new definition from \"%s\": %s", p->leaf,
		          p->live_def, err);
		return;
	}
	log_info("rebuild %d: partition %d/%d: %s", job->id, i + 1, job->n_parts, def);
	job->part_cur = i;
	p->state = PART_BUILDING;
	p->percent = 0;
	p->tuples_done = 0;
	p->build_started = now_sec();
	job->build_pid = pg_session_backend_pid(job->maint.s);
	snprintf(job->phase, sizeof(job->phase), "partition %s: starting", p->leaf);
	job_build_poll_start(job);
	job_query_fenced(job, def, built);
}

static void dropped(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	char what[300];
	snprintf(what, sizeof(what), "cannot drop the half-built candidate of partition %s", job->parts[job->part_cur].leaf);
	if (job_step_failed(job, res, error, what))
		return;
	job->parts[job->part_cur].todo = PART_DO_BUILD;
	advance(job);
}

static void lookup(struct rebuild_job *job, pg_result_cb cb);

/* the candidates' oids, for the job's record (and the proof of what served) */
static void oids_read(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (job_step_failed(job, res, error, "cannot look the partitions' candidates up"))
		return;
	for (int i = 0; i < job->n_parts && i < PQntuples(res); i++) {
		snprintf(job->parts[i].fresh_oid, sizeof(job->parts[i].fresh_oid), "%s",
		         PQgetisnull(res, i, 0) ? "" : PQgetvalue(res, i, 0));
		if (strcmp(PQgetvalue(res, i, 3), "t")) {
			job_event(job, JEV_TRANSIENT, "partition %s's candidate %s is not attached after the attach",
			          job->parts[i].leaf, job->parts[i].fresh_child);
			return;
		}
		if (job->parts[i].state != PART_SWAPPED)
			job->parts[i].state = PART_ATTACHED; /* rolling: "swapped" says more */
	}
	job->parts_attached = true;
	job->part_cur = -1;
	job->percent = 100;
	job->eta_s = 0;
	snprintf(job->phase, sizeof(job->phase), "done");
	double slowest = 0;
	for (int i = 0; i < job->n_parts; i++)
		slowest = fmax(slowest, job->parts[i].build_s);
	job_event(job, JEV_STEP_OK, "built %s over %d partitions in %.1fs (slowest partition %.1fs), every partition's "
	          "candidate attached%s", job->fresh, job->n_parts, now_sec() - job->build_started, slowest,
	          job->rolling ? "; every partition gated and swapped on its own (rolling), the parents swap next"
	          : job->mode == SWAP_FLIP ? "; kept invisible to the planner until the swap" : "");
}

static void attached(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	job_end_failed_transaction(job, error);
	if (job_step_failed(job, res, error, "cannot attach the partitions' candidates under a new parent index"))
		return;
	lookup(job, oids_read);
}

static void attach(struct rebuild_job *job)
{
	const struct vg_managed_index *mi = job_index(job);
	char def[8192], parent[8192], err[256], sql[32768], fence[1200];
	const char *names[5 * PARTS_MAX];
	struct part_names n;
	if (job_new_definition(job, job->live_def, job->fresh, def, sizeof(def), err, sizeof(err)) < 0 ||
	    part_parent_def(def, parent, sizeof(parent)) < 0) {
		job_event(job, JEV_FATAL, "cannot derive the parent candidate from \"%s\": %s", job->live_def,
		          err[0] ? err : "not CREATE INDEX ... ON ONLY");
		return;
	}
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	part_names_of(job, &n, names, mi ? mi->lock_timeout_ms * 10 : 500, fence);
	if (sql_part_attach(&n, parent, sql, sizeof(sql)) < 0) {
		job_event(job, JEV_FATAL, "attach statement too long");
		return;
	}
	snprintf(job->phase, sizeof(job->phase), "attaching %d partitions", job->n_parts);
	job_query(job, sql, 0, NULL, attached);
}

/* ---- partitions: rolling: each partition's own gate and swap ---- */

static void gate(struct rebuild_job *job, int i);

static void swapped_one(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	int i = job->part_cur;
	struct job_partition *p = &job->parts[i];
	p->swap_ms = (now_sec() - job->swap_sent) * 1000.0;
	job_end_failed_transaction(job, error);
	char what[300];
	snprintf(what, sizeof(what), "cannot swap partition %s (its gate passed)", p->leaf);
	if (job_step_failed(job, res, error, what))
		return; /* a lock not had in time is transient: the retry gates it again */
	p->state = PART_SWAPPED;
	log_info("rebuild %d (%s): partition %s.%s swapped in %.2f ms: %s serves it, %s kept for rollback (%d of %d)",
	         job->id, job->index_name, p->leaf_schema, p->leaf, p->swap_ms, p->fresh_child, p->live_child,
	         part_swapped_count(job), job->n_parts);
	advance(job);
}

static void swap_one(struct rebuild_job *job, int i)
{
	const struct vg_managed_index *mi = job_index(job);
	struct job_partition *p = &job->parts[i];
	char sql[8192], fence[1200];
	sql_fence(job->index_name, job->state_pid, fence, sizeof(fence));
	if (sql_part_swap_one(job->db_id, p->leaf_schema, p->leaf, p->live_child, p->fresh_child, job->schema,
	                      job->table, fence, mi ? mi->lock_timeout_ms : 50, sql, sizeof(sql)) < 0) {
		job_event(job, JEV_FATAL, "swap statement of partition %s too long", p->leaf);
		return;
	}
	job->part_cur = i;
	snprintf(job->phase, sizeof(job->phase), "partition %s: swapping", p->leaf);
	job_query(job, "ROLLBACK", 0, NULL, NULL); /* never inside the gate's transaction (its flip is measured only) */
	job->swap_sent = now_sec();
	job_query(job, sql, 0, NULL, swapped_one);
}

static void leaf_eval(struct rebuild_job *job, int i, bool candidate);

static void measure_candidate(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (job->state != JOB_BUILD)
		return; /* cancelled or failed meanwhile: the cleanup flips back and drops */
	char what[300];
	snprintf(what, sizeof(what), "partition %s's gate", job->parts[job->part_cur].leaf);
	if (job_step_failed(job, res, error, what))
		return;
	leaf_eval(job, job->part_cur, true);
}

static void leaf_eval_done(void *arg, const struct eval_outcome *out, const char *error, bool transient)
{
	struct rebuild_job *job = arg;
	int i = job->part_cur;
	struct job_partition *p = &job->parts[i];
	if (error) {
		job_event(job, transient ? JEV_TRANSIENT : JEV_FATAL, "partition %s's gate: %s", p->leaf, error);
		return;
	}
	if (!job->leaf_candidate) {
		p->gate_base_recall = out->recall;
		p->gate_base_p95 = out->p95_ms;
		/* the candidate's run starts once this one's transaction is gone,
		 * not from inside the run's own callback */
		job_query(job, "ROLLBACK", 0, NULL, measure_candidate);
		return;
	}
	p->gate_recall = out->recall;
	p->gate_p95 = out->p95_ms;
	const struct vg_managed_index *mi = job_index(job);
	struct gate_input in = {p->gate_base_recall, p->gate_base_p95, out->recall, out->p95_ms,
	                        mi ? mi->recall_tolerance : 0, mi ? mi->latency_tolerance : 0,
	                        mi ? mi->latency_budget_ms : 0};
	struct gate_result gr;
	gate_evaluate(&in, &gr);
	if (!gr.pass) {
		p->state = PART_FAILED;
		int n = part_swapped_count(job);
		job_event(job, JEV_FATAL, "partition %s's gate refused its candidate: %s; %d partition%s swapped before it %s "
		          "flipped back to %s live index%s and every candidate dropped",
		          p->leaf, gr.reason, n, n == 1 ? "" : "s", n == 1 ? "is" : "are", n == 1 ? "its" : "their",
		          n == 1 ? "" : "es");
		return;
	}
	log_info("rebuild %d (%s): partition %s.%s's gate passed: %s (plan used %s)", job->id, job->index_name,
	         p->leaf_schema, p->leaf, gr.reason, out->plan_index ? out->plan_index : "?");
	swap_one(job, i);
}

/* One run of the job's eval query restricted to partition i: its live
 * index as the planner has it (the candidate hidden), or (candidate) the
 * candidate valid and the live index not, inside the eval transaction. */
static void leaf_eval(struct rebuild_job *job, int i, bool candidate)
{
	const struct vg_managed_index *mi = job_index(job);
	struct job_partition *p = &job->parts[i];
	if (!mi) {
		job_event(job, JEV_FATAL, "managed index %s vanished from the configuration", job->index_name);
		return;
	}
	char leaf[420], *query = malloc(strlen(mi->eval_query) + 1024), measure[2400];
	const char *why;
	sql_qualified(p->leaf_schema, p->leaf, leaf, sizeof(leaf));
	if (!query || pin_retarget(mi->eval_query, strlen(mi->eval_query), job->schema, job->table, leaf, query,
	                           strlen(mi->eval_query) + 1024, &why) < 0) {
		free(query);
		job_event(job, JEV_FATAL, "cannot restrict the eval query to partition %s: %s", p->leaf,
		          query ? why : "out of memory");
		return;
	}
	/* every run computes the partition's own truth: the set carries none */
	eval_set_free(&job->leaf_evals);
	if (eval_set_copy_untruthed(&job->leaf_evals, &job->evals) < 0) {
		free(query);
		job_event(job, JEV_FATAL, "out of memory");
		return;
	}
	struct eval_opts opts = {0};
	opts.query = query;
	opts.query_schema = p->leaf_schema;
	opts.query_table = p->leaf;
	if (candidate) {
		if (sql_measure_candidate(p->leaf_schema, p->live_child, p->fresh_child, measure, sizeof(measure)) < 0) {
			free(query);
			job_event(job, JEV_FATAL, "measure statement too long");
			return;
		}
		opts.setup_sql = measure;
		opts.expect_index = p->fresh_child;
	}
	job->part_cur = i;
	job->leaf_candidate = candidate;
	p->state = PART_VERIFYING;
	snprintf(job->phase, sizeof(job->phase), "partition %s: gate, %s", p->leaf,
	         candidate ? "measuring its candidate" : "measuring its live index");
	job->step_busy = true;
	eval_run_start(&job->eval, job->maint.s, mi, &job->leaf_evals, &opts, leaf_eval_done, job);
	free(query); /* the run keeps its own copy */
}

static void emptiness_read(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (job->state != JOB_BUILD)
		return; /* cancelled or failed meanwhile: the cleanup flips back and drops */
	int i = job->part_cur;
	struct job_partition *p = &job->parts[i];
	char what[300];
	snprintf(what, sizeof(what), "cannot read partition %s", p->leaf);
	if (job_step_failed(job, res, error, what))
		return;
	p->empty = !strcmp(PQgetvalue(res, 0, 0), "t");
	if (p->empty) {
		/* no row, no neighbour: nothing a gate could judge; its (empty)
		 * candidate takes over at once */
		log_info("rebuild %d (%s): partition %s.%s is empty: swapped without a gate", job->id, job->index_name,
		         p->leaf_schema, p->leaf);
		swap_one(job, i);
		return;
	}
	leaf_eval(job, i, false);
}

static void gate(struct rebuild_job *job, int i)
{
	struct job_partition *p = &job->parts[i];
	char sql[900], leaf[420];
	p->gate_base_recall = p->gate_base_p95 = p->gate_recall = p->gate_p95 = NAN;
	job->part_cur = i;
	p->state = PART_VERIFYING;
	sql_qualified(p->leaf_schema, p->leaf, leaf, sizeof(leaf));
	snprintf(sql, sizeof(sql), "SELECT NOT EXISTS (SELECT 1 FROM %s)", leaf);
	job_query(job, "ROLLBACK", 0, NULL, NULL); /* the eval's transaction, if one was left open */
	job_query(job, sql, 0, NULL, emptiness_read);
}

/* The next move: drops and builds partition by partition in order, then
 * the parent with every child attached. */
static void advance(struct rebuild_job *job)
{
	if (job->state != JOB_BUILD)
		return; /* cancelled or failed meanwhile: the cleanup drops the candidates */
	for (int i = 0; i < job->n_parts; i++) {
		struct job_partition *p = &job->parts[i];
		char q[700];
		switch (p->todo) {
		case PART_DO_KEEP:
			if (job->rolling && p->state != PART_SWAPPED) {
				gate(job, i); /* built: its own gate, then its swap, before the next build */
				return;
			}
			continue;
		case PART_DO_RECORD:
			record(job, i);
			return;
		case PART_DO_DROP: {
			char sql[900];
			job->part_cur = i;
			qualified_candidate(job, i, q, sizeof(q));
			snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY IF EXISTS %s", q);
			log_info("rebuild %d: dropping %s, left half-built on partition %s", job->id, q, p->leaf);
			job_query_fenced(job, sql, dropped);
			return;
		}
		case PART_DO_BUILD:
			build(job, i);
			return;
		}
	}
	attach(job);
}

static void candidates_read(void *arg, PGresult *res, const char *error)
{
	struct rebuild_job *job = arg;
	if (job_step_failed(job, res, error, "cannot look the partitions' candidates up"))
		return;
	if (PQntuples(res) != job->n_parts) {
		job_event(job, JEV_FATAL, "the partitions' candidates: %d rows for %d partitions", PQntuples(res),
		          job->n_parts);
		return;
	}
	int kept = 0;
	for (int i = 0; i < job->n_parts; i++) {
		struct job_partition *p = &job->parts[i];
		bool exists = !PQgetisnull(res, i, 0), valid = !strcmp(PQgetvalue(res, i, 1), "t");
		bool rec = !strcmp(PQgetvalue(res, i, 2), "t"), att = !strcmp(PQgetvalue(res, i, 3), "t");
		p->todo = part_decide(exists, valid, rec);
		snprintf(p->fresh_oid, sizeof(p->fresh_oid), "%s", exists ? PQgetvalue(res, i, 0) : "");
		p->state = p->todo == PART_DO_KEEP ? (att ? PART_ATTACHED : PART_BUILT) : PART_PENDING;
		/* rolling: the catalog decides, as for the build.  A recorded
		 * candidate is hidden until its swap, which makes it valid and
		 * records it in the same transaction: valid and recorded is
		 * swapped, whatever the rest says */
		if (job->rolling && p->todo == PART_DO_KEEP && valid) {
			bool rec_swapped = PQnfields(res) > 4 && !strcmp(PQgetvalue(res, i, 4), "t");
			if (!rec_swapped)
				log_warn("rebuild %d (%s): partition %s's candidate is valid but not in partitions_swapped: the "
				         "catalog says swapped", job->id, job->index_name, p->leaf);
			p->state = PART_SWAPPED;
		}
		if (p->todo == PART_DO_KEEP) {
			p->percent = 100;
			kept++;
		}
	}
	if (kept)
		log_info("rebuild %d (%s): %d of %d partitions already built (recorded in vecgate.jobs): not built again",
		         job->id, job->index_name, kept, job->n_parts);
	advance(job);
}

static void lookup(struct rebuild_job *job, pg_result_cb cb)
{
	char arr[32768], parent[700];
	const char *names[PARTS_MAX];
	char (*q)[420] = calloc((size_t)job->n_parts, sizeof(*q));
	if (!q) {
		job_event(job, JEV_FATAL, "out of memory");
		return;
	}
	for (int i = 0; i < job->n_parts; i++) {
		qualified_candidate(job, i, q[i], sizeof(q[i]));
		names[i] = q[i];
	}
	int rc = part_text_array(names, job->n_parts, arr, sizeof(arr));
	free(q);
	if (rc < 0) {
		job_event(job, JEV_FATAL, "too many partitions for one lookup");
		return;
	}
	char id[24];
	snprintf(id, sizeof(id), "%lld", job->db_id);
	sql_qualified(job->schema, job->fresh, parent, sizeof(parent));
	const char *params[] = {arr, id, parent};
	job_query(job, SQL_PART_CANDIDATES, 3, params, cb);
}

void part_build_start(struct rebuild_job *job)
{
	job->build_started = now_sec();
	job->percent = 0;
	job->eta_s = NAN;
	job->step_busy = true;
	lookup(job, candidates_read);
}
