/*
 * The plan hint that pins a vector read (routing/pin_hint): it names the
 * relation as the statement names it (alias, quoted names, schema-qualified
 * tables), ignores statements that do not read the table, and refuses the
 * shapes where a hint would be void or wrong (the statement's own hint, the
 * table twice, several statements).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "routing/pin_hint.h"

static const char *hint(const char *sql, enum pin_verdict want)
{
	static char out[512];
	const char *why = NULL;
	out[0] = 0;
	enum pin_verdict v = pin_hint_for(sql, strlen(sql), "public", "items", "\"items_b\"", out, sizeof(out), &why);
	if (v != want)
		fail_msg("%s: verdict %d, wanted %d (%s)", sql, v, want, why ? why : "");
	assert_non_null(why);
	return v == PIN_HINTED ? out : why;
}

static void test_names_the_relation_as_written(void **state)
{
	(void)state;
	assert_string_equal(hint("SELECT id FROM items ORDER BY v <-> $1 LIMIT 10", PIN_HINTED),
	                    "/*+ IndexScan(\"items\" \"items_b\") */ ");
	assert_string_equal(hint("SELECT t.id FROM items t ORDER BY t.v <-> $1 LIMIT 10", PIN_HINTED),
	                    "/*+ IndexScan(\"t\" \"items_b\") */ ");
	assert_string_equal(hint("select x.id from public.items as x order by x.v <=> '[1,2]' limit 5", PIN_HINTED),
	                    "/*+ IndexScan(\"x\" \"items_b\") */ ");
	assert_string_equal(hint("SELECT id FROM ONLY Public.ITEMS ORDER BY v <-> $1 LIMIT 3", PIN_HINTED),
	                    "/*+ IndexScan(\"items\" \"items_b\") */ ");
	assert_string_equal(hint("SELECT \"My\"\"T\".id FROM items \"My\"\"T\" ORDER BY v <-> $1 LIMIT 3", PIN_HINTED),
	                    "/*+ IndexScan(\"My\"\"T\" \"items_b\") */ ");
	/* a join, a subquery, a CTE: the table once, under its own alias */
	assert_string_equal(hint("SELECT d.title FROM docs d JOIN items c ON c.doc_id = d.id ORDER BY c.v <-> $1 LIMIT 5",
	                         PIN_HINTED),
	                    "/*+ IndexScan(\"c\" \"items_b\") */ ");
	assert_string_equal(hint("SELECT * FROM (SELECT id, v <-> $1 AS d FROM items WHERE tenant = 3 ORDER BY d "
	                         "LIMIT 10) s, docs WHERE docs.id = s.id",
	                         PIN_HINTED),
	                    "/*+ IndexScan(\"items\" \"items_b\") */ ");
	assert_string_equal(hint("WITH q AS (SELECT $1::vector AS v) SELECT i.id FROM q, items i ORDER BY i.v <-> q.v "
	                         "LIMIT 4",
	                         PIN_HINTED),
	                    "/*+ IndexScan(\"i\" \"items_b\") */ ");
	/* an application comment before the text: ours goes first, theirs stays */
	assert_string_equal(hint("-- app\nSELECT id FROM items ORDER BY v <-> $1 LIMIT 10", PIN_HINTED),
	                    "/*+ IndexScan(\"items\" \"items_b\") */ ");
}

static void test_other_tables_are_not_read(void **state)
{
	(void)state;
	hint("SELECT id FROM other ORDER BY v <-> $1 LIMIT 10", PIN_NOT_READ);
	hint("SELECT id FROM app.items ORDER BY v <-> $1 LIMIT 10", PIN_NOT_READ); /* another schema */
	hint("SELECT items FROM other ORDER BY v <-> $1", PIN_NOT_READ);             /* a column, no relation */
	hint("SELECT * FROM items_archive ORDER BY v <-> $1 LIMIT 1", PIN_NOT_READ);
	hint("SELECT * FROM generate_series(1, 3) items ORDER BY 1", PIN_NOT_READ); /* a function's alias */
	hint("SELECT v <-> $1 FROM items WHERE id = 3", PIN_NOT_READ); /* no ORDER BY: no vector index can serve it */
}

static void test_unsafe_shapes(void **state)
{
	(void)state;
	assert_string_equal(hint("/*+ SeqScan(items) */ SELECT id FROM items ORDER BY v <-> $1 LIMIT 10", PIN_UNSAFE),
	                    "it carries its own plan hint");
	hint("SELECT /*+ IndexScan(items items_a) */ id FROM items ORDER BY v <-> $1 LIMIT 10", PIN_UNSAFE);
	assert_string_equal(hint("SELECT a.id FROM items a, items b WHERE a.id = b.id ORDER BY a.v <-> $1 LIMIT 1",
	                         PIN_UNSAFE),
	                    "it names the table more than once");
	assert_string_equal(hint("SELECT 1; SELECT id FROM items ORDER BY v <-> '[1]' LIMIT 1", PIN_UNSAFE),
	                    "the text holds more than one statement");
	/* a trailing semicolon is one statement */
	hint("SELECT id FROM items ORDER BY v <-> $1 LIMIT 10;", PIN_HINTED);
	/* a hint-looking string later in the text is no hint of the statement */
	hint("SELECT id, '/*+ x */' FROM items ORDER BY v <-> $1 LIMIT 10", PIN_HINTED);
}

static void test_quote_ident(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(pin_quote_ident("a\"b", out, sizeof(out)), 0);
	assert_string_equal(out, "\"a\"\"b\"");
	assert_int_equal(pin_quote_ident("0123456789abcdef", out, sizeof(out)), -1);
	/* index names a comment cannot carry are refused, never cut */
	char list[64];
	const char *bad[] = {"x*/y"}, *two[] = {"items_b", "Items\"pkey"};
	assert_int_equal(pin_index_list(bad, 1, list, sizeof(list)), -1);
	assert_int_equal(pin_index_list(two, 2, list, sizeof(list)), 0);
	assert_string_equal(list, "\"items_b\" \"Items\"\"pkey\"");
	assert_int_equal(pin_index_list(two, 2, list, 12), -1);
}

static void retarget(const char *sql, const char *want)
{
	char out[512];
	const char *why = NULL;
	int rc = pin_retarget(sql, strlen(sql), "public", "items", "public.items_p1", out, sizeof(out), &why);
	if (!want) {
		assert_int_equal(rc, -1);
		assert_true(why && why[0]);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(out, want);
}

/* a rolling rebuild gates one partition with the eval query restricted to it */
static void test_retarget_to_a_partition(void **state)
{
	(void)state;
	/* no alias: the table's name stays the alias, so items.v still resolves */
	retarget("SELECT id FROM items ORDER BY items.v <-> $1 LIMIT $2",
	         "SELECT id FROM public.items_p1 AS items ORDER BY items.v <-> $1 LIMIT $2");
	retarget("SELECT id FROM public.\"items\" ORDER BY v <-> $1 LIMIT $2",
	         "SELECT id FROM public.items_p1 AS \"items\" ORDER BY v <-> $1 LIMIT $2");
	/* an alias of its own is kept */
	retarget("select i.id from ONLY items AS i where i.t = $3 order by i.v <-> $1 limit $2",
	         "select i.id from ONLY public.items_p1 AS i where i.t = $3 order by i.v <-> $1 limit $2");
	retarget("SELECT id FROM items i JOIN tags t ON t.id = i.id ORDER BY v <-> $1 LIMIT $2",
	         "SELECT id FROM public.items_p1 i JOIN tags t ON t.id = i.id ORDER BY v <-> $1 LIMIT $2");
	/* another schema's items, a string or a column named so are not the table */
	retarget("SELECT id FROM other.items ORDER BY v <-> $1 LIMIT $2", NULL);
	retarget("SELECT 'FROM items' FROM docs ORDER BY v <-> $1 LIMIT $2", NULL);
	/* twice, or two statements: no single reference to replace */
	retarget("SELECT id FROM items WHERE id IN (SELECT id FROM items) ORDER BY v <-> $1 LIMIT $2", NULL);
	retarget("SELECT id FROM items ORDER BY v <-> $1 LIMIT $2; SELECT 1", NULL);
	char small[20];
	const char *why;
	assert_int_equal(pin_retarget("SELECT id FROM items", 20, "public", "items", "public.items_p1", small,
	                              sizeof(small), &why),
	                 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_the_relation_as_written),
		cmocka_unit_test(test_other_tables_are_not_read),
		cmocka_unit_test(test_unsafe_shapes),
		cmocka_unit_test(test_quote_ident),
		cmocka_unit_test(test_retarget_to_a_partition),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
