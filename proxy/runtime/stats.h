/*
 * Counters that cut across connections (stats.c): ErrorResponses clients
 * received, by SQLSTATE (the server's and vecgate's own), and fixed-bucket
 * latency histograms.  Only counting lives here; the admin layer formats.
 */
#ifndef VG_PROXY_RUNTIME_STATS_H
#define VG_PROXY_RUNTIME_STATS_H

#include <stdint.h>

#define LATENCY_BUCKETS 13

struct latency_hist {
	uint64_t count[LATENCY_BUCKETS]; /* per bucket, not cumulative; last = +Inf */
	uint64_t total;
	double sum;
};

void stats_error(const char *sqlstate); /* NULL or junk counts as "?????" */
void stats_observe(struct latency_hist *h, double seconds);
double stats_bucket_bound(int b); /* upper bound of bucket b in seconds; +Inf for the last */
/* The SQLSTATE table: count, then each row's code and number of errors. */
int stats_error_count(void);
uint64_t stats_error_at(int i, const char **sqlstate);

#endif
