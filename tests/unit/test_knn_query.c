/*
 * Which eval queries one exact scan may answer (routing/knn_query): the
 * plain k-NN shapes operators write are recognised with their table,
 * columns, metric and cast; everything that filters, joins, orders
 * otherwise or is not a vector metric is refused with a reason; the COPY
 * statement quotes what it must; the catalog check refuses columns the scan
 * cannot decode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "routing/knn_query.h"

static struct knn_query parse_ok(const char *sql)
{
	struct knn_query q;
	char why[200] = "";
	if (knn_query_parse(sql, &q, why, sizeof(why)) != 0)
		fail_msg("not recognised: %s (%s)", sql, why);
	return q;
}

static void test_recognised(void **state)
{
	(void)state;
	struct knn_query q = parse_ok("SELECT id FROM items ORDER BY embedding <=> $1::vector LIMIT $2");
	assert_string_equal(q.schema, "");
	assert_string_equal(q.table, "items");
	assert_string_equal(q.id_column, "id");
	assert_string_equal(q.vector_column, "embedding");
	assert_int_equal(q.metric, VDIST_COSINE);
	assert_string_equal(q.cast_type, "vector");
	assert_false(q.id_tiebreak);

	q = parse_ok("select i.id from public.items i order by i.embedding <-> $1::halfvec(3) asc nulls last, i.id "
	             "limit $2;");
	assert_string_equal(q.schema, "public");
	assert_string_equal(q.table, "items");
	assert_int_equal(q.metric, VDIST_L2);
	assert_string_equal(q.cast_type, "halfvec");
	assert_int_equal(q.cast_dims, 3);
	assert_true(q.id_tiebreak);

	q = parse_ok("SELECT \"Id\" FROM \"My Items\" AS t ORDER BY t.\"Emb\"<+>$1 LIMIT $2");
	assert_string_equal(q.table, "My Items");
	assert_string_equal(q.id_column, "Id");
	assert_string_equal(q.vector_column, "Emb");
	assert_int_equal(q.metric, VDIST_L1);
	assert_string_equal(q.cast_type, "");

	q = parse_ok("SELECT id /* the key */ FROM items -- comment\n ORDER BY embedding <#> $1::public.vector LIMIT $2");
	assert_int_equal(q.metric, VDIST_IP);
	assert_string_equal(q.cast_type, "vector");

	q = parse_ok("SELECT ID FROM Items ORDER BY Embedding <-> $1 LIMIT $2"); /* folded like the server */
	assert_string_equal(q.table, "items");
	assert_string_equal(q.id_column, "id");
	q = parse_ok("SELECT items.id FROM items ORDER BY items.embedding <-> $1, id LIMIT $2");
	assert_true(q.id_tiebreak);
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const refused[] = {
		"SELECT id FROM items WHERE tenant = 1 ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT id FROM items JOIN meta USING (id) ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT id FROM items, meta ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT s.id FROM (SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2) s, pg_sleep(0.03)",
		"SELECT id, embedding <-> $1 AS d FROM items ORDER BY d LIMIT $2",
		"SELECT * FROM items ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1 DESC LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1 NULLS FIRST LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10",
		"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT $2 OFFSET 5",
		"SELECT id FROM items ORDER BY embedding <~> $1 LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <%> $1 LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1::cube LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1::sparsevec LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $2 LIMIT $1",
		"SELECT id FROM items ORDER BY embedding <-> $1, created_at LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1, id DESC LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT $2; SELECT 1",
		"SELECT x.id FROM items ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT id FROM items i ORDER BY other.embedding <-> $1 LIMIT $2",
		"SELECT id FROM items ORDER BY '<->' LIMIT $2",
		"SELECT id FROM items ORDER BY (embedding <-> $1) LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1::vector(0) LIMIT $2",
		"SELECT DISTINCT id FROM items ORDER BY embedding <-> $1 LIMIT $2",
		"WITH x AS (SELECT 1) SELECT id FROM items ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT \"a\"\"b\" FROM items ORDER BY embedding <-> $1 LIMIT $2",
		"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT $2 FOR UPDATE",
		"",
		"SELECT",
		"SELECT id FROM items ORDER BY embedding <-> $1 LIMIT",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
		struct knn_query q;
		char why[200] = "";
		if (knn_query_parse(refused[i], &q, why, sizeof(why)) == 0)
			fail_msg("recognised, but must not be: %s", refused[i]);
		assert_true(why[0] != 0);
	}
	struct knn_query q;
	char why[200];
	assert_int_equal(knn_query_parse("SELECT id FROM items WHERE x ORDER BY e <-> $1 LIMIT $2", &q, why, sizeof(why)),
	                 -1);
	assert_non_null(strstr(why, "WHERE"));
	char longq[4096] = "SELECT id FROM items ORDER BY e <-> $1";
	for (int i = 0; i < 70; i++)
		strcat(longq, " /**/ ");
	strcat(longq, ", id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, id, "
	              "id, id, id, id, id, id, id, id, id, id, id LIMIT $2");
	assert_int_equal(knn_query_parse(longq, &q, why, sizeof(why)), -1);
}

static void test_statements(void **state)
{
	(void)state;
	char sql[600], rel[300];
	struct knn_query q = parse_ok("SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2");
	assert_int_equal(knn_copy_sql(&q, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "COPY (SELECT id, embedding FROM public.items) TO STDOUT (FORMAT binary)");
	q = parse_ok("SELECT \"Id\" FROM \"My Items\" ORDER BY \"select\" <-> $1 LIMIT $2");
	assert_int_equal(knn_copy_sql(&q, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "COPY (SELECT \"Id\", \"select\" FROM \"My Items\") TO STDOUT (FORMAT binary)");
	knn_relation(&q, rel, sizeof(rel));
	assert_string_equal(rel, "\"My Items\"");
	assert_int_equal(knn_copy_sql(&q, sql, 20), -1);
}

static void test_probe_check(void **state)
{
	(void)state;
	char why[200];
	enum vec_type t;
	struct knn_query q = parse_ok("SELECT id FROM items ORDER BY embedding <=> $1::halfvec LIMIT $2");
	assert_int_equal(knn_probe_check(&q, true, 20, "halfvec", "halfvec_send", &t, why, sizeof(why)), 0);
	assert_int_equal(t, VEC_FLOAT16);
	assert_int_equal(knn_probe_check(&q, true, 23, "vector", "vector_send", &t, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "cast to halfvec"));
	q = parse_ok("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT $2");
	assert_int_equal(knn_probe_check(&q, true, 21, "vector", "vector_send", &t, why, sizeof(why)), 0);
	assert_int_equal(t, VEC_FLOAT32);
	assert_int_equal(knn_probe_check(&q, false, 0, NULL, NULL, &t, why, sizeof(why)), -1);
	assert_int_equal(knn_probe_check(&q, true, 1700, "vector", "vector_send", &t, why, sizeof(why)), -1); /* numeric */
	assert_non_null(strstr(why, "bigint"));
	assert_int_equal(knn_probe_check(&q, true, 0, "vector", "vector_send", &t, why, sizeof(why)), -1);
	assert_int_equal(knn_probe_check(&q, true, 20, NULL, NULL, &t, why, sizeof(why)), -1);
	assert_int_equal(knn_probe_check(&q, true, 20, "sparsevec", "sparsevec_send", &t, why, sizeof(why)), -1);
	assert_int_equal(knn_probe_check(&q, true, 20, "cube", "cube_send", &t, why, sizeof(why)), -1);
}

/* What the index shape checks read from a query: its distance operator
 * and the column side, comparable with pg_get_indexdef's key. */
static void use_is(const char *sql, const char *op, const char *operand)
{
	struct knn_distance_use u;
	assert_int_equal(knn_distance_use(sql, &u), 0);
	assert_string_equal(u.op, op);
	if (strcmp(u.operand, operand))
		fail_msg("%s: operand \"%s\", want \"%s\"", sql, u.operand, operand);
}

static void norm_is(const char *expr, const char *want)
{
	char out[512];
	assert_int_equal(knn_expr_normalize(expr, out, sizeof(out)), 0);
	if (strcmp(out, want))
		fail_msg("%s: \"%s\", want \"%s\"", expr, out, want);
}

static void test_distance_use(void **state)
{
	(void)state;
	use_is("SELECT id FROM items ORDER BY embedding <-> $1::vector LIMIT $2", "<->", "embedding");
	use_is("SELECT id FROM items i ORDER BY i.Embedding <=> $1 LIMIT $2", "<=>", "embedding");
	use_is("SELECT id FROM t ORDER BY embedding::halfvec(3) <-> $1::halfvec(3) LIMIT $2", "<->",
	       "embedding::halfvec(3)");
	use_is("SELECT id FROM t ORDER BY $1::vector <#> \"Emb\" LIMIT $2", "<#>", "\"Emb\"");
	use_is("SELECT id, content, embedding <=> $1 AS distance FROM docs WHERE collection_id = $3 ORDER BY distance "
	       "LIMIT $2", "<=>", "embedding");
	use_is("SELECT id FROM t ORDER BY 1 - (embedding <=> '[1,2]') LIMIT 5", "<=>", "embedding");
	use_is("SELECT id FROM t ORDER BY a <-> b LIMIT 5", "<->", ""); /* no query vector: sides unknown */
	struct knn_distance_use u;
	assert_int_equal(knn_distance_use("SELECT id FROM t ORDER BY id LIMIT 5", &u), -1);

	/* pg_get_indexdef's keys read like the queries' operands */
	norm_is("((embedding)::halfvec(3))", "embedding::halfvec(3)");
	norm_is("embedding::public.halfvec(3)", "embedding::halfvec(3)");
	norm_is("(embedding)", "embedding");
	norm_is("\"embedding\"", "embedding");
	norm_is("\"Embedding\"", "\"Embedding\"");
	norm_is("\"Emb Idx\"+1", "\"Emb Idx\" + 1");
	norm_is("(lower(title))", "lower(title)");
	char out[16];
	assert_int_equal(knn_expr_normalize("", out, sizeof(out)), -1);
	assert_int_equal(knn_expr_normalize("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recognised),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_statements),
		cmocka_unit_test(test_probe_check),
		cmocka_unit_test(test_distance_use),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
