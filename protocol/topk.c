/*
 * Exact top-k for a whole eval set in one pass over a table.  Rows are
 * compared a block at a time so that each row, once decoded, meets every
 * query while it is still in cache, and a query's heap is touched only by
 * rows that can enter it: most candidates fail one comparison against the
 * heap's current k-th key.
 */
#include "protocol/topk.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool topk_before(double ka, int64_t ia, double kb, int64_t ib)
{
	bool na = isnan(ka), nb = isnan(kb);
	if (na != nb)
		return nb; /* every number before NaN, as PostgreSQL sorts float8 */
	if (!na && ka != kb)
		return ka < kb;
	return ia < ib;
}

static bool same_key(double a, double b)
{
	return a == b || (isnan(a) && isnan(b));
}

size_t topk_block_rows(size_t dim, size_t nq, size_t max_bytes, double max_work)
{
	size_t dpad = vdist_padded(dim ? dim : 1);
	double by_work = max_work / ((double)(nq ? nq : 1) * (double)dpad);
	size_t by_bytes = max_bytes / (dpad * sizeof(float) + sizeof(int64_t) + sizeof(float));
	size_t r = by_work < (double)by_bytes ? (size_t)by_work : by_bytes;
	if (r > 4096)
		r = 4096;
	r -= r % VDIST_ROW_GROUP;
	return r < VDIST_ROW_GROUP ? VDIST_ROW_GROUP : r;
}

int topk_block_init(struct topk_block *b, const struct topk *t)
{
	memset(b, 0, sizeof(*b));
	b->cap = t->block_rows;
	b->dpad = t->dpad;
	/* zeroed once: each row writes only its dim floats, so padding stays 0 */
	b->rows = calloc(b->cap * b->dpad, sizeof(float));
	b->xnorm = calloc(b->cap, sizeof(float));
	b->ids = calloc(b->cap, sizeof(int64_t));
	b->classes = calloc(b->cap, sizeof(uint64_t));
	if (!b->rows || !b->xnorm || !b->ids || !b->classes) {
		topk_block_free(b);
		return -1;
	}
	return 0;
}

void topk_block_free(struct topk_block *b)
{
	free(b->rows);
	free(b->xnorm);
	free(b->ids);
	free(b->classes);
	memset(b, 0, sizeof(*b));
}

size_t topk_block_memory(const struct topk_block *b)
{
	return b->cap * (b->dpad * sizeof(float) + sizeof(int64_t) + sizeof(float) + sizeof(uint64_t));
}

void topk_free(struct topk *t)
{
	free(t->queries);
	free(t->qnorm);
	free(t->heap);
	free(t->n_heap);
	free(t->ties);
	free(t->n_ties);
	free(t->ties_dropped);
	topk_block_free(&t->block);
	topk_block_free(&t->gather);
	free(t->raw);
	free(t->keys);
	memset(t, 0, sizeof(*t));
}

size_t topk_memory(const struct topk *t)
{
	size_t q = (t->nq + 1) * t->dpad * sizeof(float) + t->nq * sizeof(float);
	size_t res = t->nq * (t->k + t->tie_cap) * sizeof(struct topk_entry) + t->nq * (2 * sizeof(size_t) + 8);
	size_t scratch = TOPK_QUERY_TILE * t->block_rows * sizeof(float) + t->block_rows * sizeof(double);
	return q + res + topk_block_memory(&t->block) + topk_block_memory(&t->gather) + scratch;
}

int topk_set_classes(struct topk *t, const size_t *start, size_t n)
{
	if (!n || n > TOPK_MAX_CLASSES || start[0] != 0 || start[n] != t->nq)
		return -1;
	for (size_t c = 0; c < n; c++)
		if (start[c] >= start[c + 1])
			return -1;
	memcpy(t->class_start, start, (n + 1) * sizeof(*start));
	t->n_classes = n;
	if (n > 1 && !t->gather.rows && topk_block_init(&t->gather, t) < 0)
		return -1;
	return 0;
}

int topk_init(struct topk *t, enum vdist_metric m, size_t dim, const float *queries, size_t nq, size_t k,
              size_t tie_cap, size_t block_rows)
{
	memset(t, 0, sizeof(*t));
	if (!dim || !nq || !k || (unsigned)m > VDIST_L1)
		return -1;
	block_rows = block_rows < VDIST_ROW_GROUP ? VDIST_ROW_GROUP : block_rows - block_rows % VDIST_ROW_GROUP;
	t->metric = m;
	t->dim = dim;
	t->dpad = vdist_padded(dim);
	t->nq = nq;
	t->k = k;
	t->tie_cap = tie_cap;
	t->block_rows = block_rows;
	/* rounded up to whole query groups; the padding query is all zeros */
	size_t nq_pad = (nq + VDIST_QUERY_GROUP - 1) / VDIST_QUERY_GROUP * VDIST_QUERY_GROUP;
	t->queries = calloc(nq_pad * t->dpad, sizeof(float));
	t->qnorm = calloc(nq, sizeof(float));
	t->heap = calloc(nq * k, sizeof(struct topk_entry));
	t->n_heap = calloc(nq, sizeof(size_t));
	t->ties = calloc(nq * (tie_cap ? tie_cap : 1), sizeof(struct topk_entry));
	t->n_ties = calloc(nq, sizeof(size_t));
	t->ties_dropped = calloc(nq, sizeof(uint64_t));
	t->raw = calloc((size_t)TOPK_QUERY_TILE * block_rows, sizeof(float));
	t->keys = calloc(block_rows, sizeof(double));
	int block = topk_block_init(&t->block, t);
	if (!t->queries || !t->qnorm || !t->heap || !t->n_heap || !t->ties || !t->n_ties || !t->ties_dropped ||
	    block < 0 || !t->raw || !t->keys) {
		topk_free(t);
		return -1;
	}
	for (size_t i = 0; i < nq; i++) {
		memcpy(t->queries + i * t->dpad, queries + i * dim, dim * sizeof(float));
		t->qnorm[i] = vdist_norm2(t->queries + i * t->dpad, t->dpad);
	}
	return 0;
}

float *topk_block_slot(struct topk_block *b)
{
	assert(b->n < b->cap);
	return b->rows + b->n * b->dpad;
}

bool topk_block_commit(struct topk_block *b, int64_t id)
{
	return topk_block_commit_classes(b, id, ~(uint64_t)0);
}

bool topk_block_commit_classes(struct topk_block *b, int64_t id, uint64_t classes)
{
	assert(b->n < b->cap && classes);
	b->classes[b->n] = classes;
	b->ids[b->n++] = id;
	return b->n == b->cap;
}

float *topk_row_slot(struct topk *t)
{
	return topk_block_slot(&t->block);
}

/* ---- one query's heap (max at the root: the current k-th) ---- */

static void sift_up(struct topk_entry *h, size_t i)
{
	struct topk_entry e = h[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!topk_before(h[p].key, h[p].id, e.key, e.id))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static void sift_down(struct topk_entry *h, size_t n, size_t i)
{
	struct topk_entry e = h[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && topk_before(h[c].key, h[c].id, h[c + 1].key, h[c + 1].id))
			c++;
		if (!topk_before(e.key, e.id, h[c].key, h[c].id))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = e;
}

static void add_tie(struct topk *t, size_t i, double key, int64_t id)
{
	if (t->n_ties[i] < t->tie_cap)
		t->ties[i * t->tie_cap + t->n_ties[i]++] = (struct topk_entry){key, id};
	else
		t->ties_dropped[i]++;
}

/* A candidate that may belong in query i's top-k or among its ties. */
static void offer(struct topk *t, size_t i, double key, int64_t id)
{
	struct topk_entry *h = t->heap + i * t->k;
	size_t *n = &t->n_heap[i];
	if (*n < t->k) {
		h[*n] = (struct topk_entry){key, id};
		sift_up(h, (*n)++);
		return;
	}
	if (topk_before(key, id, h[0].key, h[0].id)) {
		struct topk_entry out = h[0];
		h[0] = (struct topk_entry){key, id};
		sift_down(h, *n, 0);
		if (same_key(out.key, h[0].key)) {
			add_tie(t, i, out.key, out.id); /* still on the boundary */
		} else {
			t->n_ties[i] = 0; /* the boundary moved closer: the old ties are out */
			t->ties_dropped[i] = 0;
		}
	} else if (same_key(key, h[0].key)) {
		add_tie(t, i, key, id);
	}
}

/* The first nr rows of b against queries [from, to). */
static void compare_rows(struct topk *t, const struct topk_block *b, size_t nr, size_t from, size_t to)
{
	size_t nr_pad = (nr + VDIST_ROW_GROUP - 1) / VDIST_ROW_GROUP * VDIST_ROW_GROUP;
	for (size_t q0 = from; q0 < to; q0 += TOPK_QUERY_TILE) {
		size_t nq = to - q0 < TOPK_QUERY_TILE ? to - q0 : TOPK_QUERY_TILE;
		size_t nq_pad = (nq + VDIST_QUERY_GROUP - 1) / VDIST_QUERY_GROUP * VDIST_QUERY_GROUP;
		/* rows past nr in the last group hold stale data, and the last
		 * query group may hold the next class's query or the zero query:
		 * computed, ignored (queries hold whole groups up to nq) */
		vdist_block(t->metric, t->queries + q0 * t->dpad, nq_pad, b->rows, nr_pad, t->dpad, t->raw, t->block_rows);
		for (size_t qi = 0; qi < nq; qi++) {
			size_t i = q0 + qi;
			vdist_keys(t->metric, t->raw + qi * t->block_rows, nr, t->qnorm[i], b->xnorm, t->keys);
			const struct topk_entry *h = t->heap + i * t->k;
			for (size_t j = 0; j < nr; j++) {
				/* a full heap whose k-th is a number takes only keys <= it */
				if (t->n_heap[i] == t->k && !(t->keys[j] <= h[0].key) && !isnan(h[0].key))
					continue;
				offer(t, i, t->keys[j], b->ids[j]);
			}
		}
	}
	t->pairs += (uint64_t)nr * (to - from);
}

void topk_compare(struct topk *t, struct topk_block *b)
{
	assert(b->cap == t->block_rows && b->dpad == t->dpad);
	size_t nr = b->n;
	if (!nr)
		return;
	if (t->metric == VDIST_COSINE)
		for (size_t j = 0; j < nr; j++)
			b->xnorm[j] = vdist_norm2(b->rows + j * t->dpad, t->dpad);
	if (t->n_classes <= 1) {
		compare_rows(t, b, nr, 0, t->nq);
	} else {
		/* each class meets its own rows, gathered (a row may be in several) */
		struct topk_block *g = &t->gather;
		for (size_t c = 0; c < t->n_classes; c++) {
			size_t ng = 0;
			for (size_t j = 0; j < nr; j++) {
				if (!(b->classes[j] >> c & 1))
					continue;
				memcpy(g->rows + ng * t->dpad, b->rows + j * t->dpad, t->dpad * sizeof(float));
				g->xnorm[ng] = b->xnorm[j];
				g->ids[ng++] = b->ids[j];
			}
			if (ng)
				compare_rows(t, g, ng, t->class_start[c], t->class_start[c + 1]);
		}
	}
	t->rows_seen += nr;
	t->blocks++;
	b->n = 0;
}

bool topk_row_commit(struct topk *t, int64_t id)
{
	if (!topk_block_commit(&t->block, id))
		return false;
	topk_compare(t, &t->block);
	return true;
}

void topk_flush(struct topk *t)
{
	topk_compare(t, &t->block);
}

static int cmp_entry(const void *a, const void *b)
{
	const struct topk_entry *x = a, *y = b;
	if (topk_before(x->key, x->id, y->key, y->id))
		return -1;
	return topk_before(y->key, y->id, x->key, x->id) ? 1 : 0;
}

size_t topk_result(const struct topk *t, size_t i, struct topk_entry *out)
{
	size_t n = t->n_heap[i];
	memcpy(out, t->heap + i * t->k, n * sizeof(*out));
	qsort(out, n, sizeof(*out), cmp_entry);
	return n;
}

size_t topk_ties(const struct topk *t, size_t i, struct topk_entry *out)
{
	size_t n = t->n_ties[i];
	if (n)
		memcpy(out, t->ties + i * t->tie_cap, n * sizeof(*out));
	qsort(out, n, sizeof(*out), cmp_entry);
	return n;
}
