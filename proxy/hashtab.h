/*
 * An intrusive chained hash table (hashtab.c).  An object joins a table
 * through a struct hash_link it embeds; the table keeps the caller's hash
 * in the link, allocates only its bucket array and never compares keys: a
 * lookup walks the links of one hash (hashtab_first, hashtab_next) and the
 * caller compares its own key in the object (hashtab_entry).  A zeroed
 * struct hashtab is an empty table.  A link is in one table at a time;
 * removing a link that is not in the table is a bug (asserts).
 */
#ifndef VG_PROXY_HASHTAB_H
#define VG_PROXY_HASHTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hash_link {
	struct hash_link *next; /* chain of one bucket */
	uint64_t hash;
};
struct hashtab {
	struct hash_link **buckets; /* a power of two of them, or none yet */
	size_t nbuckets, count;
};

/* The object of type `type` whose member `member` is the link `link`. */
#define hashtab_entry(link, type, member) ((type *)(void *)((char *)(link) - offsetof(type, member)))

/* Add `link` under `hash`, doubling the buckets first when there are as many
 * links as buckets.  False, with nothing added, when that is out of memory. */
bool hashtab_insert(struct hashtab *t, struct hash_link *link, uint64_t hash);
/* Take `link` out of t (it must be in it). */
void hashtab_remove(struct hashtab *t, struct hash_link *link);
/* Free the bucket array, not the objects (walk them first); t is empty after. */
void hashtab_free(struct hashtab *t);

/* Every link of t, in no order: start with a zeroed walk, stop at NULL.  The
 * link returned may be removed or freed before the next call, no other. */
struct hashtab_walk {
	size_t bucket;
	struct hash_link *next;
};
struct hash_link *hashtab_walk(const struct hashtab *t, struct hashtab_walk *w);

/* Lookups are inline: they run per Parse/Bind on the data plane. */
static inline size_t hashtab_index(uint64_t hash, size_t nbuckets)
{
	return (size_t)(hash & (nbuckets - 1)); /* nbuckets is a power of two */
}

static inline struct hash_link *hashtab_chain_match(struct hash_link *l, uint64_t hash)
{
	while (l && l->hash != hash)
		l = l->next;
	return l;
}

/* The first link of t with this hash, or NULL. */
static inline struct hash_link *hashtab_first(const struct hashtab *t, uint64_t hash)
{
	if (!t->nbuckets)
		return NULL;
	return hashtab_chain_match(t->buckets[hashtab_index(hash, t->nbuckets)], hash);
}

/* The next link after `link` with the same hash, or NULL. */
static inline struct hash_link *hashtab_next(const struct hash_link *link)
{
	return hashtab_chain_match(link->next, link->hash);
}

#endif
