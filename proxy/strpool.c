/*
 * One refcounted copy per distinct string that connections share: a client
 * keeps pointers into this pool instead of its own copies of the values the
 * server reported at login (client_encoding, DateStyle, TimeZone, ...), of
 * its user and database names, and of the route it is reading through.  Ten
 * thousand idle clients then hold a handful of strings, and comparing a
 * client's session variables with a server's is a pointer comparison.
 */
#include "proxy/strpool.h"
#include "proxy/hashtab.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PINNED UINT32_MAX

struct pooled {
	struct hash_link link; /* in `pool`, keyed by str */
	uint32_t refs;         /* PINNED: never freed */
	char str[];
};

static struct hashtab pool;

static uint32_t hash_str(const char *s, size_t *len)
{
	uint32_t h = 2166136261u;
	const char *p = s;
	for (; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 16777619u;
	}
	*len = (size_t)(p - s);
	return h;
}

static struct pooled *entry_of(const char *pooled)
{
	return (struct pooled *)(void *)(pooled - offsetof(struct pooled, str));
}

static struct pooled *lookup_or_add(const char *s)
{
	size_t len;
	uint32_t h = hash_str(s, &len);
	for (struct hash_link *l = hashtab_first(&pool, h); l; l = hashtab_next(l)) {
		struct pooled *e = hashtab_entry(l, struct pooled, link);
		if (strcmp(e->str, s) == 0)
			return e;
	}
	struct pooled *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->refs = 0;
	memcpy(e->str, s, len + 1);
	if (!hashtab_insert(&pool, &e->link, h)) {
		free(e);
		return NULL;
	}
	return e;
}

const char *strpool_get(const char *s)
{
	struct pooled *e = lookup_or_add(s);
	if (!e)
		return NULL;
	if (e->refs != PINNED)
		e->refs++;
	return e->str;
}

const char *strpool_ref(const char *pooled)
{
	struct pooled *e = entry_of(pooled);
	assert(e->refs > 0);
	if (e->refs != PINNED)
		e->refs++;
	return pooled;
}

void strpool_put(const char *pooled)
{
	if (!pooled)
		return;
	struct pooled *e = entry_of(pooled);
	assert(e->refs > 0);
	if (e->refs == PINNED || --e->refs > 0)
		return;
	hashtab_remove(&pool, &e->link);
	free(e);
}

const char *strpool_pin(const char *s)
{
	struct pooled *e = lookup_or_add(s);
	if (!e)
		return NULL;
	e->refs = PINNED;
	return e->str;
}

size_t strpool_count(void)
{
	return pool.count;
}
