/*
 * pgvector values as bytes: the exact-scan ground truth must see the same
 * numbers the server compares, so query literals are read the way the
 * server's input function reads them (strtof, then binary16 rounding for
 * halfvec) and rows are taken from their binary send format, never from a
 * decimal rendering that could round.
 */
#include "protocol/vecfmt.h"
#include "protocol/pgproto.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float vecfmt_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
	if (exp == 0) {
		if (!man) {
			bits = sign;
		} else {
			/* subnormal: shift until the leading one becomes the implicit bit */
			uint32_t e = 0;
			while (!(man & 0x400u)) {
				man <<= 1;
				e++;
			}
			bits = sign | (113u - e) << 23 | (man & 0x3ffu) << 13;
		}
	} else if (exp == 31) {
		bits = sign | 0x7f800000u | man << 13;
	} else {
		bits = sign | (exp + 112u) << 23 | man << 13;
	}
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

uint16_t vecfmt_float_to_half(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t exp = (x >> 23) & 0xffu, man = x & 0x7fffffu;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf, or a quiet NaN */
	int e = (int)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) {
		/* a binary16 subnormal m x 2^-24; below half the smallest one it is 0 */
		uint32_t m = man | 0x800000u;
		int shift = 14 - e;
		if (exp == 0 || shift > 24)
			return sign;
		uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++; /* may carry into the smallest normal: that is its encoding */
		return (uint16_t)(sign | q);
	}
	uint32_t h = (uint32_t)sign | (uint32_t)e << 10 | man >> 13, rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++; /* a carry into the exponent is right, up to infinity */
	return (uint16_t)h;
}

int vecfmt_decode(enum vec_type t, const uint8_t *p, size_t len, float *out, size_t max_dim, size_t *dim)
{
	if (len < 4)
		return -1;
	int16_t d = pg_be16s(p);
	size_t elem = t == VEC_FLOAT16 ? 2 : 4;
	if (d < 1 || (size_t)d > max_dim || len != 4 + (size_t)d * elem)
		return -1;
	const uint8_t *e = p + 4;
	if (t == VEC_FLOAT16) {
		for (int i = 0; i < d; i++, e += 2)
			out[i] = vecfmt_half_to_float((uint16_t)((uint16_t)e[0] << 8 | e[1]));
	} else {
		for (int i = 0; i < d; i++, e += 4) {
			uint32_t bits = pg_be32(e);
			memcpy(&out[i], &bits, sizeof(float));
		}
	}
	*dim = (size_t)d;
	return 0;
}

int vecfmt_binary_to_text(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	if (len < 4 || outlen < 3)
		return -1;
	int16_t d = pg_be16s(p);
	if (d < 1 || d > VECFMT_MAX_DIM)
		return -1;
	enum vec_type t;
	if (len == 4 + (size_t)d * 4)
		t = VEC_FLOAT32;
	else if (len == 4 + (size_t)d * 2)
		t = VEC_FLOAT16;
	else
		return -1;
	size_t o = 0;
	out[o++] = '[';
	const uint8_t *e = p + 4;
	for (int i = 0; i < d; i++) {
		float f;
		if (t == VEC_FLOAT16) {
			f = vecfmt_half_to_float((uint16_t)((uint16_t)e[0] << 8 | e[1]));
			e += 2;
		} else {
			uint32_t bits = pg_be32(e);
			memcpy(&f, &bits, sizeof(f));
			e += 4;
		}
		if (!isfinite(f))
			return -1; /* NaN or infinity: no literal the server takes */
		int n = snprintf(out + o, outlen - o, "%s%.9g", i ? "," : "", (double)f);
		if (n < 0 || (size_t)n >= outlen - o)
			return -1;
		o += (size_t)n;
	}
	if (o + 2 > outlen)
		return -1;
	out[o++] = ']';
	out[o] = 0;
	return (int)o;
}

static bool vec_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int vecfmt_parse_text(enum vec_type t, const char *s, float *out, size_t max_dim, size_t *dim)
{
	const char *p = s;
	size_t n = 0;
	while (vec_space(*p))
		p++;
	if (*p++ != '[')
		return -1;
	for (;;) {
		while (vec_space(*p))
			p++;
		if (!*p || *p == ']' || *p == ',' || n == max_dim)
			return -1;
		char *end;
		errno = 0;
		float v = strtof(p, &end);
		if (end == p || !isfinite(v))
			return -1;
		if (t == VEC_FLOAT16) {
			v = vecfmt_half_to_float(vecfmt_float_to_half(v));
			if (!isfinite(v))
				return -1; /* the server's cast refuses what overflows binary16 */
		}
		out[n++] = v;
		p = end;
		while (vec_space(*p))
			p++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p != ']')
			return -1;
		p++;
		break;
	}
	while (vec_space(*p))
		p++;
	if (*p)
		return -1;
	*dim = n;
	return 0;
}

int vecfmt_decode_id(const uint8_t *p, size_t len, int64_t *out)
{
	uint64_t v = 0;
	if (len != 2 && len != 4 && len != 8)
		return -1;
	for (size_t i = 0; i < len; i++)
		v = v << 8 | p[i];
	/* sign-extend from the width it was sent with */
	unsigned bits = (unsigned)len * 8;
	if (bits < 64 && (v >> (bits - 1)) & 1)
		v |= ~(uint64_t)0 << bits;
	memcpy(out, &v, sizeof(*out));
	return 0;
}

int vecfmt_parse_id(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	if (i == len)
		return -1;
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned dgt = (unsigned)(s[i] - '0');
		if (v > (limit - dgt) / 10)
			return -1;
		v = v * 10 + dgt;
	}
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}
