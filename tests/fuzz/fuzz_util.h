/*
 * Shared helpers for vecgate's libFuzzer targets.  A fuzz target that only
 * calls a parser finds crashes; one that also checks what the parser claims
 * (lengths inside the buffer, round trips through the builders) finds wrong
 * answers too, so every target states its invariants with FUZZ_CHECK, which
 * aborts (a crash libFuzzer records with its input) when one does not hold.
 */
#ifndef VG_FUZZ_UTIL_H
#define VG_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                                   \
	do {                                                                                                   \
		if (!(cond)) {                                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                  \
			abort();                                                                                       \
		}                                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Consume input front to back: fixed-size numbers and length-prefixed or
 * separator-terminated pieces, so one byte string drives several arguments. */
struct fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline uint8_t fin_byte(struct fuzz_in *in)
{
	if (!in->len)
		return 0;
	in->len--;
	return *in->p++;
}

static inline uint16_t fin_u16(struct fuzz_in *in)
{
	uint16_t hi = fin_byte(in);
	return (uint16_t)(hi << 8 | fin_byte(in));
}

/* Up to (not including) the next `sep`, or the rest; the separator is eaten. */
static inline const uint8_t *fin_until(struct fuzz_in *in, uint8_t sep, size_t *n)
{
	const uint8_t *start = in->p;
	const uint8_t *hit = in->len ? memchr(in->p, sep, in->len) : NULL;
	*n = hit ? (size_t)(hit - in->p) : in->len;
	size_t eat = hit ? *n + 1 : *n;
	in->p += eat;
	in->len -= eat;
	return start;
}

/* n bytes (fewer if the input ends). */
static inline const uint8_t *fin_take(struct fuzz_in *in, size_t want, size_t *n)
{
	const uint8_t *start = in->p;
	*n = want < in->len ? want : in->len;
	in->p += *n;
	in->len -= *n;
	return start;
}

/* A heap copy with a NUL after it, for APIs that take C strings (ASan then
 * catches reads past the terminator). */
static inline char *fuzz_strndup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, p, n);
	s[n] = 0;
	return s;
}

/* An exact-size heap copy (no terminator), for (pointer, length) APIs. */
static inline uint8_t *fuzz_memdup(const uint8_t *p, size_t n)
{
	uint8_t *s = malloc(n ? n : 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, p, n);
	return s;
}

/* Does the NUL-terminated string s lie inside [base, base+len)? */
static inline int fuzz_str_inside(const char *s, const void *base, size_t len)
{
	const char *b = base;
	if (s < b || s >= b + len)
		return 0;
	return memchr(s, 0, (size_t)(b + len - s)) != NULL;
}

#endif
