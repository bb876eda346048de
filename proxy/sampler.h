/*
 * A uniform sample of the query vectors of vector reads, per managed index
 * (sampler.c): reservoir sampling, so that after n reads every read had the
 * same chance size/n to be in it.  The eval set "traffic" is drawn from it
 * (the control plane keeps it in vecgate.eval_samples).
 */
#ifndef VG_PROXY_SAMPLER_H
#define VG_PROXY_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

/* the longest vector text kept (a 2,000-d vector in text is ~20 kB) */
#define SAMPLE_MAX_TEXT (64 * 1024)

struct traffic_sample {
	int size;         /* slots */
	uint64_t seen;    /* vector reads offered */
	uint64_t stored;  /* vectors stored, replacements included */
	uint64_t missed;  /* reads taken whose vector could not be read (expression, binary, too long) */
	char **vec;       /* per slot: the vector as text, or NULL */
	uint8_t *dirty;   /* per slot: changed since the control plane last wrote it */
	int n_filled, n_dirty;
	uint64_t rng;
};

struct traffic_sample *sample_new(int size);
void sample_free(struct traffic_sample *ts);
/* One vector read: the slot its vector goes to, or -1 (not taken; the
 * common case once the reservoir is full: a counter and a random number). */
int sample_offer(struct traffic_sample *ts);
/* Store text (not NUL-terminated) in a slot sample_offer returned. */
void sample_store(struct traffic_sample *ts, int slot, const char *text, size_t len);
void sample_missed(struct traffic_sample *ts);

#endif
