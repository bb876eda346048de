/*
 * Exact k-NN in C (protocol/vdist, protocol/topk): each kernel against a
 * double-precision reference, bit-equal results for equal rows wherever
 * they sit in a block, the heap's order and boundary ties against a sort of
 * every candidate, independence from the block size, blocks the caller owns
 * (topk_compare) equal to the topk's own, NaN from zero vectors
 * under cosine; and recall@k that counts boundary ties (routing/gate).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/topk.h"
#include "protocol/vdist.h"
#include "routing/gate.h"

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

/* what pgvector's operator gives, computed in double */
static double reference(enum vdist_metric m, const float *q, const float *x, size_t dim)
{
	double s = 0, nq = 0, nx = 0;
	for (size_t i = 0; i < dim; i++) {
		double a = q[i], b = x[i];
		switch (m) {
		case VDIST_L2: s += (a - b) * (a - b); break;
		case VDIST_IP:
		case VDIST_COSINE: s += a * b; break;
		case VDIST_L1: s += fabs(a - b); break;
		}
		nq += a * a;
		nx += b * b;
	}
	switch (m) {
	case VDIST_L2: return sqrt(s);
	case VDIST_IP: return -s;
	case VDIST_COSINE: return 1 - s / sqrt(nq * nx);
	case VDIST_L1: return s;
	}
	return NAN;
}

static void test_kernels_match_reference(void **state)
{
	(void)state;
	size_t dims[] = {1, 3, 15, 16, 17, 100, 384, 1000};
	for (size_t di = 0; di < sizeof(dims) / sizeof(*dims); di++) {
		size_t dim = dims[di], dpad = vdist_padded(dim), nq = 6, nr = 8;
		assert_true(dpad % VDIST_LANES == 0 && dpad >= dim && dpad < dim + VDIST_LANES);
		float *q = calloc(nq * dpad, sizeof(float)), *x = calloc(nr * dpad, sizeof(float));
		float *raw = calloc(nq * nr, sizeof(float));
		for (size_t i = 0; i < nq; i++)
			for (size_t j = 0; j < dim; j++)
				q[i * dpad + j] = frand();
		for (size_t i = 0; i < nr; i++)
			for (size_t j = 0; j < dim; j++)
				x[i * dpad + j] = frand();
		for (int m = VDIST_L2; m <= VDIST_L1; m++) {
			vdist_block((enum vdist_metric)m, q, nq, x, nr, dpad, raw, nr);
			for (size_t i = 0; i < nq; i++)
				for (size_t r = 0; r < nr; r++) {
					double key = vdist_key((enum vdist_metric)m, raw[i * nr + r], vdist_norm2(q + i * dpad, dpad),
					                       vdist_norm2(x + r * dpad, dpad));
					double got = vdist_value((enum vdist_metric)m, key);
					double want = reference((enum vdist_metric)m, q + i * dpad, x + r * dpad, dim);
					double tol = 1e-5 * (1 + fabs(want)) * sqrt((double)dim);
					if (fabs(got - want) > tol)
						fail_msg("metric %s dim %zu: %.9g vs %.9g", vdist_operator((enum vdist_metric)m), dim, got,
						         want);
				}
		}
		free(q);
		free(x);
		free(raw);
	}
	assert_int_equal(vdist_metric_of("<=>", 3), VDIST_COSINE);
	assert_int_equal(vdist_metric_of("<~>", 3), -1);
	assert_int_equal(vdist_metric_of("<->x", 4), -1);
	assert_non_null(vdist_isa());
}

/* The same row gives the same bits in every row slot of a block and for
 * every query slot, so duplicates tie exactly. */
static void test_position_independent(void **state)
{
	(void)state;
	size_t dim = 77, dpad = vdist_padded(dim), nq = 70, nr = 12;
	float *q = calloc(nq * dpad, sizeof(float)), *x = calloc(nr * dpad, sizeof(float));
	float *raw = calloc(nq * nr, sizeof(float));
	for (size_t j = 0; j < dim; j++)
		q[j] = frand();
	for (size_t i = 1; i < nq; i++)
		memcpy(q + i * dpad, q, dpad * sizeof(float));
	for (size_t j = 0; j < dim; j++)
		x[j] = frand();
	for (size_t r = 1; r < nr; r++)
		memcpy(x + r * dpad, x, dpad * sizeof(float));
	for (int m = VDIST_L2; m <= VDIST_L1; m++) {
		vdist_block((enum vdist_metric)m, q, nq, x, nr, dpad, raw, nr);
		for (size_t i = 0; i < nq * nr; i++)
			assert_memory_equal(&raw[i], &raw[0], sizeof(float));
	}
	free(q);
	free(x);
	free(raw);
}

struct cand {
	double key;
	int64_t id;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	return topk_before(x->key, x->id, y->key, y->id) ? -1 : topk_before(y->key, y->id, x->key, x->id) ? 1 : 0;
}

/* A table with duplicates (same vector, several ids) and, for cosine, zero
 * vectors, and queries of which every third is one of its rows. */
static void make_table(enum vdist_metric m, size_t dim, size_t nrows, size_t nq, float **rows_out, float **qs_out,
                       int64_t **ids_out)
{
	float *rows = calloc(nrows * dim, sizeof(float)), *qs = calloc(nq * dim, sizeof(float));
	int64_t *ids = calloc(nrows, sizeof(int64_t));
	assert_true(rows && qs && ids);
	for (size_t r = 0; r < nrows; r++) {
		ids[r] = (int64_t)(nrows - r) * 7 - 300; /* not in row order, some negative */
		if (r % 5 == 4 && r >= 5) {
			memcpy(rows + r * dim, rows + (r - 5) * dim, dim * sizeof(float)); /* a duplicate */
		} else if (m == VDIST_COSINE && r % 97 == 13) {
			/* zero vector: NaN under cosine */
		} else {
			for (size_t j = 0; j < dim; j++)
				rows[r * dim + j] = frand();
		}
	}
	for (size_t i = 0; i < nq; i++) {
		if (i % 3 == 1)
			memcpy(qs + i * dim, rows + (i * 11 % nrows) * dim, dim * sizeof(float)); /* a query on a row */
		else
			for (size_t j = 0; j < dim; j++)
				qs[i * dim + j] = frand();
	}
	*rows_out = rows;
	*qs_out = qs;
	*ids_out = ids;
}

static void free_table(float *rows, float *qs, int64_t *ids)
{
	free(rows);
	free(qs);
	free(ids);
}

/* Top-k of every query checked against sorting all candidates. */
static void check_against_sort(enum vdist_metric m, size_t dim, size_t nrows, size_t nq, size_t k, size_t block_rows)
{
	size_t dpad = vdist_padded(dim);
	float *rows, *qs;
	int64_t *ids;
	make_table(m, dim, nrows, nq, &rows, &qs, &ids);
	struct topk t;
	assert_int_equal(topk_init(&t, m, dim, qs, nq, k, 16, block_rows), 0);
	for (size_t r = 0; r < nrows; r++) {
		memcpy(topk_row_slot(&t), rows + r * dim, dim * sizeof(float));
		topk_row_commit(&t, ids[r]);
	}
	topk_flush(&t);
	assert_int_equal(t.rows_seen, nrows);

	/* reference: every candidate's key through the same kernel, one pair at a time */
	struct cand *all = calloc(nrows, sizeof(*all));
	float *qp = calloc(2 * dpad, sizeof(float)), *xp = calloc(4 * dpad, sizeof(float)), raw[8];
	struct topk_entry *res = calloc(k, sizeof(*res)), *ties = calloc(16, sizeof(*ties));
	for (size_t i = 0; i < nq; i++) {
		memcpy(qp, qs + i * dim, dim * sizeof(float));
		for (size_t r = 0; r < nrows; r++) {
			memcpy(xp, rows + r * dim, dim * sizeof(float));
			vdist_block(m, qp, 2, xp, 4, dpad, raw, 4);
			all[r] = (struct cand){vdist_key(m, raw[0], vdist_norm2(qp, dpad), vdist_norm2(xp, dpad)), ids[r]};
		}
		qsort(all, nrows, sizeof(*all), cmp_cand);
		size_t n = topk_result(&t, i, res);
		assert_int_equal(n, k < nrows ? k : nrows);
		for (size_t j = 0; j < n; j++) {
			assert_int_equal(res[j].id, all[j].id);
			assert_memory_equal(&res[j].key, &all[j].key, sizeof(double));
		}
		/* ties: the others at the k-th key, as many as the cap holds (the
		 * first met), the rest counted */
		size_t nt = topk_ties(&t, i, ties), want = 0;
		while (n + want < nrows && (all[n + want].key == all[n - 1].key ||
		                            (isnan(all[n + want].key) && isnan(all[n - 1].key))))
			want++;
		assert_int_equal(nt, want < 16 ? want : 16);
		for (size_t j = 0; j < nt; j++) {
			bool found = false;
			for (size_t w = 0; w < want && !found; w++)
				found = all[n + w].id == ties[j].id;
			assert_true(found);
			assert_true(j == 0 || ties[j - 1].id < ties[j].id);
		}
		assert_int_equal(t.ties_dropped[i], want > 16 ? want - 16 : 0);
	}
	topk_free(&t);
	free(all);
	free(qp);
	free(xp);
	free(res);
	free(ties);
	free_table(rows, qs, ids);
}

static void test_topk_exact_with_ties(void **state)
{
	(void)state;
	for (int m = VDIST_L2; m <= VDIST_L1; m++) {
		check_against_sort((enum vdist_metric)m, 24, 1000, 9, 10, 64);
		check_against_sort((enum vdist_metric)m, 3, 777, 4, 1, 4);       /* k = 1, smallest block */
		check_against_sort((enum vdist_metric)m, 40, 30, 3, 50, 1024);  /* k above the row count */
	}
}

/* Block size changes nothing: the same rows through blocks of 4 and 4096. */
static void test_block_size_independent(void **state)
{
	(void)state;
	size_t dim = 33, nq = 130, nrows = 2000, k = 7;
	float *qs = malloc(nq * dim * sizeof(float)), *rows = malloc(nrows * dim * sizeof(float));
	for (size_t i = 0; i < nq * dim; i++)
		qs[i] = frand();
	for (size_t i = 0; i < nrows * dim; i++)
		rows[i] = frand();
	struct topk a, b;
	assert_int_equal(topk_init(&a, VDIST_L2, dim, qs, nq, k, 4, 4), 0);
	assert_int_equal(topk_init(&b, VDIST_L2, dim, qs, nq, k, 4, 4096), 0);
	for (size_t r = 0; r < nrows; r++) {
		memcpy(topk_row_slot(&a), rows + r * dim, dim * sizeof(float));
		topk_row_commit(&a, (int64_t)r);
		memcpy(topk_row_slot(&b), rows + r * dim, dim * sizeof(float));
		topk_row_commit(&b, (int64_t)r);
	}
	topk_flush(&a);
	topk_flush(&b);
	assert_int_equal(a.blocks, nrows / 4);
	assert_int_equal(b.blocks, 1);
	struct topk_entry ra[7], rb[7];
	for (size_t i = 0; i < nq; i++) {
		assert_int_equal(topk_result(&a, i, ra), k);
		assert_int_equal(topk_result(&b, i, rb), k);
		assert_memory_equal(ra, rb, sizeof(ra));
	}
	assert_true(topk_memory(&b) > topk_memory(&a));
	topk_free(&a);
	topk_free(&b);
	free(qs);
	free(rows);
	/* rows per block bounded by work and by bytes */
	assert_int_equal(topk_block_rows(384, 1000, 4 << 20, 64e6) % VDIST_ROW_GROUP, 0);
	assert_true(topk_block_rows(384, 1000, 4 << 20, 64e6) <= 64e6 / (1000 * 384.0));
	assert_true(topk_block_rows(16000, 1, 4 << 20, 1e12) * 16000 * 4 <= 4 << 20);
	assert_int_equal(topk_block_rows(16000, 100000, 1024, 1), VDIST_ROW_GROUP);
	struct topk bad;
	float one[4] = {1, 2, 3, 4};
	assert_int_equal(topk_init(&bad, VDIST_L2, 0, one, 1, 1, 0, 4), -1);
	assert_int_equal(topk_init(&bad, VDIST_L2, 4, one, 1, 0, 0, 4), -1);
}

/* Two blocks the caller owns, filled in turn and compared by topk_compare
 * (as the eval's scan hands them to its thread), give exactly what the
 * topk's own block gives: entries, keys, ties, dropped ties, counters. */
static void check_blocks_equal_rows(enum vdist_metric m, size_t dim, size_t nrows, size_t nq, size_t k,
                                    size_t tie_cap, size_t block_rows)
{
	float *rows, *qs;
	int64_t *ids;
	make_table(m, dim, nrows, nq, &rows, &qs, &ids);
	struct topk one, two;
	assert_int_equal(topk_init(&one, m, dim, qs, nq, k, tie_cap, block_rows), 0);
	assert_int_equal(topk_init(&two, m, dim, qs, nq, k, tie_cap, block_rows), 0);
	struct topk_block spare, *filling = &two.block, *full = NULL;
	assert_int_equal(topk_block_init(&spare, &two), 0);
	assert_int_equal(spare.cap, two.block_rows);
	assert_int_equal(topk_block_memory(&spare), topk_block_memory(&two.block));
	for (size_t r = 0; r < nrows; r++) {
		memcpy(topk_row_slot(&one), rows + r * dim, dim * sizeof(float));
		topk_row_commit(&one, ids[r]);
		memcpy(topk_block_slot(filling), rows + r * dim, dim * sizeof(float));
		if (topk_block_commit(filling, ids[r])) {
			assert_true(topk_block_full(filling));
			/* the full block waits while the other fills, then is compared */
			if (full)
				topk_compare(&two, full);
			full = filling;
			filling = filling == &spare ? &two.block : &spare;
			assert_int_equal(filling->n, 0);
		}
	}
	if (full)
		topk_compare(&two, full);
	topk_compare(&two, filling); /* the part-filled last block */
	topk_flush(&one);
	assert_int_equal(one.rows_seen, nrows);
	assert_int_equal(two.rows_seen, nrows);
	assert_int_equal(one.blocks, two.blocks);
	assert_int_equal(filling->n, 0);
	struct topk_entry *ra = calloc(k + tie_cap + 1, sizeof(*ra)), *rb = calloc(k + tie_cap + 1, sizeof(*rb));
	for (size_t i = 0; i < nq; i++) {
		size_t na = topk_result(&one, i, ra), nb = topk_result(&two, i, rb);
		assert_int_equal(na, nb);
		assert_memory_equal(ra, rb, na * sizeof(*ra));
		na = topk_ties(&one, i, ra);
		nb = topk_ties(&two, i, rb);
		assert_int_equal(na, nb);
		if (na)
			assert_memory_equal(ra, rb, na * sizeof(*ra));
		assert_int_equal(one.ties_dropped[i], two.ties_dropped[i]);
	}
	free(ra);
	free(rb);
	topk_block_free(&spare);
	topk_free(&one);
	topk_free(&two);
	free_table(rows, qs, ids);
}

static void test_caller_blocks_equal_own_block(void **state)
{
	(void)state;
	for (int m = VDIST_L2; m <= VDIST_L1; m++) {
		check_blocks_equal_rows((enum vdist_metric)m, 24, 1000, 9, 10, 16, 64);  /* ties, last block part-filled */
		check_blocks_equal_rows((enum vdist_metric)m, 3, 777, 70, 1, 2, 4);      /* k = 1, ties beyond the cap */
		check_blocks_equal_rows((enum vdist_metric)m, 40, 30, 3, 50, 50, 1024);  /* one part-filled block */
		check_blocks_equal_rows((enum vdist_metric)m, 130, 512, 5, 5, 5, 64);    /* whole blocks only */
	}
}

/* Query classes (a filtered eval): each class's top-k over the rows of its
 * class, rows in several classes included, equals a separate topk of that
 * class's queries fed only those rows. */
static void test_classes_equal_separate(void **state)
{
	(void)state;
	const size_t dim = 20, nrows = 700, nq = 9, k = 5;
	const size_t start[] = {0, 2, 3, 9};
	for (int m = VDIST_L2; m <= VDIST_L1; m++) {
		float *rows, *qs;
		int64_t *ids;
		make_table((enum vdist_metric)m, dim, nrows, nq, &rows, &qs, &ids);
		struct topk t;
		assert_int_equal(topk_init(&t, (enum vdist_metric)m, dim, qs, nq, k, 8, 64), 0);
		assert_int_equal(topk_set_classes(&t, start, 3), 0);
		struct topk_block b;
		assert_int_equal(topk_block_init(&b, &t), 0);
		uint64_t *mask = calloc(nrows, sizeof(*mask));
		for (size_t r = 0; r < nrows; r++) {
			mask[r] = (uint64_t)1 << (r % 3);
			if (r % 7 == 0)
				mask[r] |= (uint64_t)1 << ((r + 1) % 3); /* in two classes */
			memcpy(topk_block_slot(&b), rows + r * dim, dim * sizeof(float));
			if (topk_block_commit_classes(&b, ids[r], mask[r]))
				topk_compare(&t, &b);
		}
		topk_compare(&t, &b);
		assert_int_equal(t.rows_seen, nrows);
		for (size_t c = 0; c < 3; c++) {
			struct topk sep;
			size_t cn = start[c + 1] - start[c];
			assert_int_equal(topk_init(&sep, (enum vdist_metric)m, dim, qs + start[c] * dim, cn, k, 8, 64), 0);
			size_t fed = 0;
			for (size_t r = 0; r < nrows; r++) {
				if (!(mask[r] >> c & 1))
					continue;
				memcpy(topk_row_slot(&sep), rows + r * dim, dim * sizeof(float));
				topk_row_commit(&sep, ids[r]);
				fed++;
			}
			topk_flush(&sep);
			for (size_t i = 0; i < cn; i++) {
				struct topk_entry a[5], e[5], ta[8], te[8];
				size_t na = topk_result(&t, start[c] + i, a), ne = topk_result(&sep, i, e);
				assert_int_equal(na, ne);
				for (size_t j = 0; j < na; j++) {
					assert_int_equal(a[j].id, e[j].id);
					assert_memory_equal(&a[j].key, &e[j].key, sizeof(double));
				}
				size_t nta = topk_ties(&t, start[c] + i, ta), nte = topk_ties(&sep, i, te);
				assert_int_equal(nta, nte);
				for (size_t j = 0; j < nta; j++)
					assert_int_equal(ta[j].id, te[j].id);
			}
			assert_int_equal(sep.pairs, fed * cn);
			topk_free(&sep);
		}
		topk_block_free(&b);
		topk_free(&t);
		free(mask);
		free_table(rows, qs, ids);
	}
	/* classes must cover the queries in order */
	struct topk t;
	float q[4] = {1, 2, 3, 4};
	assert_int_equal(topk_init(&t, VDIST_L2, 2, q, 2, 1, 0, 4), 0);
	const size_t bad1[] = {0, 2, 2}, bad2[] = {0, 1}, ok[] = {0, 1, 2};
	assert_int_equal(topk_set_classes(&t, bad1, 2), -1);
	assert_int_equal(topk_set_classes(&t, bad2, 1), -1);
	assert_int_equal(topk_set_classes(&t, ok, 0), -1);
	assert_int_equal(topk_set_classes(&t, ok, 2), 0);
	topk_free(&t);
}

static void test_order(void **state)
{
	(void)state;
	assert_true(topk_before(0.5, 9, 0.6, 1));
	assert_true(topk_before(0.5, 1, 0.5, 2));  /* equal distance: smaller id first */
	assert_false(topk_before(0.5, 2, 0.5, 2));
	assert_true(topk_before(-0.0, 1, 0.0, 2)); /* -0 equals 0, then by id */
	assert_true(topk_before(1e300, 5, NAN, 1)); /* every number before NaN */
	assert_false(topk_before(NAN, 1, INFINITY, 2));
	assert_true(topk_before(NAN, 1, NAN, 2));
}

static void test_recall_counts_ties(void **state)
{
	(void)state;
	int64_t truth[] = {1, 2, 3}, ties[] = {4, 5};
	int64_t got_tie[] = {1, 2, 4}, got_two_ties[] = {1, 4, 5}, got_miss[] = {1, 9, 4}, dup[] = {4, 4, 4};
	assert_true(fabs(recall_at_k_ties(got_tie, 3, truth, 3, ties, 2, 3) - 1.0) < 1e-12);
	assert_true(fabs(recall_at_k_ties(got_two_ties, 3, truth, 3, ties, 2, 3) - 1.0) < 1e-12);
	assert_true(fabs(recall_at_k_ties(got_miss, 3, truth, 3, ties, 2, 3) - 2.0 / 3) < 1e-12);
	assert_true(fabs(recall_at_k_ties(dup, 3, truth, 3, ties, 2, 3) - 1.0 / 3) < 1e-12);
	/* without ties a tie is a miss, as before */
	assert_true(fabs(recall_at_k(got_tie, 3, truth, 3, 3) - 2.0 / 3) < 1e-12);
	assert_true(fabs(recall_at_k_ties(got_tie, 3, truth, 3, NULL, 0, 3) - 2.0 / 3) < 1e-12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernels_match_reference),
		cmocka_unit_test(test_position_independent),
		cmocka_unit_test(test_topk_exact_with_ties),
		cmocka_unit_test(test_block_size_independent),
		cmocka_unit_test(test_caller_blocks_equal_own_block),
		cmocka_unit_test(test_classes_equal_separate),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_recall_counts_ties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
