/*
 * The SQL classifier against a corpus of tricky statements: vector
 * operators inside strings, comments (nested too), dollar quotes and quoted
 * identifiers must not count, real ones in subqueries and CTEs must; read-only
 * detection is conservative; guarded DDL is recognised with its target.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "routing/classify.h"
#include "routing/ddl_guard.h"

static struct sql_class cls(const char *sql)
{
	struct sql_class c;
	sql_classify(sql, strlen(sql), &c);
	return c;
}

struct vec_case {
	const char *sql;
	bool vector;
	bool read_only;
};

static const struct vec_case vec_cases[] = {
	{"SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 10", true, true},
	{"select id from items order by embedding<=>$1 limit 5", true, true},
	{"SELECT id FROM items ORDER BY embedding <#> $1 LIMIT 5", true, true},
	{"SELECT * FROM t WHERE v <+> $1 < 0.5", true, true},
	{"SELECT * FROM t ORDER BY bits <~> B'1010' LIMIT 3", true, true},
	{"SELECT * FROM t ORDER BY bits <%> $1 LIMIT 3", true, true},
	/* not code */
	{"SELECT '<->' AS op FROM items", false, true},
	{"SELECT E'it\\'s <=> here' FROM items", false, true},
	{"SELECT $$ ORDER BY v <-> x $$ FROM items", false, true},
	{"SELECT $fn$ <#> $notend$ still <+> $fn$ FROM items", false, true},
	{"SELECT 1 -- ORDER BY v <-> x\nFROM items", false, true},
	{"SELECT /* outer /* nested <-> */ still comment <=> */ 1 FROM items", false, true},
	{"SELECT \"weird<->name\" FROM items", false, true},
	{"SELECT U&'\\0041 <->' FROM items", false, true},
	/* code in subqueries and CTEs */
	{"SELECT * FROM (SELECT id FROM items ORDER BY e <-> $1 LIMIT 10) s", true, true},
	{"WITH near AS (SELECT id FROM items ORDER BY e <=> $1 LIMIT 20) SELECT * FROM near JOIN docs USING (id)", true,
	 true},
	{"SELECT id FROM items ORDER BY e OPERATOR(public.<->) $1 LIMIT 3", true, true},
	/* operator lexing: "<->-1" is "<->" then "-1"; "<-->" is not a vector op */
	{"SELECT e <->-1 FROM t", true, true},
	{"SELECT a <--> b FROM t", false, true},
	{"SELECT a<-b FROM t", false, true},
	/* writes, locks, conservative cases */
	{"INSERT INTO items (embedding) VALUES ('[1,2]')", false, false},
	{"UPDATE items SET embedding = $1 WHERE id = 3", false, false},
	{"DELETE FROM items WHERE id = 3", false, false},
	{"WITH d AS (DELETE FROM items WHERE id = 1 RETURNING *) SELECT * FROM d", false, false},
	{"SELECT * FROM items WHERE id = 1 FOR UPDATE", false, false},
	{"SELECT * FROM items FOR NO KEY UPDATE", false, false},
	{"SELECT nextval('s')", false, false},
	{"SELECT * INTO copy_t FROM items", false, false},
	{"EXPLAIN SELECT id FROM items ORDER BY e <-> $1", true, true},
	{"EXPLAIN ANALYZE DELETE FROM items", false, false},
	{"COPY items FROM STDIN", false, false},
	{"SET search_path = app", false, false},
	{"SELECT 1; SELECT 2", false, true},
	{"SELECT 1; UPDATE t SET a = 1", false, false},
	{"SHOW work_mem", false, true},
	{"VALUES (1), (2)", false, true},
	{"", false, false},
	{" -- only a comment", false, false},
};

static void test_vector_and_read_only(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vec_cases) / sizeof(*vec_cases); i++) {
		struct sql_class c = cls(vec_cases[i].sql);
		if (c.vector_op != vec_cases[i].vector || c.read_only != vec_cases[i].read_only)
			fail_msg("case %zu \"%s\": vector %d (want %d), read_only %d (want %d)", i, vec_cases[i].sql,
			         c.vector_op, vec_cases[i].vector, c.read_only, vec_cases[i].read_only);
	}
}

static void test_transactions(void **state)
{
	(void)state;
	struct sql_class c = cls("BEGIN");
	assert_true(c.txn_begin && c.txn_control && !c.read_only);
	c = cls("start transaction isolation level repeatable read");
	assert_true(c.txn_begin);
	c = cls("COMMIT");
	assert_true(c.txn_end);
	c = cls("ROLLBACK TO SAVEPOINT a");
	assert_true(c.txn_control && !c.txn_end);
	c = cls("SAVEPOINT a");
	assert_true(c.txn_control && !c.txn_end && !c.txn_begin);
	c = cls("COMMIT PREPARED 'x'");
	assert_false(c.txn_end);
	c = cls("BEGIN; SELECT 1; COMMIT");
	assert_int_equal(c.statements, 3);
	assert_true(c.txn_begin && c.txn_end);
	assert_false(c.read_only);
}

static void test_tables(void **state)
{
	(void)state;
	struct sql_class c = cls("SELECT * FROM public.items i JOIN \"Docs\" d ON d.id = i.id, other o WHERE x IN "
	                         "(SELECT y FROM inner_t)");
	assert_int_equal(c.n_tables, 4);
	assert_string_equal(c.tables[0], "public.items");
	assert_string_equal(c.tables[1], "Docs");
	assert_string_equal(c.tables[2], "other");
	assert_string_equal(c.tables[3], "inner_t");
	c = cls("INSERT INTO app.events (a) VALUES (1)");
	assert_int_equal(c.n_tables, 1);
	assert_string_equal(c.tables[0], "app.events");
	c = cls("UPDATE Items SET a = 1");
	assert_string_equal(c.tables[0], "items");
	c = cls("SELECT * FROM generate_series(1, 3) g, (SELECT 1) s");
	assert_int_equal(c.n_tables, 0);
	c = cls("COPY items (a, b) FROM STDIN");
	assert_string_equal(c.tables[0], "items");
}

static void test_guarded_ddl(void **state)
{
	(void)state;
	struct sql_class c = cls("REINDEX INDEX items_embedding_idx");
	assert_true(c.ddl);
	assert_int_equal(c.ddl_kind, DDL_REINDEX);
	assert_string_equal(c.ddl_target, "items_embedding_idx");
	assert_string_equal(c.ddl_target2, "index");
	c = cls("reindex (verbose) table concurrently public.items");
	assert_int_equal(c.ddl_kind, DDL_REINDEX_CONCURRENTLY);
	assert_string_equal(c.ddl_target, "public.items");
	assert_string_equal(c.tables[0], "public.items");
	c = cls("REINDEX (CONCURRENTLY) INDEX i");
	assert_int_equal(c.ddl_kind, DDL_REINDEX_CONCURRENTLY);
	c = cls("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)");
	assert_int_equal(c.ddl_kind, DDL_CREATE_INDEX);
	assert_string_equal(c.ddl_target, "items");
	c = cls("create unique index if not exists ix on only public.items (a)");
	assert_int_equal(c.ddl_kind, DDL_CREATE_INDEX);
	assert_string_equal(c.ddl_target, "public.items");
	assert_string_equal(c.ddl_target2, "ix");
	c = cls("CREATE INDEX CONCURRENTLY ix2 ON items USING ivfflat (e) WITH (lists = 100)");
	assert_int_equal(c.ddl_kind, DDL_CREATE_INDEX_CONCURRENTLY);
	c = cls("DROP INDEX IF EXISTS public.items_embedding_idx CASCADE");
	assert_int_equal(c.ddl_kind, DDL_DROP_INDEX);
	assert_string_equal(c.ddl_target, "public.items_embedding_idx");
	c = cls("DROP INDEX CONCURRENTLY items_embedding_idx");
	assert_int_equal(c.ddl_kind, DDL_DROP_INDEX_CONCURRENTLY);
	c = cls("DROP TABLE items");
	assert_int_equal(c.ddl_kind, DDL_OTHER);
	c = cls("SELECT 'REINDEX INDEX x'");
	assert_int_equal(c.ddl_kind, DDL_NONE);
	assert_false(c.ddl);
	/* hidden behind another statement and a comment */
	c = cls("SELECT 1; /* harmless */ REINDEX TABLE items");
	assert_int_equal(c.ddl_kind, DDL_REINDEX);
	c = cls("DO $$ BEGIN EXECUTE 'REINDEX INDEX x'; END $$");
	assert_int_equal(c.ddl_kind, DDL_NONE);
	assert_false(c.read_only);
}

static void test_unterminated_input(void **state)
{
	(void)state;
	const char *bad[] = {"SELECT 'unterminated", "SELECT /* open comment", "SELECT $$ open", "SELECT \"open",
	                     "SELECT E'\\", "(((((", ";;;;", "SELECT $1$"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct sql_class c = cls(bad[i]);
		assert_false(c.vector_op);
		(void)c;
	}
}

/* Random SQL-ish byte strings: no crash, no out-of-bounds read (ASan in CI),
 * and an input made only of a string literal never counts as code. */
static void test_random_inputs(void **state)
{
	(void)state;
	static const char alphabet[] = "SELECTFROMWHERE selectfrom'\"$-/*<>=~#%+;()E\\u&\n\t0123456789ab";
	uint32_t seed = 12345;
	char buf[256];
	for (int round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t len = (seed >> 16) % sizeof(buf);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		struct sql_class c;
		sql_classify(buf, len, &c); /* exactly len bytes: no NUL terminator to lean on */
		assert_true(c.n_tables <= SQL_MAX_TABLES);
	}
	struct sql_class c = cls("'<-> ; REINDEX INDEX x'");
	assert_false(c.vector_op);
	assert_int_equal(c.ddl_kind, DDL_NONE);
}

/* Regression: a Query ending in U&" (an unterminated Unicode identifier)
 * made set_word compute a negative length and copy 63 bytes past the end of
 * the message.  The input is an exact-size heap copy so ASan sees any
 * overread; the identifier's content is the rest of the input. */
static void test_unterminated_unicode_ident(void **state)
{
	(void)state;
	const char *cases[] = {"SELECT * FROM items ORDER BY v <-> $1; SELECT U&\"", "U&\"", "index U&\"",
	                       "SELECT U&\"ab", "SELECT \"", "SELECT E'\\"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t len = strlen(cases[i]);
		char *copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, cases[i], len);
		struct sql_class c;
		sql_classify(copy, len, &c);
		assert_true(c.n_tables <= SQL_MAX_TABLES);
		free(copy);
	}
	struct sql_class c = cls("SELECT * FROM U&\"items\" ORDER BY v <-> $1");
	assert_true(c.vector_op);
	assert_int_equal(c.n_tables, 1);
	assert_string_equal(c.tables[0], "items");
	c = cls("SELECT * FROM U&\"it");
	assert_int_equal(c.n_tables, 1);
	assert_string_equal(c.tables[0], "it");
}

static enum guard_verdict guard(const char *sql, enum guard_mode mode, char *msg, char *hint)
{
	static const struct guard_target t[] = {{"items", "public", "items", "items_hnsw"},
	                                        {"docs", "app", "docs", "docs_ivf"}};
	struct sql_class c = cls(sql);
	return ddl_guard_check(&c, t, 2, mode, msg, 512, hint, 512);
}

static void test_ddl_guard(void **state)
{
	(void)state;
	char msg[512], hint[512];
	assert_int_equal(guard("REINDEX INDEX items_hnsw", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_non_null(strstr(msg, "ACCESS EXCLUSIVE lock on public.items_hnsw and a SHARE lock on public.items"));
	assert_non_null(strstr(hint, "REINDEX INDEX CONCURRENTLY public.items_hnsw"));
	assert_non_null(strstr(hint, "vecgatectl rebuild start items"));
	assert_int_equal(guard("REINDEX INDEX public.items_hnsw", GUARD_MODE_WARN, msg, hint), GUARD_WARNED);
	assert_int_equal(guard("REINDEX INDEX items_hnsw", GUARD_MODE_ALLOW, msg, hint), GUARD_PASS);
	assert_int_equal(guard("REINDEX INDEX other_schema.items_hnsw", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("REINDEX INDEX CONCURRENTLY items_hnsw", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("REINDEX TABLE app.docs", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_int_equal(guard("REINDEX SCHEMA app", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_int_equal(guard("REINDEX DATABASE db", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_int_equal(guard("REINDEX INDEX unrelated", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("DROP INDEX docs_ivf", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_non_null(strstr(msg, "managed index \"docs\""));
	assert_int_equal(guard("DROP INDEX CONCURRENTLY IF EXISTS app.docs_ivf", GUARD_MODE_BLOCK, msg, hint),
	                 GUARD_BLOCKED);
	assert_int_equal(guard("DROP INDEX some_other", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("CREATE INDEX ON items (id)", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
	assert_non_null(strstr(msg, "SHARE lock on items"));
	assert_int_equal(guard("CREATE INDEX CONCURRENTLY i2 ON items (id)", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("CREATE INDEX i3 ON other_table (id)", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("SELECT 'DROP INDEX docs_ivf'", GUARD_MODE_BLOCK, msg, hint), GUARD_PASS);
	assert_int_equal(guard("SELECT 1; DROP INDEX docs_ivf", GUARD_MODE_BLOCK, msg, hint), GUARD_BLOCKED);
}

static void operand(const char *sql, enum vec_operand_kind kind, const char *literal, int param)
{
	struct vec_operand o;
	sql_vector_operand(sql, strlen(sql), &o);
	assert_int_equal(o.kind, kind);
	if (kind == VOP_LITERAL) {
		assert_int_equal(o.len, strlen(literal));
		assert_memory_equal(sql + o.off, literal, o.len);
	}
	if (kind == VOP_PARAM)
		assert_int_equal(o.param, param);
}

static void test_vector_operand(void **state)
{
	(void)state;
	operand("SELECT id FROM t ORDER BY v <-> '[1,2,3]' LIMIT 5", VOP_LITERAL, "[1,2,3]", 0);
	operand("SELECT id FROM t ORDER BY v <=> '[1,2]'::vector(2) LIMIT 5", VOP_LITERAL, "[1,2]", 0);
	operand("SELECT id FROM t ORDER BY '[0.5,1]'::vector <#> v LIMIT 5", VOP_LITERAL, "[0.5,1]", 0);
	operand("SELECT id FROM t ORDER BY '[0.5,1]' <+> v", VOP_LITERAL, "[0.5,1]", 0);
	operand("SELECT id FROM t ORDER BY v <-> $2::vector LIMIT $1", VOP_PARAM, NULL, 2);
	operand("SELECT id FROM t ORDER BY v<->($1) LIMIT 3", VOP_PARAM, NULL, 1);
	operand("SELECT id FROM t WHERE x = $1 ORDER BY $3 <-> v", VOP_PARAM, NULL, 3);
	/* a column on both sides, escapes, comments and strings are not query vectors */
	operand("SELECT a.id FROM t a, t b ORDER BY a.v <-> b.v", VOP_NONE, NULL, 0);
	operand("SELECT id FROM t ORDER BY v <-> E'[1,2]'", VOP_NONE, NULL, 0);
	operand("SELECT '<-> ''[1]''' /* <-> '[2]' */ FROM t", VOP_NONE, NULL, 0);
	operand("SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 1)", VOP_NONE, NULL, 0);
	operand("SELECT id FROM t ORDER BY v <->", VOP_NONE, NULL, 0);
	/* the first usable operand wins */
	operand("SELECT a.v <-> b.v, v <-> $4 FROM t", VOP_PARAM, NULL, 4);
}

/* The byte scan must never miss what the lexer would find: a distance
 * operator or a guarded DDL statement (all of which say INDEX).  Checked
 * against a plain per-byte reference and against the classifier, on exact
 * heap copies so ASan sees any read past the text. */
static unsigned prescan_reference(const char *s, size_t len)
{
	unsigned r = 0;
	for (size_t i = 0; i + 5 <= len; i++)
		if (!strncasecmp(s + i, "index", 5))
			r |= SQL_MAY_INDEX;
	for (size_t i = 0; i + 3 <= len; i++)
		if (s[i] == '<' && s[i + 1] && strchr("-=#+~%", s[i + 1]) && s[i + 2] == '>')
			r |= SQL_MAY_VECTOR_OP;
	return r;
}

static void test_prescan(void **state)
{
	(void)state;
	assert_int_equal(sql_prescan("SELECT abalance FROM pgbench_accounts WHERE aid = 1", 51), 0);
	assert_int_equal(sql_prescan("reINDEX table t", 15), SQL_MAY_INDEX);
	assert_int_equal(sql_prescan("SELECT 1 ORDER BY v<->'[1]'", 27), SQL_MAY_VECTOR_OP);
	assert_int_equal(sql_prescan("inDeX<%>", 8), SQL_MAY_INDEX | SQL_MAY_VECTOR_OP);
	assert_int_equal(sql_prescan("ndex <- >", 9), 0);
	assert_int_equal(sql_prescan("<->", 2), 0); /* the length, not a NUL, ends the text */
	static const char alphabet[] = "indexINDEXx <>-=#+~%'/*; ";
	uint32_t seed = 777;
	for (int round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t len = (seed >> 16) % 40;
		char *buf = malloc(len ? len : 1);
		assert_non_null(buf);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		unsigned got = sql_prescan(buf, len);
		assert_int_equal(got, prescan_reference(buf, len));
		struct sql_class c;
		sql_classify(buf, len, &c);
		if (c.vector_op)
			assert_true(got & SQL_MAY_VECTOR_OP);
		if (c.ddl_kind != DDL_NONE && c.ddl_kind != DDL_OTHER)
			assert_true(got & SQL_MAY_INDEX);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_and_read_only), cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_tables),               cmocka_unit_test(test_guarded_ddl),
		cmocka_unit_test(test_unterminated_input), cmocka_unit_test(test_random_inputs),
		cmocka_unit_test(test_ddl_guard),            cmocka_unit_test(test_unterminated_unicode_ident),
		cmocka_unit_test(test_vector_operand),       cmocka_unit_test(test_prescan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
