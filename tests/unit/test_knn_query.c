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

	/* a rolling rebuild's eval query restricted to one partition (pin_retarget): the table's name stays
	 * as the alias, and the exact scan reads the partition */
	q = parse_ok("SELECT id FROM public.docs_t1 AS docs ORDER BY docs.v <-> $1::vector LIMIT $2");
	assert_string_equal(q.schema, "public");
	assert_string_equal(q.table, "docs_t1");
	assert_string_equal(q.vector_column, "v");

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
		"SELECT id FROM items WHERE tenant = 1 OR tenant = 2 ORDER BY embedding <-> $1 LIMIT $2",
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

/* The WHERE clauses one pass applies itself, and the ones it leaves to
 * per-query ground truth, with the reason. */
static void test_filter(void **state)
{
	(void)state;
	struct knn_query q = parse_ok("SELECT id FROM docs WHERE tenant_id = $3 ORDER BY embedding <-> $1 LIMIT $2");
	const struct knn_filter *f = &q.filter;
	assert_int_equal(f->n_terms, 1);
	assert_int_equal(f->n_columns, 1);
	assert_string_equal(f->columns[0], "tenant_id");
	assert_int_equal(f->terms[0].cmp, KNN_EQ);
	assert_int_equal(f->values[0].kind, KNN_V_PARAM);
	assert_int_equal(f->values[0].param, 3);
	assert_int_equal(f->max_param, 3);
	char sql[600];
	assert_int_equal(knn_copy_sql(&q, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "COPY (SELECT id, embedding, tenant_id FROM docs) TO STDOUT (FORMAT binary)");

	q = parse_ok("SELECT d.id FROM docs d WHERE d.tenant_id IN (1, 2, -3) AND lang = 'it''s' AND score BETWEEN 0.5 "
	             "AND $4::float8 AND deleted_at IS NULL AND \"Flag\" IS NOT NULL AND ok = true AND n >= $2 AND "
	             "tenant_id < 9 ORDER BY d.embedding <=> $1::vector LIMIT $2");
	assert_int_equal(f->n_terms, 8);
	assert_int_equal(f->n_columns, 7);
	assert_int_equal(f->max_param, 4);
	static const enum knn_cmp cmps[] = {KNN_IN, KNN_EQ, KNN_BETWEEN, KNN_IS_NULL, KNN_IS_NOT_NULL, KNN_EQ, KNN_GE,
	                                    KNN_LT};
	for (int i = 0; i < 8; i++)
		assert_int_equal(f->terms[i].cmp, cmps[i]);
	assert_int_equal(f->terms[0].n_values, 3);
	assert_string_equal(f->values[2].text, "-3");
	assert_int_equal(f->values[3].kind, KNN_V_STRING);
	assert_string_equal(f->values[3].text, "it's");
	assert_int_equal(f->values[4].kind, KNN_V_NUMBER);
	assert_string_equal(f->values[4].text, "0.5");
	assert_int_equal(f->values[5].param, 4);
	assert_int_equal(f->terms[3].n_values, 0);
	assert_string_equal(f->columns[f->terms[4].column], "Flag");
	assert_int_equal(f->values[6].kind, KNN_V_BOOL);
	assert_int_equal(f->terms[7].column, 0); /* tenant_id again: read once */
	assert_int_equal(knn_copy_sql(&q, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "COPY (SELECT id, embedding, tenant_id, lang, score, deleted_at, \"Flag\", ok, n FROM "
	                         "docs) TO STDOUT (FORMAT binary)");

	static const struct {
		const char *where, *why;
	} refused[] = {
		{"a = 1 OR a = 2", "OR in the WHERE clause"},
		{"a NOT IN (1)", "expected =, <, <=, >, >=, IN, BETWEEN or IS [NOT] NULL"},
		{"a <> 1", "expected =, <, <=, >, >=, IN"},
		{"(a = 1)", "expected a column"},
		{"NOT a = 1", "expected =, <"},
		{"a = b", "expected a value"},
		{"a = $1", "the query vector $1 in the filter"},
		{"a = $17", "a parameter the filter cannot use"},
		{"lower(a) = 'x'", "expected =, <"},
		{"a = E'x'", "expected a value"},
		{"a = $$x$$", "expected a value"},
		{"a IN ()", "expected a value"},
		{"a BETWEEN SYMMETRIC 1 AND 2", "not a simple predicate"},
		{"a BETWEEN 1 OR 2", "expected AND"},
		{"a IS TRUE", "expected IS [NOT] NULL"},
		{"a LIKE 'x'", "expected =, <"},
		{"a = - b", "expected a number after '-'"},
		{"o.a = 1", "expected a column"},
		{"a = 1 AND b = 1 AND c = 1 AND d = 1 AND e = 1 AND f = 1 AND g = 1 AND h = 1 AND i = 1", "more terms"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
		char query[400], why[200] = "";
		snprintf(query, sizeof(query), "SELECT id FROM docs WHERE %s ORDER BY embedding <-> $1 LIMIT $2",
		         refused[i].where);
		if (knn_query_parse(query, &q, why, sizeof(why)) == 0)
			fail_msg("recognised, but must not be: %s", query);
		if (!strstr(why, refused[i].why))
			fail_msg("%s: \"%s\", want \"%s\"", refused[i].where, why, refused[i].why);
	}
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
		cmocka_unit_test(test_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
