/*
 * pgvector's value formats, read without the server: the binary send
 * formats of `vector` and `halfvec` as a binary COPY carries them, the text
 * literal an eval file holds ("[0.1, 0.2, ...]"), half-precision <-> float
 * conversion, and integer ids.
 *
 * Contract:
 *   - vector send format: int16 dim, int16 unused, dim x float4, big-endian.
 *     halfvec: int16 dim, int16 unused, dim x IEEE binary16, big-endian.
 *     A value whose length is not 4 + dim x element size, or whose dim is
 *     < 1 or above the caller's bound, is refused.  Elements are returned as
 *     float (binary16 -> float is exact).
 *   - Text literal: what pgvector's input function accepts for finite
 *     values: '[' elements separated by ',' ']', whitespace around each,
 *     each element read with strtof (C locale) like the server does; at least
 *     one element; NaN and infinity are refused (the server refuses them
 *     too).  For halfvec each element is then rounded to binary16 (round to
 *     nearest, ties to even) as the server's cast does, and a value that
 *     overflows binary16 is refused.
 *   - Ids: int2, int4 and int8 in binary (2, 4 or 8 bytes, big-endian) and
 *     decimal integer text; nothing else (numeric, uuid, text keys are not
 *     ids an eval set can name: the eval runner falls back for them).
 * Pure functions over buffers.
 */
#ifndef VG_PROTOCOL_VECFMT_H
#define VG_PROTOCOL_VECFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vec_type { VEC_FLOAT32 = 0, VEC_FLOAT16 = 1 }; /* pgvector vector, halfvec */

#define VECFMT_MAX_DIM 16000 /* pgvector's limit for both types */

/* Binary value -> floats.  out holds max_dim floats; *dim is set.  0, or -1. */
int vecfmt_decode(enum vec_type t, const uint8_t *p, size_t len, float *out, size_t max_dim, size_t *dim);

/* Text literal -> floats (rounded through binary16 for VEC_FLOAT16).  0, or -1. */
int vecfmt_parse_text(enum vec_type t, const char *s, float *out, size_t max_dim, size_t *dim);

/* A binary vector or halfvec (told apart by its length against its dim) as
 * the text literal the server would accept ("[x,y,...]", each float with
 * enough digits to read back exactly).  Bytes written (NUL-terminated), or
 * -1 when it is neither or does not fit in outlen. */
int vecfmt_binary_to_text(const uint8_t *p, size_t len, char *out, size_t outlen);

/* Binary int2/int4/int8 by length.  0, or -1. */
int vecfmt_decode_id(const uint8_t *p, size_t len, int64_t *out);
/* Decimal text (optional sign, digits, nothing else) -> int64.  0, or -1. */
int vecfmt_parse_id(const char *s, size_t len, int64_t *out);

float vecfmt_half_to_float(uint16_t h);
/* Round to nearest, ties to even; overflow gives infinity, as IEEE says. */
uint16_t vecfmt_float_to_half(float f);

#endif
