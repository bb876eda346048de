/*
 * Fuzz the binary COPY decoder the exact-scan ground truth reads a whole
 * table through, and the pgvector value decoders behind it.  The stream
 * comes from the server, but a decoder that trusts lengths reads out of
 * bounds or holds unbounded memory, so: no read outside the given bytes,
 * fields inside the tuple, a split stream decodes exactly as the whole one
 * (same tuples, same bytes, same verdict), errors are sticky, and the
 * buffer never grows past max_tuple.
 * Input: one byte choosing the chunk sizes, one byte choosing max_tuple,
 * then the stream.
 */
#include "protocol/copybin.h"
#include "protocol/vecfmt.h"
#include "tests/fuzz/fuzz_util.h"

struct digest {
	uint64_t hash;
	uint64_t tuples;
};

static void mix(struct digest *d, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		d->hash = (d->hash ^ b[i]) * 1099511628211ull;
}

static int on_tuple(void *arg, int nfields, const struct copybin_field *f)
{
	struct digest *d = arg;
	FUZZ_CHECK(nfields >= 0 && nfields <= COPYBIN_MAX_FIELDS);
	d->tuples++;
	mix(d, &nfields, sizeof(nfields));
	for (int i = 0; i < nfields; i++) {
		FUZZ_CHECK(f[i].len >= -1);
		FUZZ_CHECK((f[i].len < 0) == (f[i].p == NULL));
		mix(d, &f[i].len, sizeof(f[i].len));
		if (f[i].len <= 0)
			continue;
		mix(d, f[i].p, (size_t)f[i].len); /* ASan: every byte is inside a buffer */
		/* the value decoders on whatever the field holds */
		float v[64];
		size_t dim;
		int64_t id;
		if (vecfmt_decode(VEC_FLOAT32, f[i].p, (size_t)f[i].len, v, 64, &dim) == 0)
			FUZZ_CHECK(dim >= 1 && dim <= 64 && (size_t)f[i].len == 4 + 4 * dim);
		if (vecfmt_decode(VEC_FLOAT16, f[i].p, (size_t)f[i].len, v, 64, &dim) == 0)
			FUZZ_CHECK(dim >= 1 && dim <= 64 && (size_t)f[i].len == 4 + 2 * dim);
		(void)vecfmt_decode_id(f[i].p, (size_t)f[i].len, &id);
		(void)vecfmt_parse_id((const char *)f[i].p, (size_t)f[i].len, &id);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint8_t step = fin_byte(&in);
	size_t max_tuple = 64 + (size_t)fin_byte(&in) * 16;
	size_t n = in.len;
	uint8_t *stream = fuzz_memdup(in.p, n);

	/* whole */
	struct copybin whole;
	FUZZ_CHECK(copybin_init(&whole, max_tuple, 8) == 0);
	struct digest dw = {14695981039346656037ull, 0};
	enum copybin_status sw = copybin_feed(&whole, stream, n, on_tuple, &dw);
	FUZZ_CHECK(whole.have <= max_tuple);
	enum copybin_status fw = copybin_finish(&whole);
	FUZZ_CHECK(dw.tuples == whole.tuples);
	if (sw < 0) {
		FUZZ_CHECK(fw == sw);
		FUZZ_CHECK(copybin_feed(&whole, stream, n, on_tuple, &dw) == sw); /* sticky */
	} else {
		FUZZ_CHECK(fw == COPYBIN_DONE || fw == COPYBIN_TRUNCATED);
		FUZZ_CHECK((sw == COPYBIN_DONE) == (fw == COPYBIN_DONE));
		FUZZ_CHECK(whole.bytes == n);
	}

	/* the same bytes in chunks of 1 .. step+1 bytes, each chunk its own
	 * exact-size copy so that reading past a chunk is caught */
	struct copybin split;
	FUZZ_CHECK(copybin_init(&split, max_tuple, 8) == 0);
	struct digest ds = {14695981039346656037ull, 0};
	enum copybin_status ss = COPYBIN_OK;
	size_t at = 0, len = 1;
	while (at < n && ss >= 0) {
		size_t take = len < n - at ? len : n - at;
		uint8_t *chunk = fuzz_memdup(stream + at, take);
		ss = copybin_feed(&split, chunk, take, on_tuple, &ds);
		free(chunk);
		FUZZ_CHECK(split.have <= max_tuple);
		at += take;
		len = len % ((size_t)step + 1) + 1;
	}
	enum copybin_status fs = copybin_finish(&split);
	FUZZ_CHECK(fs == fw);
	FUZZ_CHECK(ds.tuples == dw.tuples && ds.hash == dw.hash);

	copybin_free(&whole);
	copybin_free(&split);

	/* the text literal reader on the stream's bytes as a string */
	char *text = fuzz_strndup(stream, n);
	float v[32];
	size_t dim;
	if (vecfmt_parse_text(VEC_FLOAT16, text, v, 32, &dim) == 0)
		FUZZ_CHECK(dim >= 1 && dim <= 32);
	free(text);
	/* the same bytes as a Bind parameter the traffic sample turns into text:
	 * refused, or a literal the vector parser reads back to the same floats */
	char lit[4096];
	int tl = vecfmt_binary_to_text(stream, n, lit, sizeof(lit));
	if (tl > 0) {
		FUZZ_CHECK((size_t)tl == strlen(lit) && lit[0] == '[' && lit[tl - 1] == ']');
		float back[1024], orig[1024];
		size_t dback, dorig;
		FUZZ_CHECK(vecfmt_parse_text(VEC_FLOAT32, lit, back, 1024, &dback) == 0);
		if (vecfmt_decode(VEC_FLOAT32, stream, n, orig, 1024, &dorig) == 0 ||
		    vecfmt_decode(VEC_FLOAT16, stream, n, orig, 1024, &dorig) == 0) {
			FUZZ_CHECK(dback == dorig);
			for (size_t i = 0; i < dback; i++)
				FUZZ_CHECK(back[i] == orig[i]);
		}
	}
	free(stream);
	return 0;
}
