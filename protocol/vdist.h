/*
 * Distance kernels for exact k-NN: pgvector's four float metrics between a
 * block of query vectors and a block of rows, written as plain C that gcc
 * -O3 vectorises (several float lanes per pair, no -ffast-math needed).
 *
 * Contract:
 *   - Vectors are float arrays padded with zeros to vdist_padded(dim), a
 *     multiple of VDIST_LANES; zero padding changes no metric.
 *   - vdist_block() writes raw[i * ld + j] for query i < nq and row j < nr
 *     (nq a multiple of VDIST_QUERY_GROUP and nr of VDIST_ROW_GROUP: pad the
 *     blocks with rows of any finite value and ignore their results):
 *       L2      sum (q - x)^2         (pgvector <->  is its square root)
 *       IP      sum q x               (<#> is its negation)
 *       COSINE  sum q x               (<=> needs the norms: vdist_key)
 *       L1      sum |q - x|           (<+>)
 *     accumulated in float like pgvector, over VDIST_LANES lanes reduced by a
 *     fixed tree.  Every (query, row) pair is computed by the same code
 *     whatever its position in the blocks, so equal inputs give bit-equal
 *     results: duplicate rows tie exactly.  Results are consistent with
 *     pgvector's operators within float rounding (its lane layout differs).
 *   - vdist_key() turns a raw value into the ordering key, a double that
 *     orders rows exactly as the operator's value does: L2 the squared
 *     distance (sqrt is monotonic), IP -dot, COSINE 1 - dot / sqrt(|q|^2
 *     |x|^2) clamped to [0, 2] (NaN for a zero vector, as pgvector), L1 the
 *     sum.  vdist_value() turns a key into what the operator returns.
 *   - Instruction sets: the block kernel is built for AVX-512, AVX2+FMA and
 *     baseline x86-64 (function multiversioning, chosen once at load time
 *     from the CPU), so a binary built here runs on any x86-64; other
 *     architectures get one portable build.
 * Pure functions; no allocation.
 */
#ifndef VG_PROTOCOL_VDIST_H
#define VG_PROTOCOL_VDIST_H

#include <stddef.h>

#define VDIST_LANES 16
#define VDIST_ROW_GROUP 4
#define VDIST_QUERY_GROUP 2

enum vdist_metric { VDIST_L2 = 0, VDIST_IP = 1, VDIST_COSINE = 2, VDIST_L1 = 3 };

static inline size_t vdist_padded(size_t dim)
{
	return (dim + VDIST_LANES - 1) / VDIST_LANES * VDIST_LANES;
}

void vdist_block(enum vdist_metric m, const float *q, size_t nq, const float *x, size_t nr, size_t dpad,
                 float *raw, size_t ld);

/* sum v^2 with the kernels' lane structure (cosine's norms) */
float vdist_norm2(const float *v, size_t dpad);

/* raw -> ordering key (qn2, xn2: squared norms, used by COSINE only) */
double vdist_key(enum vdist_metric m, float raw, float qn2, float xn2);
/* the same for n raw values of one query against n rows (xn2 may be NULL unless COSINE) */
void vdist_keys(enum vdist_metric m, const float *raw, size_t n, float qn2, const float *xn2, double *key);
/* ordering key -> the value of the pgvector operator */
double vdist_value(enum vdist_metric m, double key);

/* "<->", "<#>", "<=>", "<+>" */
const char *vdist_operator(enum vdist_metric m);
/* from an operator token of 3 bytes; -1 for others (<~> and <%> are bit metrics) */
int vdist_metric_of(const char *op, size_t len);
/* which kernel the CPU got: "avx512", "avx2", "baseline" */
const char *vdist_isa(void);

#endif
