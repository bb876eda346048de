/*
 * Decoder of PostgreSQL's binary COPY stream (COPY ... TO STDOUT (FORMAT
 * binary)), fed incrementally: the bytes may arrive cut at any position
 * (libpq hands over one CopyData message at a time, a test or a fuzzer any
 * split), and the decoder yields each complete tuple exactly once, in order.
 *
 * Contract:
 *   - Stream: the 11-byte signature "PGCOPY\n\377\r\n\0", an int32 flags
 *     word, an int32 header-extension length and that many bytes (skipped,
 *     never buffered), then tuples: int16 field count, and per field an int32
 *     length (-1 = NULL) and that many bytes; an int16 -1 ends the stream.
 *     All integers are big-endian (network order).
 *   - Rejected: a wrong signature; any of flag bits 16-31 set (critical
 *     format changes, OIDs included; bits 0-15 are ignored as the format
 *     says); a negative extension length; a field count < 0 other than the
 *     -1 trailer, above `max_fields`, or different from the first tuple's;
 *     a field length < -1; a tuple (count, lengths and data) larger than
 *     `max_tuple` bytes; any byte after the trailer; a stream that ends
 *     without the trailer (copybin_finish).
 *   - Memory: the decoder owns one buffer of at most `max_tuple` bytes, used
 *     only for a tuple cut by a chunk boundary; tuples wholly inside a chunk
 *     are handed over in place.  Field pointers are valid only during the
 *     callback.
 *   - After an error every later call returns the same error.
 * Pure code over buffers: no I/O, no globals.
 */
#ifndef VG_PROTOCOL_COPYBIN_H
#define VG_PROTOCOL_COPYBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COPYBIN_MAX_FIELDS 64

enum copybin_status {
	COPYBIN_OK = 0,          /* all bytes so far consumed; more may come */
	COPYBIN_DONE = 1,        /* the trailer was seen (feed) / the stream is complete (finish) */
	COPYBIN_BAD_SIGNATURE = -1,
	COPYBIN_BAD_FLAGS = -2,
	COPYBIN_BAD_HEADER = -3, /* negative header extension length */
	COPYBIN_BAD_TUPLE = -4,  /* field count or length out of range, or a count that changed */
	COPYBIN_TOO_LARGE = -5,  /* a tuple above max_tuple bytes */
	COPYBIN_TRAILING = -6,   /* bytes after the trailer */
	COPYBIN_TRUNCATED = -7,  /* finish: the stream ended before its trailer */
	COPYBIN_ABORTED = -8,    /* the tuple callback asked to stop */
	COPYBIN_NO_MEMORY = -9,
};

struct copybin_field {
	const uint8_t *p; /* NULL when the value is NULL */
	int32_t len;      /* -1 for NULL */
};

/* One tuple; return 0 to go on, non-zero to stop the decoder (COPYBIN_ABORTED). */
typedef int (*copybin_tuple_cb)(void *arg, int nfields, const struct copybin_field *fields);

enum copybin_phase { CB_SIGNATURE = 0, CB_EXTENSION, CB_TUPLES, CB_END, CB_FAILED };

struct copybin {
	enum copybin_phase phase;
	enum copybin_status error; /* the sticky error once phase is CB_FAILED */
	size_t max_tuple;
	int max_fields;
	int nfields;         /* of the first tuple, -1 before it */
	uint32_t ext_left;   /* header extension bytes still to skip */
	uint8_t *buf;        /* the part of a tuple (or the fixed header) cut by a chunk boundary */
	size_t have;         /* bytes in buf */
	uint64_t tuples;     /* tuples handed to the callback */
	uint64_t bytes;      /* stream bytes consumed */
};

/* max_tuple: bound on one tuple's size in bytes (>= 64); max_fields: 1..COPYBIN_MAX_FIELDS.
 * Returns 0, or -1 when the buffer cannot be had. */
int copybin_init(struct copybin *d, size_t max_tuple, int max_fields);
void copybin_free(struct copybin *d);

/* Consume a chunk; cb runs for each complete tuple.  COPYBIN_OK, COPYBIN_DONE
 * (trailer seen: nothing more may follow), or an error (< 0). */
enum copybin_status copybin_feed(struct copybin *d, const uint8_t *chunk, size_t len, copybin_tuple_cb cb,
                                 void *arg);
/* The stream is over: COPYBIN_DONE if it ended with its trailer, else the error. */
enum copybin_status copybin_finish(const struct copybin *d);
const char *copybin_strerror(enum copybin_status st);

#endif
