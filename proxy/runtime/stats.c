/*
 * Cross-connection counters for /metrics: errors by SQLSTATE in a small
 * fixed table (distinct SQLSTATEs are few; beyond 64 they share one "other"
 * row rather than grow memory on hostile input), and fixed-bucket latency
 * histograms.
 */
#include "proxy/runtime/stats.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_SQLSTATES 64

static struct {
	char code[6];
	uint64_t n;
} errors[MAX_SQLSTATES + 1];
static int n_errors;

static const double bounds[LATENCY_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

static bool valid_sqlstate(const char *s)
{
	if (!s || strlen(s) != 5)
		return false;
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

void stats_error(const char *sqlstate)
{
	const char *code = valid_sqlstate(sqlstate) ? sqlstate : "?????";
	for (int i = 0; i < n_errors; i++) {
		if (!strcmp(errors[i].code, code)) {
			errors[i].n++;
			return;
		}
	}
	int slot = n_errors < MAX_SQLSTATES ? n_errors++ : MAX_SQLSTATES;
	if (slot == MAX_SQLSTATES)
		code = "other";
	snprintf(errors[slot].code, sizeof(errors[slot].code), "%s", code);
	errors[slot].n++;
}

void stats_observe(struct latency_hist *h, double seconds)
{
	int b = 0;
	while (b < LATENCY_BUCKETS - 1 && seconds > bounds[b])
		b++;
	h->count[b]++;
	h->total++;
	h->sum += seconds;
}

double stats_bucket_bound(int b)
{
	return b >= 0 && b < LATENCY_BUCKETS - 1 ? bounds[b] : INFINITY;
}

int stats_error_count(void)
{
	return n_errors;
}

uint64_t stats_error_at(int i, const char **sqlstate)
{
	*sqlstate = errors[i].code;
	return errors[i].n;
}
