/*
 * Keep a uniform sample of the query vectors users send, per managed
 * index, at the cost of a counter and a random number per vector read:
 * only a read the reservoir takes has its vector copied (by read_route.c,
 * from the statement's literal or its Bind parameter).
 */
#include "proxy/sampler.h"
#include "proxy/runtime/runtime.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct traffic_sample *sample_new(int size)
{
	assert(size > 0);
	struct traffic_sample *ts = calloc(1, sizeof(*ts));
	if (!ts)
		return NULL;
	ts->size = size;
	ts->vec = calloc((size_t)size, sizeof(char *));
	ts->dirty = calloc((size_t)size, 1);
	if (!ts->vec || !ts->dirty) {
		sample_free(ts);
		return NULL;
	}
	random_bytes(&ts->rng, sizeof(ts->rng));
	ts->rng |= 1;
	return ts;
}

void sample_free(struct traffic_sample *ts)
{
	if (!ts)
		return;
	for (int i = 0; ts->vec && i < ts->size; i++)
		free(ts->vec[i]);
	free(ts->vec);
	free(ts->dirty);
	free(ts);
}

/* xorshift64*: the reservoir needs uniform draws, not secrets */
static uint64_t next_random(struct traffic_sample *ts)
{
	ts->rng ^= ts->rng >> 12;
	ts->rng ^= ts->rng << 25;
	ts->rng ^= ts->rng >> 27;
	return ts->rng * 0x2545F4914F6CDD1DULL;
}

int sample_offer(struct traffic_sample *ts)
{
	ts->seen++;
	if (ts->seen <= (uint64_t)ts->size)
		return (int)(ts->seen - 1);
	uint64_t r = next_random(ts) % ts->seen;
	return r < (uint64_t)ts->size ? (int)r : -1;
}

void sample_store(struct traffic_sample *ts, int slot, const char *text, size_t len)
{
	assert(slot >= 0 && slot < ts->size);
	if (len == 0 || len > SAMPLE_MAX_TEXT) {
		ts->missed++;
		return;
	}
	char *copy = malloc(len + 1);
	if (!copy) {
		ts->missed++;
		return;
	}
	memcpy(copy, text, len);
	copy[len] = 0;
	if (!ts->vec[slot])
		ts->n_filled++;
	free(ts->vec[slot]);
	ts->vec[slot] = copy;
	if (!ts->dirty[slot]) {
		ts->dirty[slot] = 1;
		ts->n_dirty++;
	}
	ts->stored++;
}

void sample_missed(struct traffic_sample *ts)
{
	ts->missed++;
}
