/*
 * Counters that cut across connections (stats.c): ErrorResponses clients
 * received, by SQLSTATE (the server's and vecgate's own), and latency
 * histograms of vector reads per managed index, for /metrics.
 */
#ifndef VG_PROXY_STATS_H
#define VG_PROXY_STATS_H

#include <stdint.h>

struct evbuffer;

#define LATENCY_BUCKETS 13

struct latency_hist {
	uint64_t count[LATENCY_BUCKETS]; /* per bucket, not cumulative; last = +Inf */
	uint64_t total;
	double sum;
};

void stats_error(const char *sqlstate); /* NULL or junk counts as "?????" */
void stats_observe(struct latency_hist *h, double seconds);
/* Prometheus histogram lines for one series, `labels` like index="x" */
void stats_hist_write(struct evbuffer *out, const char *name, const char *labels, const struct latency_hist *h);
void stats_metrics(struct evbuffer *out);

#endif
