/*
 * The recall/latency gate that decides whether a rebuilt index may replace
 * the live one: recall@k of each eval query against ground truth, latency
 * percentiles, and the pass/fail arithmetic
 *   recall_new >= recall_base - recall_tolerance
 *   p95_new    <= p95_base * (1 + latency_tolerance)  or  p95_new <= latency_budget_ms
 * A refusal says which value failed and which setting would change it.
 * Pure functions; the caller measures.
 */
#ifndef VG_ROUTING_GATE_H
#define VG_ROUTING_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Is id one of the n ids?  (k is small: a scan beats a set) */
bool id_among(int64_t id, const int64_t *ids, size_t n);
/* |top-k of got ∩ top-k of truth| / min(k, |truth|); duplicates in got count once. */
double recall_at_k(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, size_t k);
/* The same where an id in `ties` also counts as a hit: ids outside the exact
 * top-k whose distance equals the k-th one (a duplicate vector under another
 * id is as near as the neighbour it duplicates, and which of them a search
 * returns is arbitrary).  Hits never exceed min(k, |truth|). */
double recall_at_k_ties(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, const int64_t *ties,
                        size_t n_ties, size_t k);

/* Percentile p in [0,100] by linear interpolation between closest ranks;
 * sorts `samples` in place.  NaN for n == 0. */
double percentile(double *samples, size_t n, double p);

struct gate_input {
	double base_recall, base_p95_ms;
	double new_recall, new_p95_ms;
	double recall_tolerance;  /* absolute, e.g. 0.02 */
	double latency_tolerance; /* relative, e.g. 0.25 */
	double latency_budget_ms; /* absolute p95 that always passes; 0 = none */
};

struct gate_result {
	bool pass, recall_ok, latency_ok;
	double recall_floor, p95_ceiling_ms;
	char reason[512];
};

void gate_evaluate(const struct gate_input *in, struct gate_result *out);

#endif
