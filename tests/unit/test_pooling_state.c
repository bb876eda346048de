/*
 * Unit tests for the transaction-pooling bookkeeping in proxy/: the pending
 * response queue (ring growth and order), the statement registry (same text
 * -> same id, different text or param types -> new id), client name maps,
 * server id sets, the SET/RESET batch the varcache produces, and the shared
 * strings and variable sets that keep an idle client small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/conn.h"
#include "proxy/strpool.h"

#define NOCAP ((size_t)1 << 40) /* a statement cache nothing exceeds */

static void test_pending_ring(void **state)
{
	(void)state;
	struct pending_queue q = {0};
	/* interleave pushes and pops so the ring wraps while growing */
	uint32_t next_push = 1, next_pop = 1;
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 7; i++) {
			struct pending p = {.kind = PD_FORWARD, .req = 'E', .stmt = next_push++};
			pq_push(&q, p);
		}
		for (int i = 0; i < 5; i++) {
			assert_non_null(pq_head(&q));
			assert_int_equal(pq_head(&q)->stmt, next_pop++);
			pq_pop(&q);
		}
	}
	assert_int_equal(q.count, 100);
	while (q.count) {
		assert_int_equal(pq_head(&q)->stmt, next_pop++);
		pq_pop(&q);
	}
	assert_null(pq_head(&q));
	pq_free(&q);
}

static void test_registry(void **state)
{
	(void)state;
	struct stmt_registry r = {0};
	const uint8_t a[] = "SELECT 1\0\0\0";
	const uint8_t b[] = "SELECT 2\0\0\0";
	const uint8_t a_typed[] = "SELECT 1\0\0\1\0\0\0\x17";
	struct prep_stmt *sa = registry_intern(&r, a, sizeof(a) - 1, NOCAP);
	struct prep_stmt *sb = registry_intern(&r, b, sizeof(b) - 1, NOCAP);
	struct prep_stmt *sat = registry_intern(&r, a_typed, sizeof(a_typed) - 1, NOCAP);
	assert_ptr_equal(registry_intern(&r, a, sizeof(a) - 1, NOCAP), sa);
	assert_int_not_equal(sa->id, sb->id);
	assert_int_not_equal(sa->id, sat->id);
	/* survive rehashing */
	char q[64];
	uint32_t ids[500];
	for (int i = 0; i < 500; i++) {
		int n = snprintf(q, sizeof(q), "SELECT %d", i + 100);
		ids[i] = registry_intern(&r, (const uint8_t *)q, (size_t)n + 1, NOCAP)->id;
	}
	for (int i = 0; i < 500; i++) {
		int n = snprintf(q, sizeof(q), "SELECT %d", i + 100);
		assert_int_equal(registry_intern(&r, (const uint8_t *)q, (size_t)n + 1, NOCAP)->id, ids[i]);
	}
	assert_int_equal(r.texts.count, 503);
	char name[24];
	stmt_server_name(sa->id, name);
	assert_string_equal(name, "vg_1");
	registry_free(&r);
}

/* Statements no client names stay for reuse up to the cache size, oldest
 * released first; held ones are never forgotten; ids are never reused. */
static void test_registry_bounded(void **state)
{
	(void)state;
	struct stmt_registry r = {0};
	struct name_map client = {0};
	char q[64], n[16];
	const size_t cache = 3 * 16; /* three 16-byte texts */
	struct prep_stmt *held = NULL;
	uint32_t max_id = 0;
	for (int i = 0; i < 50; i++) {
		int len = snprintf(q, sizeof(q), "SELECT %07d;", i); /* 15 chars + NUL = 16 bytes */
		struct prep_stmt *st = registry_intern(&r, (const uint8_t *)q, (size_t)len + 1, cache);
		assert_true(st->id > max_id);
		max_id = st->id;
		snprintf(n, sizeof(n), "s%d", i);
		name_map_put(&client, n, st, cache);
		if (i == 0)
			held = st;
		else
			name_map_del(&client, n, cache); /* the client closes all but the first */
	}
	/* the held statement plus at most three unused ones */
	assert_int_equal(r.texts.count, 4);
	assert_int_equal(r.unused_bytes, 48);
	assert_int_equal(r.bytes, 64);
	assert_int_equal(held->refs, 1);
	/* the most recently released ones are the ones kept */
	struct prep_stmt *again = registry_intern(&r, (const uint8_t *)"SELECT 0000049;", 16, cache);
	assert_int_equal(again->id, max_id);
	again = registry_intern(&r, (const uint8_t *)"SELECT 0000001;", 16, cache);
	assert_true(again->id > max_id); /* forgotten: a new id */
	/* the client leaves: its statements join the unused ones, within the cache */
	name_map_free(&client, cache);
	assert_true(r.unused_bytes <= cache);
	assert_int_equal(r.bytes, r.unused_bytes);
	assert_true(r.texts.count <= 3);
	registry_free(&r);
}

static void test_name_map_and_ids(void **state)
{
	(void)state;
	struct name_map m = {0};
	struct stmt_registry r = {0};
	struct prep_stmt *px = registry_intern(&r, (const uint8_t *)"SELECT 7", 9, NOCAP);
	struct prep_stmt *py = registry_intern(&r, (const uint8_t *)"SELECT 9", 9, NOCAP);

	char n[32];
	for (int i = 0; i < 100; i++) {
		snprintf(n, sizeof(n), "s%d", i);
		name_map_put(&m, n, i % 2 ? px : py, NOCAP);
	}
	assert_ptr_equal(name_map_get(&m, "s3"), px);
	assert_ptr_equal(name_map_get(&m, "s4"), py);
	name_map_put(&m, "s3", py, NOCAP);
	assert_ptr_equal(name_map_get(&m, "s3"), py);
	name_map_del(&m, "s3", NOCAP);
	assert_null(name_map_get(&m, "s3"));
	assert_null(name_map_get(&m, "nope"));
	assert_int_equal(m.names.count, 99);
	/* every name holds its statement */
	assert_int_equal(px->refs, 49);
	assert_int_equal(py->refs, 50);
	name_map_free(&m, NOCAP);
	assert_int_equal(px->refs, 0);
	registry_free(&r);

	struct id_set s = {0};
	assert_false(id_set_has(&s, 5));
	id_set_add(&s, 5);
	id_set_add(&s, 4000);
	assert_true(id_set_has(&s, 5));
	assert_true(id_set_has(&s, 4000));
	assert_false(id_set_has(&s, 4001));
	id_set_del(&s, 5);
	assert_false(id_set_has(&s, 5));
	id_set_clear(&s);
	assert_false(id_set_has(&s, 4000));
	assert_int_equal(s.count, 0);
	/* least recently used first: adds append, uses move to the end */
	for (uint32_t id = 1; id <= 5; id++)
		id_set_add(&s, id);
	id_set_touch(&s, 1);
	id_set_add(&s, 3); /* already there: a use */
	const uint32_t want[] = {2, 4, 5, 1, 3};
	assert_int_equal(s.count, 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(s.order[i], want[i]);
	id_set_del(&s, 2);
	id_set_del(&s, 2); /* twice is harmless */
	assert_int_equal(s.count, 4);
	assert_int_equal(s.order[0], 4);
	id_set_touch(&s, 99); /* not there: ignored */
	assert_int_equal(s.count, 4);
	id_set_free(&s);
}

static void test_varcache_sync(void **state)
{
	(void)state;
	struct varcache client = {0}, server = {0};
	varcache_set(&client, VAR_APPLICATION_NAME, "it's mine");
	varcache_set(&client, VAR_CLIENT_ENCODING, "UTF8");
	varcache_set(&server, VAR_CLIENT_ENCODING, "UTF8");
	varcache_set(&server, VAR_SEARCH_PATH, "other");
	struct pg_buf sql;
	buf_init(&sql);
	assert_int_equal(varcache_sync_sql(&client, &server, &sql), 2);
	buf_put_byte(&sql, 0);
	assert_string_equal((char *)sql.data, "SET application_name = 'it''s mine'; RESET search_path; ");
	/* now in sync: nothing more to send */
	buf_reset(&sql);
	assert_int_equal(varcache_sync_sql(&client, &server, &sql), 0);
	assert_int_equal(varcache_lookup("datestyle"), VAR_DATESTYLE);
	assert_int_equal(varcache_lookup("work_mem"), -1);
	buf_free(&sql);
	varcache_clear(&client);
	varcache_clear(&server);
}

static void test_strpool(void **state)
{
	(void)state;
	size_t base = strpool_count();
	char buf[16] = "app";
	const char *a = strpool_get(buf);
	const char *b = strpool_get("app");
	assert_ptr_equal(a, b); /* one copy, not the caller's */
	assert_ptr_not_equal(a, buf);
	assert_ptr_equal(strpool_ref(a), a);
	assert_int_equal(strpool_count(), base + 1);
	strpool_put(a);
	strpool_put(b);
	assert_int_equal(strpool_count(), base + 1);
	strpool_put(a); /* the last reference frees it */
	assert_int_equal(strpool_count(), base);
	/* pinned strings outlive any number of gets and puts */
	const char *p = strpool_pin("route-x");
	assert_ptr_equal(strpool_get("route-x"), p);
	strpool_put(p);
	strpool_put(p);
	assert_string_equal(strpool_pin("route-x"), "route-x");
	/* many distinct strings: the table grows and gives them all back */
	const char *many[500];
	for (int i = 0; i < 500; i++) {
		snprintf(buf, sizeof(buf), "v%d", i);
		many[i] = strpool_get(buf);
	}
	for (int i = 0; i < 500; i++) {
		snprintf(buf, sizeof(buf), "v%d", i);
		assert_ptr_equal(strpool_get(buf), many[i]);
		strpool_put(many[i]);
		strpool_put(many[i]);
	}
	assert_int_equal(strpool_count(), base + 1); /* route-x */
	strpool_put(NULL);
}

static void test_varset(void **state)
{
	(void)state;
	size_t base = varset_count();
	/* two clients reaching the same values share one set */
	const struct varcache *a = varset_with(NULL, VAR_CLIENT_ENCODING, "UTF8");
	a = varset_with(a, VAR_DATESTYLE, "ISO, MDY");
	const struct varcache *b = varset_with(NULL, VAR_DATESTYLE, "ISO, MDY");
	b = varset_with(b, VAR_CLIENT_ENCODING, "UTF8");
	assert_ptr_equal(a, b);
	assert_int_equal(varset_count(), base + 1);
	assert_ptr_equal(varset_with(a, VAR_CLIENT_ENCODING, "UTF8"), a); /* unchanged: same set, same reference */
	/* a change gives the changer its own set; the other keeps the old one */
	b = varset_with(b, VAR_APPLICATION_NAME, "mine");
	assert_ptr_not_equal(a, b);
	assert_string_equal(varset_get(b, VAR_APPLICATION_NAME), "mine");
	assert_null(varset_get(a, VAR_APPLICATION_NAME));
	assert_string_equal(varset_get(a, VAR_DATESTYLE), "ISO, MDY");
	/* a server compares by pointer: it takes the client's values */
	struct varcache server = {0};
	struct pg_buf sql;
	buf_init(&sql);
	assert_int_equal(varcache_sync_sql(b, &server, &sql), 3);
	buf_reset(&sql);
	assert_int_equal(varcache_sync_sql(b, &server, &sql), 0);
	assert_int_equal(varcache_sync_sql(NULL, &server, &sql), 3); /* all back to defaults */
	buf_free(&sql);
	/* back to all defaults is no set at all */
	const struct varcache *c = varset_with(NULL, VAR_TIMEZONE, "UTC");
	assert_null(varset_with(c, VAR_TIMEZONE, NULL));
	varset_put(a);
	varset_put(b);
	varset_put(NULL);
	assert_int_equal(varset_count(), base);
	varcache_clear(&server);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pending_ring),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_registry_bounded),
		cmocka_unit_test(test_name_map_and_ids),
		cmocka_unit_test(test_varcache_sync),
		cmocka_unit_test(test_strpool),
		cmocka_unit_test(test_varset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
