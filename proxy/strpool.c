/*
 * One refcounted copy per distinct string that connections share: a client
 * keeps pointers into this pool instead of its own copies of the values the
 * server reported at login (client_encoding, DateStyle, TimeZone, ...), of
 * its user and database names, and of the route it is reading through.  Ten
 * thousand idle clients then hold a handful of strings, and comparing a
 * client's session variables with a server's is a pointer comparison.
 */
#include "proxy/strpool.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PINNED UINT32_MAX

struct pooled {
	struct pooled *next; /* hash chain */
	uint32_t refs;       /* PINNED: never freed */
	uint32_t hash;
	char str[];
};

static struct pooled **buckets;
static size_t nbuckets, count;

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

static bool grow(void)
{
	size_t nb = nbuckets ? nbuckets * 2 : 64;
	struct pooled **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < nbuckets; i++) {
		struct pooled *e = buckets[i];
		while (e) {
			struct pooled *next = e->next;
			e->next = b[e->hash % nb];
			b[e->hash % nb] = e;
			e = next;
		}
	}
	free(buckets);
	buckets = b;
	nbuckets = nb;
	return true;
}

static struct pooled *lookup_or_add(const char *s)
{
	size_t len;
	uint32_t h = hash_str(s, &len);
	if (nbuckets) {
		for (struct pooled *e = buckets[h % nbuckets]; e; e = e->next)
			if (e->hash == h && strcmp(e->str, s) == 0)
				return e;
	}
	if (count >= nbuckets && !grow())
		return NULL;
	struct pooled *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->refs = 0;
	e->hash = h;
	memcpy(e->str, s, len + 1);
	e->next = buckets[h % nbuckets];
	buckets[h % nbuckets] = e;
	count++;
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
	for (struct pooled **pp = &buckets[e->hash % nbuckets]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			count--;
			free(e);
			return;
		}
	}
	assert(!"pooled string not in its bucket");
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
	return count;
}
