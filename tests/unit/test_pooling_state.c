/*
 * Unit tests for the transaction-pooling bookkeeping in proxy/: the pending
 * response queue (ring growth and order), the statement registry (same text
 * -> same id, different text or param types -> new id), client name maps,
 * server id sets, and the SET/RESET batch the varcache produces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/conn.h"

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
	struct prep_stmt *sa = registry_intern(&r, a, sizeof(a) - 1);
	struct prep_stmt *sb = registry_intern(&r, b, sizeof(b) - 1);
	struct prep_stmt *sat = registry_intern(&r, a_typed, sizeof(a_typed) - 1);
	assert_ptr_equal(registry_intern(&r, a, sizeof(a) - 1), sa);
	assert_int_not_equal(sa->id, sb->id);
	assert_int_not_equal(sa->id, sat->id);
	/* survive rehashing */
	char q[64];
	uint32_t ids[500];
	for (int i = 0; i < 500; i++) {
		int n = snprintf(q, sizeof(q), "SELECT %d", i + 100);
		ids[i] = registry_intern(&r, (const uint8_t *)q, (size_t)n + 1)->id;
	}
	for (int i = 0; i < 500; i++) {
		int n = snprintf(q, sizeof(q), "SELECT %d", i + 100);
		assert_int_equal(registry_intern(&r, (const uint8_t *)q, (size_t)n + 1)->id, ids[i]);
	}
	assert_int_equal(r.count, 503);
	char name[24];
	stmt_server_name(sa->id, name);
	assert_string_equal(name, "vg_1");
	registry_free(&r);
}

static void test_name_map_and_ids(void **state)
{
	(void)state;
	struct name_map m = {0};
	struct prep_stmt x = {.id = 7}, y = {.id = 9};
	char n[32];
	for (int i = 0; i < 100; i++) {
		snprintf(n, sizeof(n), "s%d", i);
		name_map_put(&m, n, i % 2 ? &x : &y);
	}
	assert_ptr_equal(name_map_get(&m, "s3"), &x);
	assert_ptr_equal(name_map_get(&m, "s4"), &y);
	name_map_put(&m, "s3", &y);
	assert_ptr_equal(name_map_get(&m, "s3"), &y);
	name_map_del(&m, "s3");
	assert_null(name_map_get(&m, "s3"));
	assert_null(name_map_get(&m, "nope"));
	assert_int_equal(m.count, 99);
	name_map_free(&m);

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pending_ring),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_name_map_and_ids),
		cmocka_unit_test(test_varcache_sync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
