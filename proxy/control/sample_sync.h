/*
 * Traffic samples (sample_sync.c): writes the slots of each managed index's
 * traffic sample (proxy/sampler.h) that changed to vecgate.eval_samples on
 * its primary, so rebuilds and drift checks, on any instance, can evaluate
 * on the vectors users really send; and reads them back for an eval set.
 */
#ifndef VG_PROXY_CONTROL_SAMPLE_SYNC_H
#define VG_PROXY_CONTROL_SAMPLE_SYNC_H

#define SAMPLE_FLUSH_SECONDS 2.0

/* After the route table is (re)built: the flush timer runs only while some
 * index samples traffic. */
void sample_sync_start(void);
void sample_sync_stop(void);

/* $1 managed index name -> vector (text), one row per filled slot */
extern const char SQL_SAMPLES_READ[];

#endif
