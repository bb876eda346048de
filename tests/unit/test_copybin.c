/*
 * The binary COPY decoder (protocol/copybin) against streams cut at every
 * byte position (one tuple must come out exactly once, whatever the split),
 * and against each kind of malformed input it must refuse; plus the value
 * formats it carries for the exact scan (protocol/vecfmt): pgvector's
 * vector and halfvec send formats, text literals, binary16 rounding, ids.
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

#include "protocol/copybin.h"
#include "protocol/vecfmt.h"

/* ---- building streams ---- */

struct sbuf {
	uint8_t b[8192];
	size_t n;
};

static void put(struct sbuf *s, const void *p, size_t n)
{
	assert_true(s->n + n <= sizeof(s->b));
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put16(struct sbuf *s, int v)
{
	uint8_t b[2] = {(uint8_t)((unsigned)v >> 8), (uint8_t)v};
	put(s, b, 2);
}

static void put32(struct sbuf *s, int64_t v)
{
	uint32_t u = (uint32_t)v;
	uint8_t b[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
	put(s, b, 4);
}

static void put64(struct sbuf *s, int64_t v)
{
	put32(s, (int64_t)((uint64_t)v >> 32));
	put32(s, (int64_t)(uint32_t)v);
}

static void header(struct sbuf *s, uint32_t flags, int32_t ext)
{
	put(s, "PGCOPY\n\377\r\n\0", 11);
	put32(s, flags);
	put32(s, ext);
	for (int i = 0; i < ext; i++)
		put(s, "x", 1);
}

/* a pgvector `vector` value */
static void put_vector(struct sbuf *s, const float *v, int dim)
{
	put32(s, 4 + 4 * dim);
	put16(s, dim);
	put16(s, 0);
	for (int i = 0; i < dim; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		put32(s, u);
	}
}

/* id (int8), embedding (vector) rows; row 3 has a NULL vector */
static void sample_stream(struct sbuf *s, int rows, int ext)
{
	memset(s, 0, sizeof(*s));
	header(s, 0x0000beef, ext); /* low flag bits are to be ignored */
	for (int r = 0; r < rows; r++) {
		put16(s, 2);
		put32(s, 8);
		put64(s, 1000 + r);
		if (r == 3) {
			put32(s, -1);
		} else {
			float v[3] = {(float)r, -0.5f * (float)r, 1e-3f};
			put_vector(s, v, 3);
		}
	}
	put16(s, -1);
}

/* ---- collecting tuples ---- */

struct seen {
	int tuples;
	int64_t ids[64];
	float vec[64][3];
	bool null_vec[64];
	int abort_at;
};

static int on_tuple(void *arg, int nfields, const struct copybin_field *f)
{
	struct seen *s = arg;
	assert_int_equal(nfields, 2);
	assert_true(s->tuples < 64);
	int64_t id;
	assert_int_equal(vecfmt_decode_id(f[0].p, (size_t)f[0].len, &id), 0);
	s->ids[s->tuples] = id;
	if (f[1].len < 0) {
		assert_null(f[1].p);
		s->null_vec[s->tuples] = true;
	} else {
		size_t dim;
		assert_int_equal(vecfmt_decode(VEC_FLOAT32, f[1].p, (size_t)f[1].len, s->vec[s->tuples], 3, &dim), 0);
		assert_int_equal(dim, 3);
	}
	s->tuples++;
	return s->abort_at && s->tuples == s->abort_at;
}

static void check_sample(const struct seen *s, int rows)
{
	assert_int_equal(s->tuples, rows);
	for (int r = 0; r < rows; r++) {
		assert_int_equal(s->ids[r], 1000 + r);
		assert_int_equal(s->null_vec[r], r == 3);
		if (r != 3) {
			assert_true(s->vec[r][0] == (float)r);
			assert_true(s->vec[r][1] == -0.5f * (float)r);
			assert_true(s->vec[r][2] == 1e-3f);
		}
	}
}

/* feed the stream in pieces cut at the given offsets */
static enum copybin_status feed_split(const struct sbuf *s, const size_t *cuts, int ncuts, struct seen *seen,
                                      size_t max_tuple)
{
	struct copybin d;
	assert_int_equal(copybin_init(&d, max_tuple, 4), 0);
	size_t at = 0;
	enum copybin_status st = COPYBIN_OK;
	for (int i = 0; i <= ncuts && st >= 0; i++) {
		size_t end = i < ncuts ? cuts[i] : s->n;
		st = copybin_feed(&d, s->b + at, end - at, on_tuple, seen);
		at = end;
	}
	if (st >= 0)
		st = copybin_finish(&d);
	copybin_free(&d);
	return st;
}

static void test_whole_and_every_split(void **state)
{
	(void)state;
	struct sbuf s;
	for (int ext = 0; ext <= 5; ext += 5) {
		sample_stream(&s, 6, ext);
		struct seen seen = {0};
		assert_int_equal(feed_split(&s, NULL, 0, &seen, 4096), COPYBIN_DONE);
		check_sample(&seen, 6);
		/* two pieces, cut at every position */
		for (size_t cut = 0; cut <= s.n; cut++) {
			memset(&seen, 0, sizeof(seen));
			size_t cuts[] = {cut};
			assert_int_equal(feed_split(&s, cuts, 1, &seen, 4096), COPYBIN_DONE);
			check_sample(&seen, 6);
		}
		/* three pieces, every pair of positions */
		for (size_t a = 0; a <= s.n; a++)
			for (size_t b = a; b <= s.n; b += 3) {
				memset(&seen, 0, sizeof(seen));
				size_t cuts[] = {a, b};
				assert_int_equal(feed_split(&s, cuts, 2, &seen, 4096), COPYBIN_DONE);
				check_sample(&seen, 6);
			}
		/* one byte at a time */
		size_t cuts[sizeof(s.b)];
		for (size_t i = 0; i < s.n; i++)
			cuts[i] = i;
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(feed_split(&s, cuts, (int)s.n, &seen, 4096), COPYBIN_DONE);
		check_sample(&seen, 6);
	}
}

static void test_empty_table_and_zero_length_field(void **state)
{
	(void)state;
	struct sbuf s = {0};
	header(&s, 0, 0);
	put16(&s, -1);
	struct seen seen = {0};
	assert_int_equal(feed_split(&s, NULL, 0, &seen, 4096), COPYBIN_DONE);
	assert_int_equal(seen.tuples, 0);

	/* a zero-length value is not NULL */
	struct copybin d;
	assert_int_equal(copybin_init(&d, 4096, 4), 0);
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	put16(&s, 1);
	put32(&s, 0);
	put16(&s, -1);
	assert_int_equal(copybin_feed(&d, s.b, s.n, NULL, NULL), COPYBIN_DONE);
	assert_int_equal(d.tuples, 1);
	copybin_free(&d);
}

static enum copybin_status decode_all(const struct sbuf *s, size_t max_tuple)
{
	struct copybin d;
	assert_int_equal(copybin_init(&d, max_tuple, 4), 0);
	enum copybin_status st = copybin_feed(&d, s->b, s->n, NULL, NULL);
	if (st >= 0)
		st = copybin_finish(&d);
	copybin_free(&d);
	return st;
}

/* every malformed stream is refused, whole and split anywhere */
static void expect_refused(const struct sbuf *s, enum copybin_status want, size_t max_tuple)
{
	struct copybin d;
	assert_int_equal(decode_all(s, max_tuple), want);
	for (size_t cut = 0; cut <= s->n; cut++) {
		assert_int_equal(copybin_init(&d, max_tuple, 4), 0);
		enum copybin_status st = copybin_feed(&d, s->b, cut, NULL, NULL);
		if (st >= 0)
			st = copybin_feed(&d, s->b + cut, s->n - cut, NULL, NULL);
		if (st >= 0)
			st = copybin_finish(&d);
		assert_int_equal(st, want);
		/* sticky (a truncated stream is not an error until it is declared over) */
		if (want != COPYBIN_TRUNCATED) {
			assert_int_equal(copybin_feed(&d, s->b, 1, NULL, NULL), want);
			assert_int_equal(copybin_finish(&d), want);
		}
		copybin_free(&d);
	}
}

static void test_malformed(void **state)
{
	(void)state;
	struct sbuf s;
	/* signature: each of its bytes wrong */
	for (int i = 0; i < 11; i++) {
		sample_stream(&s, 2, 0);
		s.b[i] ^= 0x20;
		expect_refused(&s, COPYBIN_BAD_SIGNATURE, 4096);
	}
	/* critical flag bits (16 = OIDs) */
	for (int bit = 16; bit < 32; bit++) {
		memset(&s, 0, sizeof(s));
		header(&s, 1u << bit, 0);
		put16(&s, -1);
		expect_refused(&s, COPYBIN_BAD_FLAGS, 4096);
	}
	/* negative header extension */
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	s.n -= 4;
	put32(&s, -4);
	put16(&s, -1);
	expect_refused(&s, COPYBIN_BAD_HEADER, 4096);
	/* field count below -1, above the limit, or changing */
	int bad_counts[] = {-2, -32768, 5};
	for (size_t i = 0; i < sizeof(bad_counts) / sizeof(*bad_counts); i++) {
		memset(&s, 0, sizeof(s));
		header(&s, 0, 0);
		put16(&s, bad_counts[i]);
		put16(&s, -1);
		expect_refused(&s, COPYBIN_BAD_TUPLE, 4096);
	}
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	put16(&s, 1);
	put32(&s, 1);
	put(&s, "a", 1);
	put16(&s, 2);
	put32(&s, -1);
	put32(&s, -1);
	put16(&s, -1);
	expect_refused(&s, COPYBIN_BAD_TUPLE, 4096);
	/* a field length below -1 */
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	put16(&s, 1);
	put32(&s, -2);
	put16(&s, -1);
	expect_refused(&s, COPYBIN_BAD_TUPLE, 4096);
	/* a tuple above max_tuple, also one announcing 2 GB */
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	put16(&s, 1);
	put32(&s, 100);
	for (int i = 0; i < 100; i++)
		put(&s, "v", 1);
	put16(&s, -1);
	expect_refused(&s, COPYBIN_TOO_LARGE, 64);
	memset(&s, 0, sizeof(s));
	header(&s, 0, 0);
	put16(&s, 1);
	put32(&s, 0x7fffffff);
	put(&s, "abc", 3);
	expect_refused(&s, COPYBIN_TOO_LARGE, 4096);
	/* bytes after the trailer */
	sample_stream(&s, 2, 0);
	put(&s, "\0", 1);
	expect_refused(&s, COPYBIN_TRAILING, 4096);
	/* ends before the trailer: in the header, mid-tuple, between tuples */
	sample_stream(&s, 2, 0);
	size_t full = s.n;
	for (size_t n = 0; n < full; n++) {
		s.n = n;
		expect_refused(&s, COPYBIN_TRUNCATED, 4096);
	}
}

static void test_consumer_stops(void **state)
{
	(void)state;
	struct sbuf s;
	sample_stream(&s, 6, 0);
	struct seen seen = {.abort_at = 2};
	assert_int_equal(feed_split(&s, NULL, 0, &seen, 4096), COPYBIN_ABORTED);
	assert_int_equal(seen.tuples, 2);
	assert_string_equal(copybin_strerror(COPYBIN_ABORTED), "stopped by the consumer");
}

/* ---- value formats ---- */

static void test_vector_formats(void **state)
{
	(void)state;
	float out[8];
	size_t dim;
	/* halfvec: 1.0, -2.0, 65504 (max), smallest subnormal */
	uint8_t h[] = {0, 4, 0, 0, 0x3c, 0x00, 0xc0, 0x00, 0x7b, 0xff, 0x00, 0x01};
	assert_int_equal(vecfmt_decode(VEC_FLOAT16, h, sizeof(h), out, 8, &dim), 0);
	assert_int_equal(dim, 4);
	assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f && out[3] == ldexpf(1, -24));
	/* wrong length, zero or negative dim, above the caller's bound */
	assert_int_equal(vecfmt_decode(VEC_FLOAT16, h, sizeof(h) - 1, out, 8, &dim), -1);
	assert_int_equal(vecfmt_decode(VEC_FLOAT32, h, sizeof(h), out, 8, &dim), -1);
	assert_int_equal(vecfmt_decode(VEC_FLOAT16, h, sizeof(h), out, 3, &dim), -1);
	uint8_t zero[] = {0, 0, 0, 0};
	assert_int_equal(vecfmt_decode(VEC_FLOAT32, zero, 4, out, 8, &dim), -1);
	uint8_t neg[] = {0xff, 0xff, 0, 0, 1, 2, 3, 4};
	assert_int_equal(vecfmt_decode(VEC_FLOAT32, neg, sizeof(neg), out, 8, &dim), -1);
	assert_int_equal(vecfmt_decode(VEC_FLOAT32, h, 3, out, 8, &dim), -1);

	/* binary -> the text literal the traffic sample keeps */
	char txt[128];
	int tl = vecfmt_binary_to_text(h, sizeof(h), txt, sizeof(txt));
	assert_string_equal(txt, "[1,-2,65504,5.96046448e-08]");
	assert_int_equal(tl, (int)strlen(txt));
	uint8_t v2[] = {0, 2, 0, 0, 0x3f, 0x80, 0x00, 0x00, 0x3d, 0xcc, 0xcc, 0xcd}; /* 1.0f, 0.1f */
	assert_true(vecfmt_binary_to_text(v2, sizeof(v2), txt, sizeof(txt)) > 0);
	assert_string_equal(txt, "[1,0.100000001]");
	assert_int_equal(vecfmt_parse_text(VEC_FLOAT32, txt, out, 8, &dim), 0); /* reads back exactly */
	assert_true(dim == 2 && out[0] == 1.0f && out[1] == 0.1f);
	assert_int_equal(vecfmt_binary_to_text(v2, sizeof(v2) - 1, txt, sizeof(txt)), -1); /* neither length */
	assert_int_equal(vecfmt_binary_to_text(v2, sizeof(v2), txt, 8), -1);                /* does not fit */
	uint8_t inf[] = {0, 1, 0, 0, 0x7f, 0x80, 0x00, 0x00};
	assert_int_equal(vecfmt_binary_to_text(inf, sizeof(inf), txt, sizeof(txt)), -1);

	/* text literals as pgvector reads them */
	assert_int_equal(vecfmt_parse_text(VEC_FLOAT32, " [1, 2.5 ,-3e-2]  ", out, 8, &dim), 0);
	assert_int_equal(dim, 3);
	assert_true(out[0] == 1.0f && out[1] == 2.5f && out[2] == strtof("-3e-2", NULL));
	const char *bad[] = {"", "[]", "[1,]", "[,1]", "1,2", "[1 2]", "[1,2", "[1,2] x", "[nan]", "[inf]",
	                     "[1e39]", "[a]", "[1,,2]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(vecfmt_parse_text(VEC_FLOAT32, bad[i], out, 8, &dim), -1);
	assert_int_equal(vecfmt_parse_text(VEC_FLOAT32, "[1,2,3]", out, 2, &dim), -1); /* above the bound */
	/* halfvec: rounded to binary16 like the server's cast; overflow refused */
	assert_int_equal(vecfmt_parse_text(VEC_FLOAT16, "[0.1, 65519, 1e-8]", out, 8, &dim), 0);
	assert_true(out[0] == vecfmt_half_to_float(0x2e66) && out[1] == 65504.0f && out[2] == 0.0f);
	assert_int_equal(vecfmt_parse_text(VEC_FLOAT16, "[65520]", out, 8, &dim), -1);
}

static void test_half_conversions(void **state)
{
	(void)state;
	/* every binary16 value survives half -> float -> half */
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = vecfmt_half_to_float((uint16_t)h);
		if (isnan(f))
			continue;
		assert_int_equal(vecfmt_float_to_half(f), h);
	}
	/* ties to even at a normal and at a subnormal boundary */
	assert_int_equal(vecfmt_float_to_half(1.0f + ldexpf(1, -11)), 0x3c00);                 /* halfway: even stays */
	assert_int_equal(vecfmt_float_to_half(1.0f + 3 * ldexpf(1, -11)), 0x3c02);             /* halfway: up to even */
	assert_int_equal(vecfmt_float_to_half(ldexpf(1, -25)), 0x0000);                        /* half of the smallest */
	assert_int_equal(vecfmt_float_to_half(ldexpf(1, -25) * 1.0001f), 0x0001);
	assert_int_equal(vecfmt_float_to_half(ldexpf(3, -25)), 0x0002);
	assert_int_equal(vecfmt_float_to_half(-65520.0f), 0xfc00);
#ifdef __FLT16_MAX__
	/* against the compiler's own conversion, over a sweep of floats */
	uint32_t bits = 0x30000000u;
	for (int i = 0; i < 400000; i++, bits += 0x2f01u) {
		float f;
		memcpy(&f, &bits, 4);
		if (isnan(f))
			continue; /* NaN payloads: the server never sends NaN */
		_Float16 c = (_Float16)f;
		uint16_t want;
		memcpy(&want, &c, 2);
		assert_int_equal(vecfmt_float_to_half(f), want);
	}
#endif
}

static void test_ids(void **state)
{
	(void)state;
	int64_t v;
	uint8_t i2[] = {0xff, 0xfe}, i4[] = {0x80, 0, 0, 0}, i8[] = {0, 0, 0, 1, 0, 0, 0, 2};
	assert_int_equal(vecfmt_decode_id(i2, 2, &v), 0);
	assert_int_equal(v, -2);
	assert_int_equal(vecfmt_decode_id(i4, 4, &v), 0);
	assert_int_equal(v, INT32_MIN);
	assert_int_equal(vecfmt_decode_id(i8, 8, &v), 0);
	assert_int_equal(v, ((int64_t)1 << 32) + 2);
	assert_int_equal(vecfmt_decode_id(i8, 3, &v), -1);
	assert_int_equal(vecfmt_parse_id("-9223372036854775808", 20, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(vecfmt_parse_id("9223372036854775807", 19, &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(vecfmt_parse_id("9223372036854775808", 19, &v), -1);
	assert_int_equal(vecfmt_parse_id("12a", 3, &v), -1);
	assert_int_equal(vecfmt_parse_id("-", 1, &v), -1);
	assert_int_equal(vecfmt_parse_id("", 0, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_and_every_split),
		cmocka_unit_test(test_empty_table_and_zero_length_field),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_consumer_stops),
		cmocka_unit_test(test_vector_formats),
		cmocka_unit_test(test_half_conversions),
		cmocka_unit_test(test_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
