/*
 * Names of the managed relations: configured names split into schema and
 * name as SQL writes them or raw (conf/sqlname.h), the names a rebuild
 * derives for its new and retired indexes within PostgreSQL's 63 bytes
 * (routing/indexdef.h), and preflight's refusal of names that match
 * nothing (routing/rebuild_sql.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "conf/config.h"
#include "conf/sqlname.h"
#include "routing/indexdef.h"
#include "routing/rebuild_sql.h"

static void parse_ok(const char *s, const char *schema, const char *name)
{
	struct sqlname n;
	size_t at = 99;
	enum sqlname_status st = sqlname_parse(s, &n, &at);
	if (st != SQLNAME_OK)
		fail_msg("%s: %s at %zu", s, sqlname_strerror(st), at);
	assert_int_equal(n.has_schema, schema != NULL);
	assert_string_equal(n.schema, schema ? schema : "");
	assert_string_equal(n.name, name);
}

static void parse_bad(const char *s, enum sqlname_status want, size_t want_at)
{
	struct sqlname n;
	size_t at = 999;
	enum sqlname_status st = sqlname_parse(s, &n, &at);
	if (st != want || at != want_at)
		fail_msg("%s: got %d at %zu, want %d at %zu", s, st, at, want, want_at);
	assert_string_equal(n.name, "");
}

static void test_sqlname(void **state)
{
	(void)state;
	/* as SQL writes them */
	parse_ok("\"RAG\".\"DocChunks\"", "RAG", "DocChunks");
	parse_ok("\"Chunk Emb Idx\"", NULL, "Chunk Emb Idx");
	parse_ok("\"a\"\"b\".\"c.d\"", "a\"b", "c.d");
	parse_ok(" \"RAG\" . \"DocChunks\" ", "RAG", "DocChunks");
	/* raw, as before: no case folding, spaces inside kept */
	parse_ok("RAG.DocChunks", "RAG", "DocChunks");
	parse_ok("items", NULL, "items");
	parse_ok("Chunk Emb Idx", NULL, "Chunk Emb Idx");
	parse_ok("public.\"Mixed\"", "public", "Mixed");
	parse_ok("\"Sch\".raw_name", "Sch", "raw_name");
	char long63[70];
	memset(long63, 'x', 63);
	long63[63] = 0;
	parse_ok(long63, NULL, long63);

	parse_bad("", SQLNAME_EMPTY, 0);
	parse_bad("\"\"", SQLNAME_EMPTY, 0);
	parse_bad("a.", SQLNAME_EMPTY, 2);
	parse_bad(".a", SQLNAME_EMPTY, 0);
	parse_bad("\"RAG", SQLNAME_UNTERMINATED, 4);
	parse_bad("\"RAG\"x.t", SQLNAME_AFTER_QUOTE, 5);
	parse_bad("R\"AG.t", SQLNAME_STRAY_QUOTE, 1);
	parse_bad("a.b.c", SQLNAME_TOO_MANY, 3);
	char long64[70];
	memset(long64, 'y', 64);
	long64[64] = 0;
	parse_bad(long64, SQLNAME_TOO_LONG, 63);
	char quoted64[80];
	snprintf(quoted64, sizeof(quoted64), "s.\"%s\"", long64);
	parse_bad(quoted64, SQLNAME_TOO_LONG, 66);
	assert_non_null(strstr(sqlname_strerror(SQLNAME_TOO_LONG), "63 bytes"));
}

static void test_config_names(void **state)
{
	(void)state;
	const char *y = "backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n"
	                "managed_indexes:\n"
	                "  - {database: app, table: '\"RAG\".\"DocChunks\"', index: '\"Chunk Emb Idx\"', eval_file: f,"
	                " eval_query: q}\n"
	                "  - {database: app, table: RAG.DocChunks, index: '\"RAG\".\"Other\"', eval_file: f, eval_query: q}\n";
	char err[512];
	struct vg_config *c = config_load_string("n.yaml", y, strlen(y), err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	const struct vg_managed_index *m = config_find_index(c, "Chunk Emb Idx");
	assert_non_null(m);
	assert_string_equal(m->schema, "RAG");
	assert_string_equal(m->table, "DocChunks");
	assert_string_equal(m->index, "Chunk Emb Idx");
	m = config_find_index(c, "Other");
	assert_non_null(m);
	assert_string_equal(m->schema, "RAG");
	assert_string_equal(m->table, "DocChunks");
	config_free(c);

	static const struct {
		const char *item, *where, *what;
	} bad[] = {
		{"{database: app, table: '\"RAG\".\"Doc', index: i, eval_file: f, eval_query: q}", "n.yaml:6:28:",
		 "table '\"RAG\".\"Doc': a quoted name without its closing quote (at character 11)"},
		{"{database: app, table: t, index: 'a.b.c', eval_file: f, eval_query: q}", "n.yaml:6:38:",
		 "more parts than schema.name"},
		{"{database: app, table: '\"RAG\".t', index: '\"rag\".i', eval_file: f, eval_query: q}", "n.yaml:6:46:",
		 "index '\"rag\".i' names schema \"rag\", but its table is in schema \"RAG\""},
		{"{database: app, table: t, index: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,"
		 " eval_file: f, eval_query: q}", "n.yaml:6:38:", "longer than 63 bytes"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char yb[1024];
		snprintf(yb, sizeof(yb), "backends:\n  primary: {host: h}\ndatabases:\n  - name: app\nmanaged_indexes:\n  - %s\n",
		         bad[i].item);
		c = config_load_string("n.yaml", yb, strlen(yb), err, sizeof(err));
		if (c)
			fail_msg("case %zu loaded", i);
		if (strncmp(err, bad[i].where, strlen(bad[i].where)) || !strstr(err, bad[i].what))
			fail_msg("case %zu: got \"%s\", want \"%s\" and \"%s\"", i, err, bad[i].where, bad[i].what);
	}
}

static void test_derived_names(void **state)
{
	(void)state;
	char out[INDEX_NAME_MAX + 1], out2[INDEX_NAME_MAX + 1];
	index_derived_name("items_idx", "_vg7", out, sizeof(out));
	assert_string_equal(out, "items_idx_vg7");
	assert_true(index_is_derived("items_idx", "items_idx_vg7"));
	assert_true(index_is_derived("items_idx", "items_idx_vgold12"));
	assert_false(index_is_derived("items_idx", "items_idx_vg"));
	assert_false(index_is_derived("items_idx", "items_idx_other_vg3"));
	assert_false(index_is_derived("items", "items_idx_vg3"));
	assert_false(index_is_derived("items_idx", "items_idx_vgx3"));

	/* 60 bytes: "_vg1" does not fit; two names sharing 59 bytes stay apart */
	char a[61], b[61];
	memset(a, 'a', 60);
	a[60] = 0;
	memcpy(b, a, 61);
	b[59] = 'b';
	index_derived_name(a, "_vg1", out, sizeof(out));
	index_derived_name(b, "_vg1", out2, sizeof(out2));
	assert_true(strlen(out) <= INDEX_NAME_MAX && strlen(out2) <= INDEX_NAME_MAX);
	assert_string_not_equal(out, out2);
	assert_int_equal(strncmp(out + strlen(out) - 4, "_vg1", 4), 0);
	assert_true(index_is_derived(a, out));
	assert_false(index_is_derived(b, out));
	char old[INDEX_NAME_MAX + 1];
	index_derived_name(a, "_vgold1", old, sizeof(old));
	assert_string_not_equal(out, old);
	assert_true(index_is_derived(a, old));
	index_derived_name(a, "_vgold4294967295", old, sizeof(old));
	assert_int_equal(strlen(old), INDEX_NAME_MAX);
	/* exactly 63 with the suffix: kept whole */
	char c59[60];
	memset(c59, 'c', 59);
	c59[59] = 0;
	index_derived_name(c59, "_vg1", out, sizeof(out));
	assert_int_equal(strlen(out), 63);
	assert_int_equal(strncmp(out, c59, 59), 0);
	/* the cut never splits a UTF-8 character: 2-byte "é" x 30 */
	char e[61] = "";
	for (int i = 0; i < 30; i++)
		strcat(e, "\xc3\xa9");
	index_derived_name(e, "_vg1", out, sizeof(out));
	size_t cut = strchr(out, '_') - out;
	assert_int_equal(cut % 2, 0);
	assert_true(strlen(out) <= INDEX_NAME_MAX);
}

static void test_names_verdict(void **state)
{
	(void)state;
	char why[1400];
	struct names_found ok = {true, 'r', 'i', "16384", "\"RAG\".\"DocChunks\"", "\"Chunk Emb Idx\"", NULL};
	assert_int_equal(names_verdict("RAG", "DocChunks", "Chunk Emb Idx", &ok, why, sizeof(why)), 0);

	struct names_found no_schema = {false, 0, 0, NULL, NULL, NULL, "rag.docchunks"};
	assert_int_equal(names_verdict("RAG", "DocChunks", "Chunk Emb Idx", &no_schema, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "looked up schema \"RAG\", table \"DocChunks\", index \"Chunk Emb Idx\": no schema "
	                            "\"RAG\"; names that differ only in case: rag.docchunks"));

	struct names_found no_table = {true, 0, 0, NULL, NULL, NULL, NULL};
	assert_int_equal(names_verdict("RAG", "Missing", "i", &no_table, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no table \"Missing\" in schema \"RAG\""));
	assert_null(strstr(why, "differ only in case"));

	struct names_found no_index = {true, 'r', 0, NULL, NULL, "a, \"B\"", NULL};
	assert_int_equal(names_verdict("s", "t", "x", &no_index, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no index \"x\" in schema \"s\" (the table's indexes: a, \"B\")"));

	struct names_found view = {true, 'v', 0, NULL, NULL, NULL, NULL};
	assert_int_equal(names_verdict("s", "t", "x", &view, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "\"s\".\"t\" is not a table (relkind 'v')"));

	struct names_found elsewhere = {true, 'r', 'i', NULL, "s.other", NULL, NULL};
	assert_int_equal(names_verdict("s", "t", "x", &elsewhere, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "index \"x\" belongs to table s.other, not to s.t"));

	struct names_found seq = {true, 'r', 'S', NULL, NULL, NULL, NULL};
	assert_int_equal(names_verdict("s", "t", "x", &seq, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "is not an index"));

	/* small buffers stay terminated */
	char tiny[8];
	assert_int_equal(names_verdict("s", "t", "x", &no_schema, tiny, sizeof(tiny)), -1);
	assert_int_equal(strlen(tiny), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlname),
		cmocka_unit_test(test_config_names),
		cmocka_unit_test(test_derived_names),
		cmocka_unit_test(test_names_verdict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
