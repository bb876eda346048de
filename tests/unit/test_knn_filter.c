/*
 * The filter of a filtered eval query, applied by the exact scan to each
 * row (routing/knn_filter.h): values read the way the server's input
 * functions read them or refused, cells decoded from binary COPY, and
 * PostgreSQL's comparison semantics (NULL, NaN, integer widths, bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "routing/knn_filter.h"

static struct knn_query parse(const char *where)
{
	char sql[600], why[200];
	struct knn_query q;
	snprintf(sql, sizeof(sql), "SELECT id FROM t WHERE %s ORDER BY e <-> $1 LIMIT $2", where);
	if (knn_query_parse(sql, &q, why, sizeof(why)) < 0)
		fail_msg("%s: %s", where, why);
	return q;
}

/* big-endian send formats */
static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static struct knn_cell cell_int(int64_t v, int width)
{
	uint8_t b[8];
	struct knn_cell c;
	put_be(b, (uint64_t)v, width);
	assert_int_equal(knn_cell_decode(KNN_COL_INT8, b, width, &c), 0);
	return c;
}

static struct knn_cell cell_f8(double d)
{
	uint8_t b[8];
	uint64_t u;
	memcpy(&u, &d, 8);
	put_be(b, u, 8);
	struct knn_cell c;
	assert_int_equal(knn_cell_decode(KNN_COL_FLOAT8, b, 8, &c), 0);
	return c;
}

static struct knn_cell cell_null(void)
{
	struct knn_cell c;
	assert_int_equal(knn_cell_decode(KNN_COL_INT4, NULL, -1, &c), 0);
	return c;
}

static void test_integers(void **state)
{
	(void)state;
	struct knn_query q = parse("tenant_id = $3 AND n IN (1, 2, -3) AND m BETWEEN 10 AND $4 AND z IS NULL");
	enum knn_coltype types[] = {KNN_COL_INT4, KNN_COL_INT2, KNN_COL_INT8, KNN_COL_INT4};
	const char *params[] = {NULL, NULL, "10", " 7 ", "20"};
	struct knn_bound b;
	char why[300];
	assert_int_equal(knn_filter_bind(&q.filter, types, params, 5, &b, why, sizeof(why)), 0);
	struct knn_cell row[4] = {cell_int(7, 4), cell_int(-3, 2), cell_int(20, 8), cell_null()};
	assert_true(knn_filter_match(&b, row));
	row[0] = cell_int(8, 4);
	assert_false(knn_filter_match(&b, row));
	row[0] = cell_int(7, 4);
	row[2] = cell_int(21, 8);
	assert_false(knn_filter_match(&b, row)); /* BETWEEN is inclusive */
	row[2] = cell_int(10, 8);
	assert_true(knn_filter_match(&b, row));
	row[3] = cell_int(0, 4);
	assert_false(knn_filter_match(&b, row));
	row[3] = cell_null();
	row[1] = cell_null();
	assert_false(knn_filter_match(&b, row)); /* NULL IN (...) is not true */

	/* values the server would not read as the column's type: refused */
	const char *bad[] = {"3.5", "x", "99999", "", "1e3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *p2[] = {NULL, NULL, "10", bad[i], "20"};
		enum knn_coltype t2[] = {KNN_COL_INT2, KNN_COL_INT2, KNN_COL_INT8, KNN_COL_INT4};
		why[0] = 0;
		assert_int_equal(knn_filter_bind(&q.filter, t2, p2, 5, &b, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "column tenant_id"));
	}
	const char *missing[] = {NULL, NULL, "10", "7"};
	assert_int_equal(knn_filter_bind(&q.filter, types, missing, 4, &b, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no value for $4"));
	/* a numeric literal against an integer column compares as numeric: refused */
	q = parse("n < 3.5");
	enum knn_coltype t1[] = {KNN_COL_INT4};
	assert_int_equal(knn_filter_bind(&q.filter, t1, params, 3, &b, why, sizeof(why)), -1);
	/* $2 is k */
	q = parse("n >= $2");
	assert_int_equal(knn_filter_bind(&q.filter, t1, params, 3, &b, why, sizeof(why)), 0);
	struct knn_cell r1[] = {cell_int(10, 4)};
	assert_true(knn_filter_match(&b, r1));
}

static void test_floats(void **state)
{
	(void)state;
	struct knn_query q = parse("score > 0.5 AND w = 'NaN'");
	enum knn_coltype types[] = {KNN_COL_FLOAT8, KNN_COL_FLOAT8};
	struct knn_bound b;
	char why[300];
	assert_int_equal(knn_filter_bind(&q.filter, types, NULL, 0, &b, why, sizeof(why)), 0);
	struct knn_cell row[] = {cell_f8(0.75), cell_f8(NAN)};
	assert_true(knn_filter_match(&b, row)); /* NaN = NaN in PostgreSQL */
	row[0] = cell_f8(NAN);
	assert_true(knn_filter_match(&b, row)); /* NaN sorts after every number */
	row[0] = cell_f8(0.5);
	assert_false(knn_filter_match(&b, row));
	/* float4: a parameter is read as float4, a number literal compares in double */
	q = parse("f = $3");
	enum knn_coltype f4[] = {KNN_COL_FLOAT4};
	const char *params[] = {NULL, NULL, NULL, "0.1"};
	assert_int_equal(knn_filter_bind(&q.filter, f4, params, 4, &b, why, sizeof(why)), 0);
	uint8_t bytes[4];
	float tenth = 0.1f;
	uint32_t u;
	memcpy(&u, &tenth, 4);
	put_be(bytes, u, 4);
	struct knn_cell c;
	assert_int_equal(knn_cell_decode(KNN_COL_FLOAT4, bytes, 4, &c), 0);
	assert_true(knn_filter_match(&b, &c));
	q = parse("f = 0.1");
	assert_int_equal(knn_filter_bind(&q.filter, f4, params, 4, &b, why, sizeof(why)), 0);
	assert_false(knn_filter_match(&b, &c)); /* (double)0.1f != 0.1 */
	assert_int_equal(knn_cell_decode(KNN_COL_FLOAT4, bytes, 8, &c), -1);
}

static void test_text_bool_uuid(void **state)
{
	(void)state;
	struct knn_query q = parse("lang IN ('en', $3) AND ok = $4 AND u = $5 AND v > '00000000-0000-0000-0000-000000000001'");
	enum knn_coltype types[] = {KNN_COL_TEXT, KNN_COL_BOOL, KNN_COL_UUID, KNN_COL_UUID};
	const char *params[] = {NULL, NULL, NULL, "it's", "Y", "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"};
	struct knn_bound b;
	char why[300];
	assert_int_equal(knn_filter_bind(&q.filter, types, params, 6, &b, why, sizeof(why)), 0);
	static const uint8_t uuid[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
	                                 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
	uint8_t one = 1;
	struct knn_cell row[4];
	assert_int_equal(knn_cell_decode(KNN_COL_TEXT, (const uint8_t *)"it's", 4, &row[0]), 0);
	assert_int_equal(knn_cell_decode(KNN_COL_BOOL, &one, 1, &row[1]), 0);
	assert_int_equal(knn_cell_decode(KNN_COL_UUID, uuid, 16, &row[2]), 0);
	assert_int_equal(knn_cell_decode(KNN_COL_UUID, uuid, 16, &row[3]), 0);
	assert_true(knn_filter_match(&b, row));
	assert_int_equal(knn_cell_decode(KNN_COL_TEXT, (const uint8_t *)"it'", 3, &row[0]), 0);
	assert_false(knn_filter_match(&b, row)); /* bytes, whole */
	assert_int_equal(knn_cell_decode(KNN_COL_TEXT, (const uint8_t *)"en", 2, &row[0]), 0);
	assert_true(knn_filter_match(&b, row));
	assert_int_equal(knn_cell_decode(KNN_COL_UUID, uuid, 15, &row[2]), -1);

	/* text ranges depend on the collation; bad bools and uuids are refused */
	q = parse("lang > 'a'");
	assert_int_equal(knn_filter_bind(&q.filter, types, params, 6, &b, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "depends on its collation"));
	q = parse("ok = 'maybe'");
	enum knn_coltype bt[] = {KNN_COL_BOOL};
	assert_int_equal(knn_filter_bind(&q.filter, bt, params, 6, &b, why, sizeof(why)), -1);
	q = parse("ok = 'o'"); /* on or off? */
	assert_int_equal(knn_filter_bind(&q.filter, bt, params, 6, &b, why, sizeof(why)), -1);
	q = parse("u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'");
	enum knn_coltype ut[] = {KNN_COL_UUID};
	assert_int_equal(knn_filter_bind(&q.filter, ut, params, 6, &b, why, sizeof(why)), -1);
	q = parse("u = 'a0eebc999c0b4ef8bb6d6bb9bd380a11'");
	assert_int_equal(knn_filter_bind(&q.filter, ut, params, 6, &b, why, sizeof(why)), 0);
	q = parse("lang = 3");
	enum knn_coltype tt[] = {KNN_COL_TEXT};
	assert_int_equal(knn_filter_bind(&q.filter, tt, params, 6, &b, why, sizeof(why)), -1);
}

static void test_coltypes(void **state)
{
	(void)state;
	enum knn_coltype t;
	char why[300];
	assert_int_equal(knn_coltype_of("a", 23, "integer", true, &t, why, sizeof(why)), 0);
	assert_int_equal(t, KNN_COL_INT4);
	assert_int_equal(knn_coltype_of("a", 1043, "character varying(10)", true, &t, why, sizeof(why)), 0);
	assert_int_equal(t, KNN_COL_TEXT);
	assert_int_equal(knn_coltype_of("a", 25, "text", false, &t, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "nondeterministic collation"));
	assert_int_equal(knn_coltype_of("created", 1184, "timestamp with time zone", true, &t, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "filter column created is of type timestamp with time zone"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_floats),
		cmocka_unit_test(test_text_bool_uuid),
		cmocka_unit_test(test_coltypes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
