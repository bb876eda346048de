/*
 * Read a binary COPY stream as it arrives, so that ground truth can be
 * computed over a whole table in one pass without ever holding the table:
 * tuples that lie wholly inside a chunk are decoded in place, and only a
 * tuple cut by a chunk boundary is gathered into a buffer bounded by the
 * largest tuple we accept.
 */
#include "protocol/copybin.h"
#include "protocol/pgproto.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
#define HEADER_FIXED 19 /* signature, flags, extension length */

int copybin_init(struct copybin *d, size_t max_tuple, int max_fields)
{
	memset(d, 0, sizeof(*d));
	if (max_tuple < 64)
		max_tuple = 64;
	if (max_fields < 1)
		max_fields = 1;
	if (max_fields > COPYBIN_MAX_FIELDS)
		max_fields = COPYBIN_MAX_FIELDS;
	d->max_tuple = max_tuple;
	d->max_fields = max_fields;
	d->nfields = -1;
	d->phase = CB_SIGNATURE;
	d->buf = malloc(max_tuple);
	return d->buf ? 0 : -1;
}

void copybin_free(struct copybin *d)
{
	free(d->buf);
	d->buf = NULL;
}

static enum copybin_status fail(struct copybin *d, enum copybin_status st)
{
	d->phase = CB_FAILED;
	d->error = st;
	return st;
}

/* Where a tuple starting at p (n bytes available) stands: 1 = complete in
 * *size bytes (fields filled when f is given; *trailer for the end marker),
 * 0 = incomplete, *size the total it needs before it can say more, < 0 an
 * error.  Walking from the start each time costs O(fields), which is bounded. */
static int tuple_scan(const struct copybin *d, const uint8_t *p, size_t n, size_t *size, struct copybin_field *f,
                      bool *trailer)
{
	*trailer = false;
	if (n < 2) {
		*size = 2;
		return 0;
	}
	int fc = pg_be16s(p);
	if (fc == -1) {
		*trailer = true;
		*size = 2;
		return 1;
	}
	if (fc < 0 || fc > d->max_fields || (d->nfields >= 0 && fc != d->nfields))
		return COPYBIN_BAD_TUPLE;
	size_t off = 2;
	for (int i = 0; i < fc; i++) {
		if (off + 4 > d->max_tuple)
			return COPYBIN_TOO_LARGE;
		if (n < off + 4) {
			*size = off + 4;
			return 0;
		}
		int32_t len = (int32_t)pg_be32(p + off);
		off += 4;
		if (len < -1)
			return COPYBIN_BAD_TUPLE;
		if (len > 0 && (size_t)len > d->max_tuple - off)
			return COPYBIN_TOO_LARGE;
		if (f) {
			f[i].len = len;
			f[i].p = len >= 0 ? p + off : NULL;
		}
		if (len > 0)
			off += (size_t)len;
	}
	*size = off;
	return n >= off ? 1 : 0;
}

/* A complete tuple at p: hand it over.  Returns OK, DONE or an error. */
static enum copybin_status emit(struct copybin *d, const uint8_t *p, size_t n, copybin_tuple_cb cb, void *arg)
{
	struct copybin_field f[COPYBIN_MAX_FIELDS];
	size_t size;
	bool trailer;
	int r = tuple_scan(d, p, n, &size, f, &trailer);
	if (r != 1)
		return fail(d, r < 0 ? (enum copybin_status)r : COPYBIN_BAD_TUPLE); /* callers checked: cannot be */
	if (trailer) {
		d->phase = CB_END;
		return COPYBIN_DONE;
	}
	int fc = pg_be16s(p);
	if (d->nfields < 0)
		d->nfields = fc;
	for (int i = 0; i < fc; i++)
		if (f[i].len == 0)
			f[i].p = p; /* a valid pointer even for empty values */
	d->tuples++;
	if (cb && cb(arg, fc, f) != 0)
		return fail(d, COPYBIN_ABORTED);
	return COPYBIN_OK;
}

/* The fixed header, once all 19 bytes of it are in hand. */
static enum copybin_status header(struct copybin *d, const uint8_t *h)
{
	if (memcmp(h, signature, sizeof(signature)) != 0)
		return fail(d, COPYBIN_BAD_SIGNATURE);
	if (pg_be32(h + 11) & 0xffff0000u)
		return fail(d, COPYBIN_BAD_FLAGS); /* OIDs or a critical format change we do not know */
	int32_t ext = (int32_t)pg_be32(h + 15);
	if (ext < 0)
		return fail(d, COPYBIN_BAD_HEADER);
	d->ext_left = (uint32_t)ext;
	d->phase = ext ? CB_EXTENSION : CB_TUPLES;
	return COPYBIN_OK;
}

/* Move up to `want` bytes from the chunk to the end of d->buf. */
static void take_into_buf(struct copybin *d, const uint8_t **p, size_t *left, size_t want)
{
	size_t take = want < *left ? want : *left;
	memcpy(d->buf + d->have, *p, take);
	d->have += take;
	*p += take;
	*left -= take;
	d->bytes += take;
}

enum copybin_status copybin_feed(struct copybin *d, const uint8_t *chunk, size_t len, copybin_tuple_cb cb,
                                 void *arg)
{
	if (d->phase == CB_FAILED)
		return d->error;
	if (!d->buf)
		return fail(d, COPYBIN_NO_MEMORY);
	const uint8_t *p = chunk;
	size_t left = len;
	while (left > 0) {
		switch (d->phase) {
		case CB_SIGNATURE: {
			take_into_buf(d, &p, &left, HEADER_FIXED - d->have);
			/* a wrong first byte is refused at once, not after 19 */
			if (memcmp(d->buf, signature, d->have < sizeof(signature) ? d->have : sizeof(signature)) != 0)
				return fail(d, COPYBIN_BAD_SIGNATURE);
			if (d->have == HEADER_FIXED) {
				d->have = 0;
				enum copybin_status st = header(d, d->buf);
				if (st != COPYBIN_OK)
					return st;
			}
			break;
		}
		case CB_EXTENSION: {
			size_t take = d->ext_left < left ? d->ext_left : left;
			d->ext_left -= (uint32_t)take;
			p += take;
			left -= take;
			d->bytes += take;
			if (!d->ext_left)
				d->phase = CB_TUPLES;
			break;
		}
		case CB_TUPLES: {
			size_t size;
			bool trailer;
			if (d->have) {
				/* finish the tuple a boundary cut: take only what it needs */
				int r = tuple_scan(d, d->buf, d->have, &size, NULL, &trailer);
				if (r < 0)
					return fail(d, (enum copybin_status)r);
				while (r == 0 && left > 0) {
					if (size > d->max_tuple)
						return fail(d, COPYBIN_TOO_LARGE);
					take_into_buf(d, &p, &left, size - d->have);
					r = tuple_scan(d, d->buf, d->have, &size, NULL, &trailer);
					if (r < 0)
						return fail(d, (enum copybin_status)r);
				}
				if (r == 0)
					break; /* the chunk ran out first */
				enum copybin_status st = emit(d, d->buf, d->have, cb, arg);
				d->have = 0;
				if (st != COPYBIN_OK) {
					if (st == COPYBIN_DONE && left)
						return fail(d, COPYBIN_TRAILING);
					return st;
				}
				break;
			}
			int r = tuple_scan(d, p, left, &size, NULL, &trailer);
			if (r < 0)
				return fail(d, (enum copybin_status)r);
			if (r == 0) {
				if (size > d->max_tuple)
					return fail(d, COPYBIN_TOO_LARGE);
				memcpy(d->buf, p, left); /* left < size <= max_tuple */
				d->have = left;
				d->bytes += left;
				p += left;
				left = 0;
				break;
			}
			enum copybin_status st = emit(d, p, size, cb, arg);
			p += size;
			left -= size;
			d->bytes += size;
			if (st != COPYBIN_OK) {
				if (st == COPYBIN_DONE && left)
					return fail(d, COPYBIN_TRAILING);
				return st;
			}
			break;
		}
		case CB_END:
			return fail(d, COPYBIN_TRAILING);
		case CB_FAILED:
			return d->error;
		}
	}
	if (d->phase == CB_END)
		return COPYBIN_DONE;
	return COPYBIN_OK;
}

enum copybin_status copybin_finish(const struct copybin *d)
{
	if (d->phase == CB_FAILED)
		return d->error;
	return d->phase == CB_END ? COPYBIN_DONE : COPYBIN_TRUNCATED;
}

const char *copybin_strerror(enum copybin_status st)
{
	switch (st) {
	case COPYBIN_OK: return "ok";
	case COPYBIN_DONE: return "complete";
	case COPYBIN_BAD_SIGNATURE: return "not a binary COPY stream (signature)";
	case COPYBIN_BAD_FLAGS: return "binary COPY header has unknown critical flags";
	case COPYBIN_BAD_HEADER: return "binary COPY header extension length is negative";
	case COPYBIN_BAD_TUPLE: return "malformed tuple in binary COPY stream";
	case COPYBIN_TOO_LARGE: return "tuple larger than the decoder accepts";
	case COPYBIN_TRAILING: return "data after the end of the binary COPY stream";
	case COPYBIN_TRUNCATED: return "binary COPY stream ended before its trailer";
	case COPYBIN_ABORTED: return "stopped by the consumer";
	case COPYBIN_NO_MEMORY: return "out of memory";
	}
	return "unknown";
}
