/*
 * The data plane finds shared objects again by their content: a pool's
 * statement texts, a client's names for them, the pooled strings and the
 * shared sets of session variables.  Those objects live long and are held
 * by pointer, so they are chained in place through a link they embed, with
 * no allocation per entry, and each owner keeps its own key comparison
 * inline on its hot path.  This file is the chaining and growing they share.
 */
#include "proxy/hashtab.h"

#include <assert.h>
#include <stdlib.h>

#define FIRST_BUCKETS 16

static struct hash_link **bucket_of(const struct hashtab *t, uint64_t hash)
{
	return &t->buckets[hashtab_index(hash, t->nbuckets)];
}

static bool grow(struct hashtab *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : FIRST_BUCKETS;
	struct hash_link **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct hash_link *l = t->buckets[i];
		while (l) {
			struct hash_link *next = l->next;
			struct hash_link **head = &b[hashtab_index(l->hash, nb)];
			l->next = *head;
			*head = l;
			l = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return true;
}

bool hashtab_insert(struct hashtab *t, struct hash_link *link, uint64_t hash)
{
	if (t->count >= t->nbuckets && !grow(t))
		return false;
	assert((t->nbuckets & (t->nbuckets - 1)) == 0);
	struct hash_link **head = bucket_of(t, hash);
	link->hash = hash;
	link->next = *head;
	*head = link;
	t->count++;
	return true;
}

void hashtab_remove(struct hashtab *t, struct hash_link *link)
{
	assert(t->count > 0);
	if (t->nbuckets) {
		for (struct hash_link **pp = bucket_of(t, link->hash); *pp; pp = &(*pp)->next) {
			if (*pp == link) {
				*pp = link->next;
				link->next = NULL;
				t->count--;
				return;
			}
		}
	}
	assert(!"hash link not in its table's chain");
}

void hashtab_free(struct hashtab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = t->count = 0;
}

struct hash_link *hashtab_walk(const struct hashtab *t, struct hashtab_walk *w)
{
	struct hash_link *l = w->next;
	while (!l && w->bucket < t->nbuckets)
		l = t->buckets[w->bucket++];
	w->next = l ? l->next : NULL;
	return l;
}
