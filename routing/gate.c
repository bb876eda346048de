/*
 * Recall@k, percentiles and the swap gate.  Kept free of I/O so the numbers
 * an operator sees in a refusal can be reproduced exactly in a unit test.
 */
#include "routing/gate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool id_among(int64_t id, const int64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

double recall_at_k_ties(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, const int64_t *ties,
                        size_t n_ties, size_t k)
{
	size_t want = k < n_truth ? k : n_truth;
	if (want == 0)
		return 1.0;
	size_t g = n_got < k ? n_got : k;
	size_t hits = 0;
	for (size_t i = 0; i < g; i++) {
		if (id_among(got[i], got, i))
			continue; /* a duplicate answer counts once */
		if (id_among(got[i], truth, want) || id_among(got[i], ties, n_ties))
			hits++;
	}
	return (double)(hits < want ? hits : want) / (double)want;
}

double recall_at_k(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, size_t k)
{
	return recall_at_k_ties(got, n_got, truth, n_truth, NULL, 0, k);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double percentile(double *samples, size_t n, double p)
{
	if (n == 0)
		return NAN;
	qsort(samples, n, sizeof(double), cmp_double);
	if (p <= 0)
		return samples[0];
	if (p >= 100)
		return samples[n - 1];
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)rank;
	double frac = rank - (double)lo;
	if (lo + 1 >= n)
		return samples[n - 1];
	return samples[lo] + frac * (samples[lo + 1] - samples[lo]);
}

void gate_evaluate(const struct gate_input *in, struct gate_result *out)
{
	/* a hair of slack so 0.9 - 0.02 is not refused for binary rounding */
	const double eps = 1e-9;
	out->recall_floor = in->base_recall - in->recall_tolerance;
	out->p95_ceiling_ms = in->base_p95_ms * (1.0 + in->latency_tolerance);
	if (in->latency_budget_ms > out->p95_ceiling_ms)
		out->p95_ceiling_ms = in->latency_budget_ms; /* an absolute budget lifts the relative bound */
	out->recall_ok = in->new_recall + eps >= out->recall_floor;
	out->latency_ok = in->new_p95_ms <= out->p95_ceiling_ms + eps;
	out->pass = out->recall_ok && out->latency_ok;
	char recall[200] = "", latency[300] = "";
	if (!out->recall_ok)
		snprintf(recall, sizeof(recall),
		         "recall %.4f below %.4f (baseline %.4f - recall_tolerance %.4f; recall_tolerance >= %.4f would "
		         "accept it)",
		         in->new_recall, out->recall_floor, in->base_recall, in->recall_tolerance,
		         in->base_recall - in->new_recall);
	if (!out->latency_ok)
		snprintf(latency, sizeof(latency),
		         "p95 %.2f ms above %.2f ms (baseline %.2f ms + latency_tolerance %.0f%%%s); latency_budget_ms >= "
		         "%.0f would accept it",
		         in->new_p95_ms, out->p95_ceiling_ms, in->base_p95_ms, in->latency_tolerance * 100,
		         in->latency_budget_ms > 0 ? ", above latency_budget_ms too" : "", ceil(in->new_p95_ms));
	if (out->pass)
		snprintf(out->reason, sizeof(out->reason), "recall %.4f >= %.4f and p95 %.2f ms <= %.2f ms%s",
		         in->new_recall, out->recall_floor, in->new_p95_ms, out->p95_ceiling_ms,
		         in->latency_budget_ms > 0 && in->new_p95_ms > in->base_p95_ms * (1.0 + in->latency_tolerance)
		             ? " (within latency_budget_ms)"
		             : "");
	else if (!out->recall_ok && !out->latency_ok)
		snprintf(out->reason, sizeof(out->reason), "%s and %s", recall, latency);
	else
		snprintf(out->reason, sizeof(out->reason), "%s", out->recall_ok ? latency : recall);
}
