/*
 * A partitioned table's rebuild, as pure decisions: which partition's
 * candidate to build next, what a candidate found in the catalog means
 * after a restart (the catalog and the job's record of finished
 * partitions are the truth), the whole build's progress weighted by each
 * partition's rows, and the names of each partition's candidate and
 * retired index.  The SQL lives in rebuild_sql.h; the coordinator in
 * proxy/control/rebuild/ runs it.
 */
#ifndef VG_ROUTING_PARTITIONS_H
#define VG_ROUTING_PARTITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* one partition's candidate, in the order it moves */
enum part_state {
	PART_PENDING,  /* no candidate yet (or one to drop first) */
	PART_BUILDING, /* CREATE INDEX CONCURRENTLY running */
	PART_BUILT,    /* built and recorded in vecgate.jobs (flip mode: hidden from the planner) */
	PART_ATTACHED, /* attached to the parent candidate */
	/* partitions: rolling, after built: */
	PART_VERIFYING, /* its own gate runs (the eval restricted to the partition) */
	PART_SWAPPED,   /* passed and swapped: its candidate serves the partition */
	PART_FAILED,    /* its gate refused the candidate: the job failed here */
	PART_STATE_COUNT
};
const char *part_state_name(enum part_state s);

/* What a partition's candidate found in the catalog at the start of (or
 * back in) the build step means:
 *   PART_DO_BUILD    none there: build it
 *   PART_DO_DROP     there, not valid and not recorded: a build that died
 *                    (or was cancelled) left it; drop it, then build
 *   PART_DO_RECORD   valid but not recorded: its build finished and the
 *                    record (with the hide, in flip mode) did not commit;
 *                    write the record, no rebuild
 *   PART_DO_KEEP     recorded (flip mode hides it, so valid says nothing):
 *                    built, attached or not */
enum part_do { PART_DO_BUILD, PART_DO_DROP, PART_DO_RECORD, PART_DO_KEEP };
enum part_do part_decide(bool exists, bool valid, bool recorded);

/* The whole build's percent (0..100): each partition weighs its rows
 * (reltuples; an empty or never analysed one weighs 1 so it still counts),
 * built ones count whole, the one building counts its fraction (0..1). */
double part_percent(const double *rows, const enum part_state *st, int n, double building_fraction);

/* The rebuild suffix a derived name ends with ("_vg12", "_vgold12"), or ""
 * when it has none.  out holds at least 24 bytes. */
void part_name_suffix(const char *derived, char *out, size_t outlen);
/* A partition's candidate (or retired) index: its live index's name with
 * the parent candidate's (or retired index's) suffix, never cut into a
 * collision (index_derived_name).  outlen > INDEX_NAME_MAX. */
void part_child_name(const char *live_child, const char *parent_derived, char *out, size_t outlen);

/* The parent candidate's statement from the rewritten definition
 * ("CREATE INDEX CONCURRENTLY name ON ONLY ..."): PostgreSQL builds no
 * partitioned index concurrently, and one ON ONLY the parent is instant
 * (no rows of its own), so it becomes "CREATE INDEX IF NOT EXISTS name ON
 * ONLY ...", safe to run again.  0, or -1 when def is not of that form. */
int part_parent_def(const char *def, char *out, size_t outlen);

/* Each partition's recall, from the whole table's eval run: query by
 * query, each true neighbour (the first min(k, n_truth) of truth, as
 * recall_at_k_ties counts them) weighs 1 in want[] of the partition it
 * lives in (truth_part[j]; -1 or out of range: counted nowhere), and each
 * answer among them 1 in hits[] of the same partition.  An answer that is
 * a boundary tie stands in for a true neighbour the answers missed, the
 * last missed one first (the one at the k-th distance), and counts in that
 * neighbour's partition.  So, summed over partitions, hits and want are the
 * whole run's (with every neighbour's partition known), and a partition's
 * recall is hits/want over the queries: the whole recall split by where
 * the true neighbours live, with no further query. */
void part_recall_add(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, const int64_t *ties,
                     size_t n_ties, size_t k, const int *truth_part, int n_parts, double *hits, double *want);
/* hits/want, or NAN for a partition holding none of the true neighbours
 * (an empty partition): no number to read as a recall. */
double part_recall_of(double hits, double want);

/* A text[] literal of these strings ({"a","b"}), for a query parameter.
 * 0, or -1 when it does not fit. */
int part_text_array(const char *const *items, int n, char *out, size_t outlen);

#endif
