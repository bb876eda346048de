/*
 * The rebuild job's pure parts: definition rewriting (names, WITH overrides,
 * quoting, clauses that must not be touched), recall@k, percentiles, the gate
 * arithmetic, and every (state, event) pair of the job's state machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "routing/gate.h"
#include "routing/index_shape.h"
#include "routing/indexdef.h"
#include "routing/rebuild_job.h"
#include "routing/rebuild_sql.h"

static void rewrite_ok(const char *def, const char *name, const struct index_param *ov, int n, const char *want)
{
	char out[1024], err[256] = "";
	int rc = indexdef_rewrite(def, name, ov, n, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fail_msg("rewrite of \"%s\" failed: %s", def, err);
	if (strcmp(out, want) != 0)
		fail_msg("rewrite of \"%s\"\n got: %s\nwant: %s", def, out, want);
}

static void test_rewrite_hnsw(void **state)
{
	(void)state;
	const struct index_param ov[] = {{"m", "24"}, {"ef_construction", "128"}};
	rewrite_ok("CREATE INDEX items_embedding_idx ON public.items USING hnsw (embedding vector_cosine_ops) WITH (m='16', "
	           "ef_construction='64')",
	           "items_embedding_idx_vg1", ov, 2,
	           "CREATE INDEX CONCURRENTLY items_embedding_idx_vg1 ON public.items USING hnsw (embedding "
	           "vector_cosine_ops) WITH (m=24, ef_construction=128)");
	/* no WITH yet: one is added; IVFFlat lists */
	const struct index_param lists[] = {{"lists", "1000"}};
	rewrite_ok("CREATE INDEX docs_ivf ON public.docs USING ivfflat (embedding vector_l2_ops)", "docs_ivf_new", lists, 1,
	           "CREATE INDEX CONCURRENTLY docs_ivf_new ON public.docs USING ivfflat (embedding vector_l2_ops) WITH "
	           "(lists=1000)");
	/* fuzz_indexdef: a quoted name touching ON, replaced by a bare one */
	rewrite_ok("CREATE INDEX \"i v\"ON public.items USING hnsw (e)", "i_new", NULL, 0,
	           "CREATE INDEX CONCURRENTLY i_new ON public.items USING hnsw (e)");
	/* no overrides keeps WITH as it was */
	rewrite_ok("CREATE INDEX emb_live ON public.emb USING gist (v) WITH (buffering=auto)", "emb_next", NULL, 0,
	           "CREATE INDEX CONCURRENTLY emb_next ON public.emb USING gist (v) WITH (buffering=auto)");
}

static void test_rewrite_clauses_and_quoting(void **state)
{
	(void)state;
	const struct index_param ov[] = {{"fillfactor", "70"}};
	/* WITH goes before TABLESPACE and WHERE, which stay intact */
	rewrite_ok("CREATE UNIQUE INDEX \"Emb Idx\" ON \"My Schema\".\"Emb\" USING btree (id) INCLUDE (v) TABLESPACE fast "
	           "WHERE (note <> 'with (x=1) where')",
	           "Emb Idx New", ov, 1,
	           "CREATE UNIQUE INDEX CONCURRENTLY \"Emb Idx New\" ON \"My Schema\".\"Emb\" USING btree (id) INCLUDE (v) "
	           "WITH (fillfactor=70) TABLESPACE fast WHERE (note <> 'with (x=1) where')");
	/* a partial index: WITH before WHERE; override merges case-insensitively */
	const struct index_param ov2[] = {{"BUFFERING", "off"}, {"note", "it's"}};
	rewrite_ok("CREATE INDEX e ON public.emb USING gist (v) WITH (buffering=auto) WHERE (id > 0)", "e2", ov2, 2,
	           "CREATE INDEX CONCURRENTLY e2 ON public.emb USING gist (v) WITH (buffering=off, note='it''s') WHERE (id "
	           "> 0)");
	/* expression columns containing the words must not confuse the scan */
	rewrite_ok("CREATE INDEX x ON public.t USING gist (cube(array[\"with\", \"where\"]))", "y", ov, 1,
	           "CREATE INDEX CONCURRENTLY y ON public.t USING gist (cube(array[\"with\", \"where\"])) WITH (fillfactor=70)");

	char q[64];
	quote_ident("emb_live", q, sizeof(q));
	assert_string_equal(q, "emb_live");
	quote_ident("Emb", q, sizeof(q));
	assert_string_equal(q, "\"Emb\"");
	quote_ident("a\"b", q, sizeof(q));
	assert_string_equal(q, "\"a\"\"b\"");
	quote_ident("select", q, sizeof(q));
	assert_string_equal(q, "\"select\"");
	quote_ident("9lives", q, sizeof(q));
	assert_string_equal(q, "\"9lives\"");

	char name[64];
	assert_int_equal(indexdef_name("CREATE INDEX \"Emb \"\"Idx\"\"\" ON t USING gist (v)", name, sizeof(name)), 0);
	assert_string_equal(name, "Emb \"Idx\"");
	assert_int_equal(indexdef_name("CREATE INDEX emb_live ON t USING gist (v)", name, sizeof(name)), 0);
	assert_string_equal(name, "emb_live");
}

static void test_rewrite_rejects(void **state)
{
	(void)state;
	char out[512], err[128];
	const struct index_param bad_name[] = {{"m; DROP TABLE x", "1"}};
	const struct index_param empty_value[] = {{"m", ""}};
	assert_int_equal(indexdef_rewrite("ALTER TABLE x", "n", NULL, 0, out, sizeof(out), err, sizeof(err)), -1);
	assert_int_equal(indexdef_rewrite("CREATE TABLE x (a int)", "n", NULL, 0, out, sizeof(out), err, sizeof(err)), -1);
	assert_int_equal(indexdef_rewrite("CREATE INDEX i ON t (a)", "n", NULL, 0, out, sizeof(out), err, sizeof(err)), -1);
	assert_int_equal(indexdef_rewrite("CREATE INDEX i ON t USING gist (v)", "n", bad_name, 1, out, sizeof(out), err,
	                                  sizeof(err)),
	                 -1);
	assert_int_equal(indexdef_rewrite("CREATE INDEX i ON t USING gist (v)", "n", empty_value, 1, out, sizeof(out), err,
	                                  sizeof(err)),
	                 -1);
	assert_int_equal(indexdef_rewrite("CREATE INDEX i ON t USING gist (v)", "n", NULL, 0, out, 10, err, sizeof(err)),
	                 -1);
	/* values that are not plain words are quoted, never pasted */
	const struct index_param inj[] = {{"m", "16); DROP TABLE t; --"}};
	assert_int_equal(
		indexdef_rewrite("CREATE INDEX i ON t USING gist (v)", "n", inj, 1, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "CREATE INDEX CONCURRENTLY n ON t USING gist (v) WITH (m='16); DROP TABLE t; --')");
}

/* Regression: a WITH list cut off after "x= " made parse_with step its value
 * pointer past the value's end (pointer-overflow UB, then a huge length).
 * Unterminated lists, quotes and column lists are refused, and overrides
 * are never truncated or pasted unquoted to fit. */
static void test_rewrite_malformed(void **state)
{
	(void)state;
	char out[1024], err[128];
	const struct index_param ov[] = {{"m", "24"}};
	const char *bad[] = {
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH (m= ",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH (m=",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH (m='16', ef_construction= ",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH (",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WHERE (note = 'open)",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH ('a=b'=1)",
		/* fuzz_indexdef: the first WITH was kept as part of the key list
		 * and the statement did not read back */
		"CREATE INDEX i ON t USING ivfflat (v) WITH (li) WITH (lists='100')",
		"CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WHERE (id > 0) WITH (m=16)",
		"CREATE INDEX i ON t USING(id )(v)",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err[0] = 0;
		assert_int_equal(indexdef_rewrite(bad[i], "n", ov, 1, out, sizeof(out), err, sizeof(err)), -1);
		assert_true(err[0] != 0);
		assert_int_equal(indexdef_rewrite(bad[i], "n", NULL, 0, out, sizeof(out), err, sizeof(err)), -1);
	}
	const char *def = "CREATE INDEX i ON t USING hnsw (v vector_l2_ops)";
	const struct index_param long_name[] = {
		{"m_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1"}};
	assert_int_equal(indexdef_rewrite(def, "n", long_name, 1, out, sizeof(out), err, sizeof(err)), -1);
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	const struct index_param long_value[] = {{"m", big}};
	assert_int_equal(indexdef_rewrite(def, "n", long_value, 1, out, sizeof(out), err, sizeof(err)), -1);
	/* a value that merely starts with a quote is quoted; one whole literal is kept */
	const struct index_param inj[] = {{"m", "'16'); DROP TABLE t; --"}};
	assert_int_equal(indexdef_rewrite(def, "n", inj, 1, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "CREATE INDEX CONCURRENTLY n ON t USING hnsw (v vector_l2_ops) WITH (m='''16''); DROP "
	                         "TABLE t; --')");
	const struct index_param lit[] = {{"m", "'it''s'"}};
	assert_int_equal(indexdef_rewrite(def, "n", lit, 1, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "CREATE INDEX CONCURRENTLY n ON t USING hnsw (v vector_l2_ops) WITH (m='it''s')");
	/* keywords are quoted as new names, and the result parses back */
	assert_int_equal(indexdef_rewrite(def, "concurrently", NULL, 0, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "CREATE INDEX CONCURRENTLY \"concurrently\" ON t USING hnsw (v vector_l2_ops)");
	assert_int_equal(indexdef_rewrite(def, "if", NULL, 0, out, sizeof(out), err, sizeof(err)), 0);
	char name[64];
	assert_int_equal(indexdef_name(out, name, sizeof(name)), 0);
	assert_string_equal(name, "if");
}

static void shape_ok(const char *def, const struct index_shape *sh, const struct index_param *ov, int n,
                     const char *want)
{
	char out[1024], err[256] = "";
	if (indexdef_rewrite_shape(def, "n", sh, ov, n, out, sizeof(out), err, sizeof(err)) != 0)
		fail_msg("rewrite of \"%s\" failed: %s", def, err);
	if (strcmp(out, want) != 0)
		fail_msg("rewrite of \"%s\"\n got: %s\nwant: %s", def, out, want);
}

/* Method, opclass and expression changes rewrite the first key and the
 * method only; the old method's WITH parameters go, the overrides stay. */
static void test_rewrite_shape(void **state)
{
	(void)state;
	const char *ivf = "CREATE INDEX items_ivf ON public.items USING ivfflat (embedding) WITH (lists='100')";
	const struct index_shape to_hnsw = {"hnsw", "public.vector_l2_ops", NULL};
	const struct index_param m16[] = {{"m", "16"}, {"ef_construction", "64"}};
	shape_ok(ivf, &to_hnsw, m16, 2,
	         "CREATE INDEX CONCURRENTLY n ON public.items USING hnsw (embedding public.vector_l2_ops) WITH (m=16, "
	         "ef_construction=64)");
	shape_ok(ivf, &to_hnsw, NULL, 0, "CREATE INDEX CONCURRENTLY n ON public.items USING hnsw (embedding public.vector_l2_ops)");
	/* a partial index keeps its predicate; the old parameters go */
	const struct index_shape hnsw_only = {"hnsw", NULL, NULL};
	shape_ok("CREATE INDEX i ON public.t USING ivfflat (embedding vector_cosine_ops) WITH (lists='10') WHERE "
	         "(tenant_id = 3)",
	         &hnsw_only, NULL, 0, "CREATE INDEX CONCURRENTLY n ON public.t USING hnsw (embedding vector_cosine_ops) WHERE "
	                              "(tenant_id = 3)");
	/* the same method named again keeps the parameters */
	shape_ok("CREATE INDEX i ON t USING hnsw (v vector_l2_ops) WITH (m='16')", &hnsw_only, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING hnsw (v vector_l2_ops) WITH (m='16')");
	/* half precision: expression and opclass */
	const struct index_shape half = {NULL, "halfvec_l2_ops", "embedding::halfvec(3)"};
	shape_ok("CREATE INDEX i ON t USING hnsw (embedding vector_l2_ops) WITH (m='16')", &half, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING hnsw ((embedding::halfvec(3)) halfvec_l2_ops) WITH (m='16')");
	const struct index_shape back = {NULL, NULL, " embedding "};
	shape_ok("CREATE INDEX i ON t USING hnsw (((embedding)::halfvec(3)) halfvec_l2_ops)", &back, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING hnsw (embedding halfvec_l2_ops)");
	const struct index_shape wrapped = {NULL, NULL, "(lower(title))"};
	shape_ok("CREATE INDEX i ON t USING btree (title)", &wrapped, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree ((lower(title)))");
	/* opclass parameters belong to the old opclass; order, collation stay */
	const struct index_shape bar = {NULL, "bar_ops", NULL};
	shape_ok("CREATE INDEX i ON t USING x (v foo_ops (p='1') DESC)", &bar, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING x (v bar_ops DESC)");
	shape_ok("CREATE INDEX i ON t USING btree (name COLLATE \"C\" text_ops)", &bar, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree (name COLLATE \"C\" bar_ops)");
	shape_ok("CREATE INDEX i ON t USING btree (v DESC NULLS LAST)", &bar, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree (v bar_ops DESC NULLS LAST)");
	shape_ok("CREATE INDEX i ON t USING btree (v foo_ops(x=1)DESC)", &bar, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree (v bar_ops DESC)");
	const struct index_shape quoted_word = {NULL, "\"nulls\"", NULL};
	shape_ok("CREATE INDEX i ON t USING btree (v)", &quoted_word, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree (v \"nulls\")");
	shape_ok("CREATE INDEX i ON t USING btree (\"Emb\")", &bar, NULL, 0,
	         "CREATE INDEX CONCURRENTLY n ON t USING btree (\"Emb\" bar_ops)");

	char out[1024], err[256];
	const struct index_shape bad_expr[] = {{NULL, NULL, "x); DROP TABLE t; --"}, {NULL, NULL, "(a"},
	                                       {NULL, NULL, "a /* b */"}, {NULL, NULL, "'open"}, {NULL, NULL, "  "},
	                                       {"hnsw; x", NULL, NULL}, {NULL, "a(b)", NULL}, {NULL, "", NULL},
	                                       /* the key's order, not a class (libFuzzer found NULLS) */
	                                       {NULL, "NULLS", NULL}, {NULL, "desc", NULL},
	                                       /* read as a COLLATE clause; any reserved word needs quotes */
	                                       {NULL, "COLLATE", NULL}, {NULL, "public.Asc", NULL}};
	for (size_t i = 0; i < sizeof(bad_expr) / sizeof(*bad_expr); i++) {
		err[0] = 0;
		assert_int_equal(indexdef_rewrite_shape("CREATE INDEX i ON t USING hnsw (v vector_l2_ops)", "n", &bad_expr[i],
		                                        NULL, 0, out, sizeof(out), err, sizeof(err)),
		                 -1);
		assert_true(err[0] != 0);
	}
	/* a key override needs one key column */
	assert_int_equal(indexdef_rewrite_shape("CREATE INDEX i ON t USING btree (a, b)", "n", &bar, NULL, 0, out,
	                                        sizeof(out), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "one key column"));

	struct index_key k;
	assert_int_equal(indexdef_key(ivf, &k), 0);
	assert_string_equal(k.method, "ivfflat");
	assert_string_equal(k.key, "embedding");
	assert_string_equal(k.opclass, "");
	assert_int_equal(k.n_keys, 1);
	assert_int_equal(indexdef_key("CREATE INDEX i ON t USING hnsw (((embedding)::halfvec(3)) halfvec_l2_ops) WHERE (a)",
	                              &k),
	                 0);
	assert_string_equal(k.key, "((embedding)::halfvec(3))");
	assert_string_equal(k.opclass, "halfvec_l2_ops");
	assert_int_equal(indexdef_key("CREATE INDEX i ON t USING btree (a, lower(b))", &k), 0);
	assert_int_equal(k.n_keys, 2);
	assert_string_equal(k.key, "a");
	assert_int_equal(indexdef_key("CREATE INDEX i ON t USING btree (lower(b) text_pattern_ops)", &k), 0);
	assert_string_equal(k.key, "lower(b)");
	assert_string_equal(k.opclass, "text_pattern_ops");
}

/* The catalog's facts decide whether a new shape serves the same reads. */
static void test_shape_verdict(void **state)
{
	(void)state;
	char why[1024];
	/* ivfflat -> hnsw, same operator class name under the new method */
	struct shape_facts up = {"hnsw", NULL, NULL, NULL, "ivfflat", "vector_l2_ops", "public", "<->", "hnsw", "i",
	                         "vector_l2_ops", "public", "<->", "vector", "vector", true, "embedding", "<->", "embedding"};
	assert_int_equal(shape_verdict(&up, why, sizeof(why)), 0);
	/* a different distance: refused, with both operators named */
	struct shape_facts cos = up;
	cos.want_opclass = "vector_cosine_ops";
	cos.new_opclass = "vector_cosine_ops";
	cos.new_ops = "<=>";
	assert_int_equal(shape_verdict(&cos, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "operator class vector_cosine_ops orders by <=>, the live vector_l2_ops by <->"));
	/* the eval query's operator too */
	struct shape_facts q = up;
	q.eval_op = "<=>";
	assert_int_equal(shape_verdict(&q, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "the eval query orders by <=>"));
	/* no such method, not an index method, no such opclass */
	struct shape_facts nom = up;
	nom.want_method = "diskann";
	nom.new_method = NULL;
	assert_int_equal(shape_verdict(&nom, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no access method diskann"));
	struct shape_facts heap = up;
	heap.new_amtype = "t";
	assert_int_equal(shape_verdict(&heap, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "not an index access method"));
	struct shape_facts noc = up;
	noc.new_opclass = NULL;
	assert_int_equal(shape_verdict(&noc, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no operator class named like the live one (public.vector_l2_ops)"));
	noc.want_opclass = "nope_ops";
	noc.want_opclass_schema = "ext";
	assert_int_equal(shape_verdict(&noc, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no operator class ext.nope_ops for access method hnsw"));
	/* half precision: the opclass needs the new key, which the eval query must read */
	struct shape_facts half = up;
	half.want_method = NULL;
	half.want_opclass = "halfvec_l2_ops";
	half.new_opclass = "halfvec_l2_ops";
	half.opclass_type = "halfvec";
	half.type_ok = false;
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "takes halfvec, the key is vector"));
	half.want_expression = "embedding::halfvec(3)";
	half.key_type = "halfvec";
	half.type_ok = true;
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "the eval query orders by embedding <->, not by the new key embedding::halfvec(3)"));
	half.eval_operand = "embedding::halfvec(3)";
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), 0);
	half.eval_operand = "";
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "cannot tell what the eval query's <-> compares"));
	/* an expression equal to the live key needs no reading of the eval query */
	half.live_key = "((embedding)::halfvec(3))";
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), 0);
	half.live_key = "embedding";
	half.eval_op = NULL;
	assert_int_equal(shape_verdict(&half, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "uses no distance operator"));
}

static void test_recall(void **state)
{
	(void)state;
	const int64_t truth[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	const int64_t exact[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
	const int64_t half[] = {1, 2, 3, 4, 5, 50, 51, 52, 53, 54};
	const int64_t dups[] = {1, 1, 1, 2, 2};
	assert_true(fabs(recall_at_k(exact, 10, truth, 10, 10) - 1.0) < 1e-12);
	assert_true(fabs(recall_at_k(half, 10, truth, 10, 10) - 0.5) < 1e-12);
	assert_true(fabs(recall_at_k(half, 10, truth, 10, 5) - 1.0) < 1e-12);
	assert_true(fabs(recall_at_k(dups, 5, truth, 10, 5) - 0.4) < 1e-12);
	assert_true(fabs(recall_at_k(half, 3, truth, 10, 10) - 0.3) < 1e-12); /* fewer results than k */
	assert_true(fabs(recall_at_k(half, 10, truth, 2, 10) - 1.0) < 1e-12); /* fewer true neighbours than k */
	assert_true(fabs(recall_at_k(NULL, 0, truth, 10, 10) - 0.0) < 1e-12);
}

static void test_percentile(void **state)
{
	(void)state;
	double s[] = {5, 1, 4, 2, 3};
	assert_true(fabs(percentile(s, 5, 50) - 3) < 1e-12);
	assert_true(fabs(percentile(s, 5, 0) - 1) < 1e-12);
	assert_true(fabs(percentile(s, 5, 100) - 5) < 1e-12);
	assert_true(fabs(percentile(s, 5, 95) - 4.8) < 1e-12);
	double hundred[100];
	for (int i = 0; i < 100; i++)
		hundred[i] = 100 - i; /* 1..100 reversed */
	assert_true(fabs(percentile(hundred, 100, 95) - 95.05) < 1e-9);
	double one[] = {7};
	assert_true(fabs(percentile(one, 1, 95) - 7) < 1e-12);
	assert_true(isnan(percentile(NULL, 0, 50)));
}

static void test_gate(void **state)
{
	(void)state;
	struct gate_result r;
	struct gate_input in = {.base_recall = 0.90, .base_p95_ms = 10, .new_recall = 0.88, .new_p95_ms = 12.5,
	                        .recall_tolerance = 0.02, .latency_tolerance = 0.25};
	gate_evaluate(&in, &r); /* exactly on both edges */
	assert_true(r.pass);
	in.new_recall = 0.8799;
	gate_evaluate(&in, &r);
	assert_false(r.pass);
	assert_false(r.recall_ok);
	assert_true(r.latency_ok);
	assert_non_null(strstr(r.reason, "recall 0.8799 below 0.8800"));
	in.new_recall = 0.95;
	in.new_p95_ms = 12.6;
	gate_evaluate(&in, &r);
	assert_false(r.pass);
	assert_true(r.recall_ok);
	assert_non_null(strstr(r.reason, "p95 12.60 ms above 12.50 ms"));
	/* an absolute budget accepts a slower index the relative bound refuses */
	in.latency_budget_ms = 20;
	gate_evaluate(&in, &r);
	assert_true(r.pass);
	assert_non_null(strstr(r.reason, "within latency_budget_ms"));
	in.latency_budget_ms = 12;
	gate_evaluate(&in, &r);
	assert_false(r.pass);
	assert_non_null(strstr(r.reason, "latency_budget_ms >= 13 would accept it"));
	in.latency_budget_ms = 0;
	in.new_recall = 0.5;
	gate_evaluate(&in, &r);
	assert_false(r.recall_ok || r.latency_ok);
}

static void test_happy_path(void **state)
{
	(void)state;
	enum job_state s = JOB_PREFLIGHT;
	const enum job_state path[] = {JOB_BASELINE, JOB_BUILD, JOB_VERIFY, JOB_SWAP, JOB_WATCH, JOB_RETAIN, JOB_DONE};
	for (size_t i = 0; i < sizeof(path) / sizeof(*path); i++) {
		struct job_transition t = job_next(s, JEV_STEP_OK, 1, 3);
		assert_int_equal(t.next, path[i]);
		assert_int_equal(t.action, path[i] == JOB_DONE ? JACT_DROP_OLD_INDEX : JACT_RUN_STEP);
		s = t.next;
	}
	assert_true(job_is_terminal(s));
}

static void test_transitions(void **state)
{
	(void)state;
	struct job_transition t;
	/* retries before the swap, then failure with cleanup of the new index */
	t = job_next(JOB_BUILD, JEV_TRANSIENT, 1, 3);
	assert_int_equal(t.next, JOB_BUILD);
	assert_int_equal(t.action, JACT_RETRY_AFTER_BACKOFF);
	t = job_next(JOB_BUILD, JEV_TRANSIENT, 3, 3);
	assert_int_equal(t.next, JOB_FAILED);
	assert_int_equal(t.action, JACT_DROP_NEW_INDEX);
	t = job_next(JOB_SWAP, JEV_TRANSIENT, 2, 5); /* lock_timeout: retry the swap */
	assert_int_equal(t.next, JOB_SWAP);
	assert_int_equal(t.action, JACT_RETRY_AFTER_BACKOFF);
	t = job_next(JOB_SWAP, JEV_TRANSIENT, 5, 5);
	assert_int_equal(t.next, JOB_FAILED);
	assert_int_equal(t.action, JACT_DROP_NEW_INDEX);
	/* preflight/baseline failures have nothing to drop */
	t = job_next(JOB_PREFLIGHT, JEV_FATAL, 1, 3);
	assert_int_equal(t.next, JOB_FAILED);
	assert_int_equal(t.action, JACT_NONE);
	t = job_next(JOB_BASELINE, JEV_CANCEL, 1, 3);
	assert_int_equal(t.next, JOB_CANCELLED);
	assert_int_equal(t.action, JACT_NONE);
	/* gate refusal leaves the live index untouched and drops the new one */
	t = job_next(JOB_VERIFY, JEV_GATE_FAILED, 1, 3);
	assert_int_equal(t.next, JOB_FAILED);
	assert_int_equal(t.action, JACT_DROP_NEW_INDEX);
	assert_int_equal(job_next(JOB_BUILD, JEV_GATE_FAILED, 1, 3).action, JACT_REJECT);
	/* cancel: drops a build in progress; refused during and after the swap */
	t = job_next(JOB_BUILD, JEV_CANCEL, 1, 3);
	assert_int_equal(t.next, JOB_CANCELLED);
	assert_int_equal(t.action, JACT_DROP_NEW_INDEX);
	assert_int_equal(job_next(JOB_SWAP, JEV_CANCEL, 1, 3).action, JACT_REJECT);
	assert_int_equal(job_next(JOB_WATCH, JEV_CANCEL, 1, 3).action, JACT_REJECT);
	/* rollback only after the swap */
	assert_int_equal(job_next(JOB_VERIFY, JEV_ROLLBACK, 1, 3).action, JACT_REJECT);
	t = job_next(JOB_WATCH, JEV_DEGRADED, 1, 3);
	assert_int_equal(t.next, JOB_ROLLED_BACK);
	assert_int_equal(t.action, JACT_ROLLBACK_SWAP);
	t = job_next(JOB_RETAIN, JEV_ROLLBACK, 1, 3);
	assert_int_equal(t.next, JOB_ROLLED_BACK);
	assert_int_equal(t.action, JACT_ROLLBACK_SWAP);
	/* terminal states accept nothing */
	for (int s = JOB_DONE; s < JOB_STATE_COUNT; s++)
		for (int e = 0; e < JEV_EVENT_COUNT; e++) {
			t = job_next((enum job_state)s, (enum job_event)e, 1, 3);
			assert_int_equal(t.next, s);
			assert_int_equal(t.action, JACT_REJECT);
		}
	/* no event ever moves a job backwards to an earlier non-terminal step */
	for (int s = 0; s < JOB_DONE; s++)
		for (int e = 0; e < JEV_EVENT_COUNT; e++) {
			t = job_next((enum job_state)s, (enum job_event)e, 1, 3);
			assert_true((int)t.next >= s || job_is_terminal(t.next));
		}
}

/* A restarted coordinator goes on from what the catalog says, never from
 * a state the job could not be in. */
static void test_resume(void **state)
{
	(void)state;
	struct job_transition t = job_resume(JOB_SWAP, true, true);
	assert_int_equal(t.next, JOB_WATCH);
	assert_int_equal(t.action, JACT_RUN_STEP);
	assert_int_equal(job_resume(JOB_SWAP, true, false).next, JOB_SWAP);
	assert_int_equal(job_resume(JOB_WATCH, true, false).next, JOB_WATCH);
	assert_int_equal(job_resume(JOB_RETAIN, true, false).next, JOB_RETAIN);
	assert_int_equal(job_resume(JOB_BUILD, true, false).next, JOB_BUILD);
	assert_int_equal(job_resume(JOB_VERIFY, true, false).next, JOB_BUILD);
	assert_int_equal(job_resume(JOB_VERIFY, false, false).next, JOB_PREFLIGHT);
	assert_int_equal(job_resume(JOB_BASELINE, true, false).next, JOB_PREFLIGHT);
	assert_int_equal(job_resume(JOB_PREFLIGHT, false, false).next, JOB_PREFLIGHT);
	for (int s = JOB_DONE; s < JOB_STATE_COUNT; s++) {
		t = job_resume((enum job_state)s, true, true);
		assert_int_equal(t.action, JACT_REJECT);
		assert_int_equal(t.next, s);
	}
	/* the resume event never moves a job through job_next */
	for (int s = 0; s < JOB_STATE_COUNT; s++)
		assert_int_equal(job_next((enum job_state)s, JEV_RESUMED, 1, 3).action, JACT_REJECT);
	assert_string_equal(job_event_name(JEV_RESUMED), "resumed");
}

/* Another instance holds the lock now: from any running step, swap and after
 * the swap included, this instance stops and leaves every index alone. */
static void test_taken_over(void **state)
{
	(void)state;
	for (int s = 0; s < JOB_DONE; s++) {
		struct job_transition t = job_next((enum job_state)s, JEV_TAKEN_OVER, 1, 3);
		assert_int_equal(t.next, JOB_CANCELLED);
		assert_int_equal(t.action, JACT_NONE);
	}
	for (int s = JOB_DONE; s < JOB_STATE_COUNT; s++)
		assert_int_equal(job_next((enum job_state)s, JEV_TAKEN_OVER, 1, 3).action, JACT_REJECT);
	assert_string_equal(job_event_name(JEV_TAKEN_OVER), "taken_over");
}

/* approve_swap keeps a refused candidate for the operator: override swaps
 * it, withdraw drops it; neither exists anywhere else. */
static void test_gate_held(void **state)
{
	(void)state;
	struct job_transition t = job_next(JOB_VERIFY, JEV_GATE_HELD, 1, 3);
	assert_int_equal(t.next, JOB_SWAP);
	assert_int_equal(t.action, JACT_RUN_STEP);
	t = job_next(JOB_SWAP, JEV_OVERRIDE, 1, 3);
	assert_int_equal(t.next, JOB_SWAP);
	assert_int_equal(t.action, JACT_RUN_STEP);
	t = job_next(JOB_SWAP, JEV_WITHDRAW, 1, 3);
	assert_int_equal(t.next, JOB_CANCELLED);
	assert_int_equal(t.action, JACT_DROP_NEW_INDEX);
	for (int s = 0; s < JOB_STATE_COUNT; s++) {
		if (s != JOB_VERIFY)
			assert_int_equal(job_next((enum job_state)s, JEV_GATE_HELD, 1, 3).action, JACT_REJECT);
		if (s != JOB_SWAP) {
			assert_int_equal(job_next((enum job_state)s, JEV_OVERRIDE, 1, 3).action, JACT_REJECT);
			assert_int_equal(job_next((enum job_state)s, JEV_WITHDRAW, 1, 3).action, JACT_REJECT);
		}
	}
	assert_string_equal(job_event_name(JEV_OVERRIDE), "override");
}

static void test_names_and_backoff(void **state)
{
	(void)state;
	for (int s = 0; s < JOB_STATE_COUNT; s++)
		assert_int_equal(job_state_from_name(job_state_name((enum job_state)s)), s);
	assert_int_equal(job_state_from_name("nope"), -1);
	assert_string_equal(job_state_name(JOB_ROLLED_BACK), "rolled_back");
	assert_string_equal(job_action_name(JACT_DROP_NEW_INDEX), "drop_new_index");
	assert_string_equal(job_event_name(JEV_GATE_FAILED), "gate_failed");
	assert_true(job_backoff_seconds(1, 2, 60) == 2);
	assert_true(job_backoff_seconds(3, 2, 60) == 8);
	assert_true(job_backoff_seconds(10, 2, 60) == 60);
}

static void test_swap_sql(void **state)
{
	(void)state;
	char sql[2048];
	struct swap_names n = {.schema = "public", .table = "Items", .live = "items_idx", .fresh = "items_idx_vg7",
	                       .retired = "items_idx_vgold7", .lock_timeout_ms = 50};
	/* the candidate out of every plan until the swap, and back in for the
	 * verify transaction only */
	assert_int_equal(sql_hide_candidate("public", "Items", "items_idx_vg7", NULL, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.items_idx_vg7'::regclass;\n"
	                         "UPDATE pg_class SET relname = relname WHERE oid = 'public.\"Items\"'::regclass;\n"
	                         "COMMIT;");
	assert_int_equal(sql_measure_candidate("public", "items_idx", "items_idx_vg7", sql, sizeof(sql)), 0);
	assert_string_equal(sql, "UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'public.items_idx_vg7'::regclass;\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.items_idx'::regclass");
	/* without superuser: hypopg, wherever its extension lives, names quoted as needed */
	assert_int_equal(sql_hypopg_hide("ext", "public", "Items_idx", sql, sizeof(sql)), 0);
	assert_string_equal(sql, "SELECT ext.hypopg_hide_index('public.\"Items_idx\"'::regclass)");
	assert_int_equal(sql_hypopg_unhide_all("My Ext", sql, sizeof(sql)), 0);
	assert_string_equal(sql, "SELECT \"My Ext\".hypopg_unhide_all_indexes()");
	assert_int_equal(sql_hypopg_hide("ext", "public", "items_idx", sql, 20), -1);
	assert_int_equal(sql_swap(&n, SWAP_FLIP, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\n"
	                         "SET LOCAL lock_timeout = '50ms';\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.items_idx'::regclass;\n"
	                         "UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'public.items_idx_vg7'::regclass;\n"
	                         "ALTER INDEX public.items_idx RENAME TO items_idx_vgold7;\n"
	                         "ALTER INDEX public.items_idx_vg7 RENAME TO items_idx;\n"
	                         "UPDATE pg_class SET relname = relname WHERE oid = 'public.\"Items\"'::regclass;\n"
	                         "COMMIT;");
	/* rollback is the same flip with the roles exchanged */
	assert_int_equal(sql_rollback(&n, sql, sizeof(sql)), 0);
	assert_non_null(strstr(sql, "SET indisvalid = false WHERE indexrelid = 'public.items_idx'::regclass"));
	assert_non_null(strstr(sql, "SET indisvalid = true WHERE indexrelid = 'public.items_idx_vgold7'::regclass"));
	assert_non_null(strstr(sql, "ALTER INDEX public.items_idx RENAME TO items_idx_vg7;"));
	assert_non_null(strstr(sql, "ALTER INDEX public.items_idx_vgold7 RENAME TO items_idx;"));
	assert_int_equal(sql_swap(&n, SWAP_RENAME, sql, sizeof(sql)), 0);
	assert_null(strstr(sql, "pg_index"));
	assert_non_null(strstr(sql, "ALTER INDEX public.items_idx_vg7 RENAME TO items_idx;"));
	assert_int_equal(sql_swap(&n, SWAP_FLIP, sql, 40), -1);
	/* hostile names stay identifiers */
	struct swap_names evil = {.schema = "s", .table = "t", .live = "x'; DROP TABLE t; --", .fresh = "f",
	                          .retired = "r", .lock_timeout_ms = 10};
	assert_int_equal(sql_swap(&evil, SWAP_FLIP, sql, sizeof(sql)), 0);
	assert_non_null(strstr(sql, "'s.\"x''; DROP TABLE t; --\"'::regclass"));
	assert_non_null(strstr(sql, "ALTER INDEX s.\"x'; DROP TABLE t; --\" RENAME TO r;"));

	assert_int_equal(sql_drop_index_concurrently("public", "Old Idx", sql, sizeof(sql)), 0);
	assert_string_equal(sql, "DROP INDEX CONCURRENTLY IF EXISTS public.\"Old Idx\"");
	const char *names[] = {"maintenance_work_mem", "hnsw.ef_search", "application_name"};
	const char *values[] = {"1GB", "100", "vecgate rebuild 'x'"};
	assert_int_equal(sql_session_settings(names, values, 3, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "SET maintenance_work_mem = '1GB'; SET hnsw.ef_search = '100'; "
	                         "SET application_name = 'vecgate rebuild ''x''';");
	const char *bad[] = {"work_mem; DROP"};
	assert_int_equal(sql_session_settings(bad, values, 1, sql, sizeof(sql)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rewrite_hnsw),      cmocka_unit_test(test_rewrite_clauses_and_quoting),
		cmocka_unit_test(test_rewrite_rejects),   cmocka_unit_test(test_rewrite_malformed),   cmocka_unit_test(test_rewrite_shape),  cmocka_unit_test(test_shape_verdict),   cmocka_unit_test(test_recall),
		cmocka_unit_test(test_percentile),        cmocka_unit_test(test_gate),
		cmocka_unit_test(test_happy_path),        cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_resume),            cmocka_unit_test(test_gate_held),            cmocka_unit_test(test_taken_over),
		cmocka_unit_test(test_names_and_backoff), cmocka_unit_test(test_swap_sql),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
