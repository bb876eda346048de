/*
 * Session variables that must follow a client from one pooled server to the
 * next: the startup parameters applications send (client_encoding, DateStyle,
 * application_name, ...) and what the server reports back.  Before a server
 * runs a client's statements, the difference becomes one SET/RESET batch.
 * Values are pooled strings: thousands of clients with the server's defaults
 * share one copy of each, and a difference is a pointer comparison.
 */
#include "proxy/varcache.h"
#include "proxy/hashtab.h"
#include "proxy/strpool.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const var_names[VAR_COUNT] = {
	[VAR_CLIENT_ENCODING] = "client_encoding",
	[VAR_DATESTYLE] = "DateStyle",
	[VAR_TIMEZONE] = "TimeZone",
	[VAR_INTERVALSTYLE] = "IntervalStyle",
	[VAR_STANDARD_CONFORMING_STRINGS] = "standard_conforming_strings",
	[VAR_APPLICATION_NAME] = "application_name",
	[VAR_EXTRA_FLOAT_DIGITS] = "extra_float_digits",
	[VAR_SEARCH_PATH] = "search_path",
	[VAR_STATEMENT_TIMEOUT] = "statement_timeout",
};

int varcache_lookup(const char *name)
{
	for (int i = 0; i < VAR_COUNT; i++)
		if (strcasecmp(var_names[i], name) == 0)
			return i;
	return -1;
}

const char *varcache_name(int idx)
{
	return var_names[idx];
}

void varcache_set(struct varcache *vc, int idx, const char *value)
{
	if (vc->val[idx] && value && strcmp(vc->val[idx], value) == 0)
		return;
	const char *v = value ? strpool_get(value) : NULL; /* out of memory: the server's default */
	strpool_put(vc->val[idx]);
	vc->val[idx] = v;
}

/* Take the other cache's (pooled) value. */
static void share(struct varcache *dst, int idx, const char *pooled)
{
	if (dst->val[idx] == pooled)
		return;
	strpool_put(dst->val[idx]);
	dst->val[idx] = pooled ? strpool_ref(pooled) : NULL;
}

void varcache_copy(struct varcache *dst, const struct varcache *src)
{
	for (int i = 0; i < VAR_COUNT; i++)
		share(dst, i, src->val[i]);
}

void varcache_clear(struct varcache *vc)
{
	for (int i = 0; i < VAR_COUNT; i++) {
		strpool_put(vc->val[i]);
		vc->val[i] = NULL;
	}
}

/* ---- shared sets of client variables ---- */

struct varset {
	struct hash_link link; /* in `sets`, keyed by vc */
	uint32_t refs;
	struct varcache vc; /* owns a strpool reference per value */
};

static struct hashtab sets;

static uint32_t set_hash(const struct varcache *vc)
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < VAR_COUNT; i++) {
		h ^= (uint64_t)(uintptr_t)vc->val[i];
		h *= 1099511628211ull;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static struct varset *set_of(const struct varcache *vc)
{
	return (struct varset *)(void *)((const char *)vc - offsetof(struct varset, vc));
}

void varset_put(const struct varcache *vs)
{
	if (!vs)
		return;
	struct varset *e = set_of(vs);
	assert(e->refs > 0);
	if (--e->refs > 0)
		return;
	hashtab_remove(&sets, &e->link);
	varcache_clear(&e->vc);
	free(e);
}

const struct varcache *varset_with(const struct varcache *cur, int idx, const char *value)
{
	const char *old = varset_get(cur, idx);
	if (old == value || (old && value && strcmp(old, value) == 0))
		return cur;
	struct varcache want = {{0}};
	if (cur)
		want = *cur; /* borrowed pointers, for the lookup */
	want.val[idx] = value ? strpool_get(value) : NULL; /* out of memory: the server's default */
	bool all_default = true;
	for (int i = 0; i < VAR_COUNT && all_default; i++)
		all_default = !want.val[i];
	if (all_default) {
		varset_put(cur);
		return NULL;
	}
	uint32_t h = set_hash(&want);
	for (struct hash_link *l = hashtab_first(&sets, h); l; l = hashtab_next(l)) {
		struct varset *e = hashtab_entry(l, struct varset, link);
		if (!memcmp(e->vc.val, want.val, sizeof(want.val))) {
			e->refs++;
			strpool_put(want.val[idx]); /* the set holds its own */
			varset_put(cur);
			return &e->vc;
		}
	}
	struct varset *e = malloc(sizeof(*e));
	if (!e || !hashtab_insert(&sets, &e->link, h)) { /* out of memory: keep what the client had */
		free(e);
		strpool_put(want.val[idx]);
		return cur;
	}
	e->refs = 1;
	e->vc = want;
	for (int i = 0; i < VAR_COUNT; i++)
		if (i != idx && e->vc.val[i])
			strpool_ref(e->vc.val[i]);
	varset_put(cur);
	return &e->vc;
}

size_t varset_count(void)
{
	return sets.count;
}

static void put_literal(struct pg_buf *sql, const char *v)
{
	buf_put_byte(sql, '\'');
	for (const char *p = v; *p; p++) {
		if (*p == '\'')
			buf_put_byte(sql, '\'');
		buf_put_byte(sql, (uint8_t)*p);
	}
	buf_put_byte(sql, '\'');
}

int varcache_sync_sql(const struct varcache *client, struct varcache *server, struct pg_buf *sql)
{
	static const struct varcache defaults;
	/* the usual case, every value already the same pooled pointer */
	if (!memcmp(client ? client->val : defaults.val, server->val, sizeof(server->val)))
		return 0;
	int n = 0;
	for (int i = 0; i < VAR_COUNT; i++) {
		const char *cv = varset_get(client, i);
		if (cv == server->val[i]) /* pooled: equal values are one pointer */
			continue;
		const char *name = var_names[i];
		if (cv) {
			buf_put_bytes(sql, "SET ", 4);
			buf_put_bytes(sql, name, strlen(name));
			buf_put_bytes(sql, " = ", 3);
			put_literal(sql, cv);
		} else {
			buf_put_bytes(sql, "RESET ", 6);
			buf_put_bytes(sql, name, strlen(name));
		}
		buf_put_bytes(sql, "; ", 2);
		share(server, i, cv);
		n++;
	}
	return n;
}
