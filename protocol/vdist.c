/*
 * The arithmetic of exact ground truth: Q queries against every row of a
 * table is Q x N x D multiply-adds, so the kernels are written for the
 * vectoriser.  Each pair accumulates in VDIST_LANES independent float lanes
 * (the compiler needs no reassociation licence to put them in SIMD
 * registers), and two queries meet a group of four rows at a time: eight
 * independent sums keep both FMA ports busy (one sum per register would wait
 * on its own latency) and each load feeds two or four pairs.  The blocks are
 * tiled so that a row group and a tile of queries stay in L1 together.
 */
#include "protocol/vdist.h"

#include <math.h>
#include <string.h>

/* gcc only: clang 14 does not emit a target_clones function that its own
 * translation unit does not call */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VDIST_NO_CLONES)
#if __has_attribute(target_clones)
/* one binary for every x86-64: the loader picks the widest the CPU has */
#define VDIST_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VDIST_CLONES
#define VDIST_CLONES
#endif

#define LANES VDIST_LANES

/* A fixed reduction tree, so the sum of a pair does not depend on anything
 * but its inputs. */
static inline float reduce(const float *a)
{
	float b[8], c[4], d[2];
	for (int l = 0; l < 8; l++)
		b[l] = a[l] + a[l + 8];
	for (int l = 0; l < 4; l++)
		c[l] = b[l] + b[l + 4];
	for (int l = 0; l < 2; l++)
		d[l] = c[l] + c[l + 2];
	return d[0] + d[1];
}

#define STEP_L2(acc, xr)                                                                                   \
	do {                                                                                                   \
		float d_ = qv - (xr)[j + l];                                                                       \
		(acc)[l] += d_ * d_;                                                                               \
	} while (0)
#define STEP_DOT(acc, xr) ((acc)[l] += qv * (xr)[j + l])
#define STEP_L1(acc, xr) ((acc)[l] += fabsf(qv - (xr)[j + l]))

/* two queries against four consecutive rows; inlined into each clone */
#define KERNEL_2X4(name, STEP)                                                                             \
	static inline __attribute__((always_inline)) void name(const float *restrict q, const float *restrict x, \
	                                                       size_t dpad, float *restrict out, size_t ld)     \
	{                                                                                                      \
		const float *x0 = x, *x1 = x + dpad, *x2 = x + 2 * dpad, *x3 = x + 3 * dpad;                       \
		const float *qa = q, *qb = q + dpad;                                                               \
		float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};                          \
		float b0[LANES] = {0}, b1[LANES] = {0}, b2[LANES] = {0}, b3[LANES] = {0};                          \
		for (size_t j = 0; j < dpad; j += LANES) {                                                         \
			for (int l = 0; l < LANES; l++) {                                                              \
				float qv = qa[j + l];                                                                      \
				STEP(a0, x0);                                                                              \
				STEP(a1, x1);                                                                              \
				STEP(a2, x2);                                                                              \
				STEP(a3, x3);                                                                              \
				qv = qb[j + l];                                                                            \
				STEP(b0, x0);                                                                              \
				STEP(b1, x1);                                                                              \
				STEP(b2, x2);                                                                              \
				STEP(b3, x3);                                                                              \
			}                                                                                              \
		}                                                                                                  \
		out[0] = reduce(a0);                                                                               \
		out[1] = reduce(a1);                                                                               \
		out[2] = reduce(a2);                                                                               \
		out[3] = reduce(a3);                                                                               \
		out[ld] = reduce(b0);                                                                              \
		out[ld + 1] = reduce(b1);                                                                          \
		out[ld + 2] = reduce(b2);                                                                          \
		out[ld + 3] = reduce(b3);                                                                          \
	}

KERNEL_2X4(kernel_l2, STEP_L2)
KERNEL_2X4(kernel_dot, STEP_DOT)
KERNEL_2X4(kernel_l1, STEP_L1)

/* queries per tile: the tile plus a row group fit in a 32 KiB L1 */
static size_t query_tile(size_t dpad)
{
	size_t bytes = dpad * sizeof(float), budget = 32 * 1024, rows = VDIST_ROW_GROUP * bytes;
	size_t t = rows + VDIST_QUERY_GROUP * bytes <= budget ? (budget - rows) / bytes : VDIST_QUERY_GROUP;
	return t - t % VDIST_QUERY_GROUP;
}

#define BLOCK_LOOP(kernel)                                                                                 \
	for (size_t q0 = 0; q0 < nq; q0 += tile) {                                                             \
		size_t q1 = nq - q0 < tile ? nq : q0 + tile;                                                       \
		for (size_t r = 0; r + VDIST_ROW_GROUP <= nr; r += VDIST_ROW_GROUP)                                \
			for (size_t i = q0; i + VDIST_QUERY_GROUP <= q1; i += VDIST_QUERY_GROUP)                       \
				kernel(q + i * dpad, x + r * dpad, dpad, raw + i * ld + r, ld);                            \
	}

VDIST_CLONES
void vdist_block(enum vdist_metric m, const float *q, size_t nq, const float *x, size_t nr, size_t dpad,
                 float *raw, size_t ld)
{
	size_t tile = query_tile(dpad);
	switch (m) {
	case VDIST_L2: BLOCK_LOOP(kernel_l2) break;
	case VDIST_IP:
	case VDIST_COSINE: BLOCK_LOOP(kernel_dot) break;
	case VDIST_L1: BLOCK_LOOP(kernel_l1) break;
	}
}

float vdist_norm2(const float *v, size_t dpad)
{
	float a[LANES] = {0};
	for (size_t j = 0; j < dpad; j += LANES)
		for (int l = 0; l < LANES; l++)
			a[l] += v[j + l] * v[j + l];
	return reduce(a);
}

double vdist_key(enum vdist_metric m, float raw, float qn2, float xn2)
{
	switch (m) {
	case VDIST_L2:
	case VDIST_L1: return (double)raw;
	case VDIST_IP: return -(double)raw;
	case VDIST_COSINE: {
		/* pgvector: sqrt(a * b) in double, clamped, 1 - similarity; a
		 * zero vector gives 0/0 = NaN, which sorts after every number */
		double sim = (double)raw / sqrt((double)qn2 * (double)xn2);
		if (sim > 1)
			sim = 1;
		else if (sim < -1)
			sim = -1;
		return 1.0 - sim;
	}
	}
	return NAN;
}

void vdist_keys(enum vdist_metric m, const float *raw, size_t n, float qn2, const float *xn2, double *key)
{
	switch (m) {
	case VDIST_L2:
	case VDIST_L1:
		for (size_t j = 0; j < n; j++)
			key[j] = (double)raw[j];
		return;
	case VDIST_IP:
		for (size_t j = 0; j < n; j++)
			key[j] = -(double)raw[j];
		return;
	case VDIST_COSINE:
		for (size_t j = 0; j < n; j++)
			key[j] = vdist_key(m, raw[j], qn2, xn2[j]);
		return;
	}
}

double vdist_value(enum vdist_metric m, double key)
{
	return m == VDIST_L2 ? sqrt(key) : key;
}

const char *vdist_operator(enum vdist_metric m)
{
	static const char *const ops[] = {"<->", "<#>", "<=>", "<+>"};
	return (unsigned)m < 4 ? ops[m] : "?";
}

int vdist_metric_of(const char *op, size_t len)
{
	if (len != 3)
		return -1;
	for (int m = 0; m < 4; m++)
		if (!memcmp(op, vdist_operator((enum vdist_metric)m), 3))
			return m;
	return -1;
}

const char *vdist_isa(void)
{
#if defined(VDIST_NO_CLONES) || !defined(__GNUC__) || defined(__clang__)
	/* one build: what the compiler was allowed to use */
#if defined(__AVX512F__)
	return "avx512 (built for this CPU)";
#elif defined(__AVX2__)
	return "avx2 (built for this CPU)";
#endif
#elif defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		return "avx512";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "avx2";
#endif
	return "baseline";
}
