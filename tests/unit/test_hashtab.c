/*
 * Unit tests for the intrusive hash table the data plane's registries share
 * (proxy/hashtab.c): growing while many links go in, finding every link of
 * a hash when hashes collide, removing from the middle of a chain, walking
 * every link while freeing it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/hashtab.h"

struct item {
	int key;
	struct hash_link link;
};

static struct item *item_of(struct hash_link *l)
{
	return hashtab_entry(l, struct item, link);
}

/* The item of `key` under `hash`, found as the callers do: by hash, then key. */
static struct item *find(const struct hashtab *t, uint64_t hash, int key)
{
	for (struct hash_link *l = hashtab_first(t, hash); l; l = hashtab_next(l))
		if (item_of(l)->key == key)
			return item_of(l);
	return NULL;
}

static size_t count_of_hash(const struct hashtab *t, uint64_t hash)
{
	size_t n = 0;
	for (struct hash_link *l = hashtab_first(t, hash); l; l = hashtab_next(l)) {
		assert_int_equal(l->hash, hash);
		n++;
	}
	return n;
}

static void test_empty(void **state)
{
	(void)state;
	struct hashtab t = {0};
	assert_null(hashtab_first(&t, 42));
	struct hashtab_walk w = {0};
	assert_null(hashtab_walk(&t, &w));
	hashtab_free(&t);
	assert_int_equal(t.count, 0);
}

static void test_grow_and_find(void **state)
{
	(void)state;
	enum { N = 1000 };
	struct hashtab t = {0};
	struct item *items = calloc(N, sizeof(*items));
	assert_non_null(items);
	size_t sizes_seen = 0, last = 0;
	for (int i = 0; i < N; i++) {
		items[i].key = i;
		assert_true(hashtab_insert(&t, &items[i].link, (uint64_t)i * 0x9e3779b97f4a7c15ull));
		if (t.nbuckets != last) {
			sizes_seen++;
			last = t.nbuckets;
		}
		assert_true(t.count <= t.nbuckets); /* load factor at most 1 */
		assert_int_equal(t.nbuckets & (t.nbuckets - 1), 0);
	}
	assert_int_equal(t.count, N);
	assert_true(sizes_seen >= 5); /* 16 .. 1024: grew several times */
	for (int i = 0; i < N; i++)
		assert_ptr_equal(find(&t, (uint64_t)i * 0x9e3779b97f4a7c15ull, i), &items[i]);
	assert_null(find(&t, 12345, 12345));
	hashtab_free(&t);
	assert_null(t.buckets);
	assert_int_equal(t.nbuckets, 0);
	free(items);
}

static void test_colliding_hashes(void **state)
{
	(void)state;
	enum { N = 300 };
	struct hashtab t = {0};
	struct item items[N];
	/* three hashes for everything, two of them in the same bucket at any
	 * size (equal low bits): chains hold links of other hashes too */
	const uint64_t hashes[3] = {7, 7 | (1ull << 40), 8};
	for (int i = 0; i < N; i++) {
		items[i].key = i;
		assert_true(hashtab_insert(&t, &items[i].link, hashes[i % 3]));
	}
	for (int h = 0; h < 3; h++)
		assert_int_equal(count_of_hash(&t, hashes[h]), N / 3);
	for (int i = 0; i < N; i++) {
		assert_ptr_equal(find(&t, hashes[i % 3], i), &items[i]);
		assert_null(find(&t, hashes[(i + 1) % 3], i)); /* right key, other hash */
	}
	assert_null(hashtab_first(&t, 9));

	/* remove from the middle of a chain: the one found between others */
	struct hash_link *first = hashtab_first(&t, hashes[1]);
	struct hash_link *middle = hashtab_next(hashtab_next(first));
	struct hash_link *after = hashtab_next(middle);
	assert_non_null(after);
	int gone = item_of(middle)->key;
	hashtab_remove(&t, middle);
	assert_int_equal(t.count, N - 1);
	assert_ptr_equal(hashtab_next(hashtab_next(first)), after);
	assert_null(find(&t, hashes[1], gone));
	assert_int_equal(count_of_hash(&t, hashes[1]), N / 3 - 1);
	assert_int_equal(count_of_hash(&t, hashes[0]), N / 3);
	/* the head and the tail of a chain too */
	hashtab_remove(&t, first);
	struct hash_link *last = hashtab_first(&t, hashes[0]);
	while (hashtab_next(last))
		last = hashtab_next(last);
	hashtab_remove(&t, last);
	assert_int_equal(count_of_hash(&t, hashes[1]), N / 3 - 2);
	assert_int_equal(count_of_hash(&t, hashes[0]), N / 3 - 1);
	for (int i = 0; i < N; i++)
		if (i != gone && &items[i].link != first && &items[i].link != last)
			assert_ptr_equal(find(&t, hashes[i % 3], i), &items[i]);
	/* a removed link may go in again */
	assert_true(hashtab_insert(&t, middle, hashes[2]));
	assert_ptr_equal(find(&t, hashes[2], gone), item_of(middle));
	hashtab_free(&t);
}

static void test_walk_frees_everything(void **state)
{
	(void)state;
	enum { N = 777 };
	struct hashtab t = {0};
	for (int i = 0; i < N; i++) {
		struct item *it = malloc(sizeof(*it));
		assert_non_null(it);
		it->key = i;
		assert_true(hashtab_insert(&t, &it->link, (uint64_t)(i % 50)));
	}
	char *seen = calloc(N, 1);
	assert_non_null(seen);
	size_t n = 0;
	struct hashtab_walk w = {0};
	for (struct hash_link *l; (l = hashtab_walk(&t, &w));) {
		struct item *it = item_of(l);
		assert_false(seen[it->key]);
		seen[it->key] = 1;
		n++;
		free(it); /* the walk has already moved past it */
	}
	assert_int_equal(n, N);
	hashtab_free(&t);
	assert_int_equal(t.count, 0);
	assert_null(hashtab_first(&t, 3));
	free(seen);
}

static void test_walk_removing(void **state)
{
	(void)state;
	struct hashtab t = {0};
	struct item items[40];
	for (int i = 0; i < 40; i++) {
		items[i].key = i;
		assert_true(hashtab_insert(&t, &items[i].link, (uint64_t)(i % 4)));
	}
	/* the link a walk returns may leave the table on the way */
	struct hashtab_walk w = {0};
	for (struct hash_link *l; (l = hashtab_walk(&t, &w));)
		if (item_of(l)->key % 2)
			hashtab_remove(&t, l);
	assert_int_equal(t.count, 20);
	for (int i = 0; i < 40; i++)
		assert_ptr_equal(find(&t, (uint64_t)(i % 4), i), i % 2 ? NULL : &items[i]);
	hashtab_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_grow_and_find),
		cmocka_unit_test(test_colliding_hashes),
		cmocka_unit_test(test_walk_frees_everything),
		cmocka_unit_test(test_walk_removing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
