/*
 * Exact top-k of many queries over a stream of rows, in one pass: rows are
 * gathered into a fixed block, the block meets every query through the
 * distance kernels (protocol/vdist.h), and each query keeps a bounded
 * max-heap of its k best (distance, id).
 *
 * Contract:
 *   - Order: ascending by the metric's ordering key (vdist_key), NaN (a zero
 *     vector under cosine) after every number, and equal keys by smaller id
 *     first.  `ORDER BY v <op> q, id` in SQL sorts the same way.
 *   - Ties at the boundary: besides its k entries each query keeps up to
 *     tie_cap ids that are not in its top-k but whose key equals the k-th
 *     key (duplicates of a neighbour under another id).  Such an id is as
 *     good an answer as the k-th one; recall counts it (routing/gate.h).
 *     More ties than tie_cap are counted in ties_dropped, not kept.
 *   - Memory, fixed at topk_init and never growing with the table:
 *       queries   (nq + 1) x (dpad + 1) x 4 bytes (padded vectors, a zero
 *                 query to make a whole query group, their norms)
 *       results   nq x (k + tie_cap) x 16 bytes
 *       row block block_rows x (dpad x 4 + 8 + 4) bytes
 *       scratch   TOPK_QUERY_TILE x block_rows x 4 + block_rows x 8 bytes
 *     with dpad = vdist_padded(dim).
 *     topk_memory() returns the total; every further row block
 *     (topk_block_init) holds topk_block_memory() more.
 *   - Work per compared block: nq x block_rows x dpad multiply-adds; the
 *     caller picks block_rows (topk_block_rows) to bound it.  With query
 *     classes (topk_set_classes) a row meets only its classes' queries.
 *   - Two ways to feed rows, with the same results:
 *       topk_row_slot / topk_row_commit / topk_flush fill the topk's own
 *       block and compare it in place when it is full;
 *       topk_block_slot / topk_block_commit fill a struct topk_block the
 *       caller owns, and topk_compare(t, b) compares it and empties it.
 *     The second lets a caller compare one block on another thread while
 *     it fills the next: topk_compare writes the heaps, the scratch, the
 *     counters and b (its norms); filling a block touches only that block.
 * Pure code: no I/O, no globals, no threads; one allocation per buffer at init.
 */
#ifndef VG_PROTOCOL_TOPK_H
#define VG_PROTOCOL_TOPK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/vdist.h"

#define TOPK_QUERY_TILE 64

struct topk_entry {
	double key;
	int64_t id;
};

#define TOPK_MAX_CLASSES 64

/* Rows gathered for one comparison with every query. */
struct topk_block {
	size_t cap;          /* rows, a multiple of VDIST_ROW_GROUP */
	size_t dpad;
	float *rows, *xnorm; /* cap x dpad floats, zero padded; cosine norms, set by topk_compare */
	int64_t *ids;
	uint64_t *classes;   /* per row: the query classes it meets (bit c), with classes */
	size_t n;            /* rows gathered, not yet compared */
};

struct topk {
	enum vdist_metric metric;
	size_t dim, dpad, nq, k, tie_cap;
	float *queries, *qnorm;      /* nq rows of dpad floats, zero padded */
	struct topk_entry *heap;     /* nq x k: query i's max-heap at heap + i*k */
	size_t *n_heap;
	struct topk_entry *ties;     /* nq x tie_cap */
	size_t *n_ties;
	uint64_t *ties_dropped;
	size_t block_rows;           /* capacity, a multiple of VDIST_ROW_GROUP */
	struct topk_block block;     /* topk_row_slot/commit's own block */
	float *raw;                  /* scratch of topk_compare */
	double *keys;
	uint64_t rows_seen;          /* rows compared so far */
	uint64_t blocks;
	uint64_t pairs;              /* (query, row) pairs compared so far */
	/* query classes (topk_set_classes): class c is queries [class_start[c],
	 * class_start[c + 1]); rows of several classes are gathered per class */
	size_t n_classes;
	size_t class_start[TOPK_MAX_CLASSES + 1];
	struct topk_block gather;
};

/* Rows per block so that one block costs at most max_work pair-dimensions
 * (nq x rows x dpad) and its rows at most max_bytes; a multiple of
 * VDIST_ROW_GROUP, at least VDIST_ROW_GROUP. */
size_t topk_block_rows(size_t dim, size_t nq, size_t max_bytes, double max_work);

/* queries: nq x dim floats, row-major.  0, or -1 when out of memory or
 * when an argument is out of range (dim, nq or k zero). */
int topk_init(struct topk *t, enum vdist_metric m, size_t dim, const float *queries, size_t nq, size_t k,
              size_t tie_cap, size_t block_rows);
void topk_free(struct topk *t);
size_t topk_memory(const struct topk *t);

/* Where the next row's dim floats go (the padding stays zero), then commit
 * it with its id; a slot not committed is simply reused.  Committing the
 * row that fills the block compares the block and returns true. */
float *topk_row_slot(struct topk *t);
bool topk_row_commit(struct topk *t, int64_t id);
/* Compare a partly filled block (end of the stream). */
void topk_flush(struct topk *t);

/* Filtered queries (an eval query with a WHERE clause whose values differ
 * between queries): the queries given to topk_init are ordered by class,
 * class c being queries [start[c], start[c + 1]) with start[0] = 0 and
 * start[n] = nq, and each row names the classes it belongs to
 * (topk_block_commit_classes): it meets only their queries.  Gathering a
 * class's rows takes one more block of memory (topk_memory counts it).
 * 0, or -1 when n is 0 or above TOPK_MAX_CLASSES, start is not
 * increasing, or out of memory. */
int topk_set_classes(struct topk *t, const size_t *start, size_t n);

/* A block of t's geometry (t->block_rows rows), empty.  0, or -1 out of memory. */
int topk_block_init(struct topk_block *b, const struct topk *t);
void topk_block_free(struct topk_block *b);
size_t topk_block_memory(const struct topk_block *b);
/* As topk_row_slot/commit, into b: commit returns true when b is full (it
 * then takes no more rows until compared). */
float *topk_block_slot(struct topk_block *b);
bool topk_block_commit(struct topk_block *b, int64_t id);
/* The same for a row of the classes in `classes` (bit c: class c; not 0). */
bool topk_block_commit_classes(struct topk_block *b, int64_t id, uint64_t classes);
static inline bool topk_block_full(const struct topk_block *b)
{
	return b->n == b->cap;
}
/* Compare b's rows (full or not, b of t's geometry) with every query and
 * empty b. */
void topk_compare(struct topk *t, struct topk_block *b);

/* Query i's top-k, best first: copies min(k, rows seen) entries to out. */
size_t topk_result(const struct topk *t, size_t i, struct topk_entry *out);
/* Query i's boundary ties (ids outside its top-k with the k-th key), by id. */
size_t topk_ties(const struct topk *t, size_t i, struct topk_entry *out);

/* The order itself, for tests and callers that merge: a before b? */
bool topk_before(double ka, int64_t ia, double kb, int64_t ib);

#endif
