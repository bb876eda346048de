/*
 * A partitioned table's rebuild as pure decisions (routing/partitions.h)
 * and its SQL (routing/rebuild_sql.h): what a candidate found in the
 * catalog after a restart means, the whole's progress,
 * the partitions' candidate names near PostgreSQL's 63-byte limit, and the
 * swap, rollback, drop, record and attach statements over the whole tree,
 * and the whole recall split by the partition each true neighbour lives in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "routing/gate.h"
#include "routing/indexdef.h"
#include "routing/partitions.h"
#include "routing/rebuild_sql.h"

static void test_decide(void **state)
{
	(void)state;
	/* exists, valid, recorded */
	assert_int_equal(part_decide(false, false, false), PART_DO_BUILD);
	assert_int_equal(part_decide(false, false, true), PART_DO_BUILD); /* recorded, then dropped by hand: build */
	assert_int_equal(part_decide(true, false, false), PART_DO_DROP);  /* a build that died */
	assert_int_equal(part_decide(true, true, false), PART_DO_RECORD); /* built, the record did not commit */
	assert_int_equal(part_decide(true, false, true), PART_DO_KEEP);   /* flip mode: hidden once recorded */
	assert_int_equal(part_decide(true, true, true), PART_DO_KEEP);    /* rename mode: visible */
	assert_string_equal(part_state_name(PART_BUILDING), "building");
	assert_string_equal(part_state_name(PART_ATTACHED), "attached");
	assert_string_equal(part_state_name((enum part_state)99), "?");
	assert_string_equal(part_state_name(PART_SWAPPED), "swapped");
}

static void test_percent(void **state)
{
	(void)state;
	/* weighted by rows; an empty partition weighs 1 */
	double rows[3] = {300, 100, 0};
	enum part_state w[3] = {PART_BUILT, PART_BUILDING, PART_PENDING};
	assert_float_equal(part_percent(rows, w, 3, 0.5), 100.0 * 350 / 401, 1e-9);
	w[1] = PART_BUILT;
	assert_float_equal(part_percent(rows, w, 3, 0), 100.0 * 400 / 401, 1e-9);
	w[2] = PART_ATTACHED;
	assert_float_equal(part_percent(rows, w, 3, 0), 100, 1e-9);
	enum part_state none[3] = {PART_PENDING, PART_BUILDING, PART_PENDING};
	assert_float_equal(part_percent(rows, none, 3, 7), 100.0 * 100 / 401, 1e-9); /* fraction capped at 1 */
	assert_float_equal(part_percent(rows, none, 0, 0), 0, 1e-9);
}

static void test_names(void **state)
{
	(void)state;
	char out[INDEX_NAME_MAX + 1], sfx[24];
	part_name_suffix("docs_v_idx_vg12", sfx, sizeof(sfx));
	assert_string_equal(sfx, "_vg12");
	part_name_suffix("docs_v_idx_vgold12", sfx, sizeof(sfx));
	assert_string_equal(sfx, "_vgold12");
	part_name_suffix("docs_v_idx", sfx, sizeof(sfx));
	assert_string_equal(sfx, "");
	part_name_suffix("docs_v_idx_12", sfx, sizeof(sfx));
	assert_string_equal(sfx, "");
	part_child_name("docs_t1_v_idx", "docs_v_idx_vg3", out, sizeof(out));
	assert_string_equal(out, "docs_t1_v_idx_vg3");
	/* the parent's suffix survives a cut parent name */
	char parent[INDEX_NAME_MAX + 1];
	const char *long_live = "a_very_long_partitioned_index_name_that_fills_nearly_all_63_byte";
	index_derived_name(long_live, "_vgold7", parent, sizeof(parent));
	part_child_name("docs_t1_v_idx", parent, out, sizeof(out));
	assert_string_equal(out, "docs_t1_v_idx_vgold7");
	/* two long partitions' indexes sharing 60 bytes never become one name */
	char a[INDEX_NAME_MAX + 1], b[INDEX_NAME_MAX + 1];
	part_child_name("tenant_partition_index_with_a_long_shared_prefix_0000000000_one", "x_vg7", a, sizeof(a));
	part_child_name("tenant_partition_index_with_a_long_shared_prefix_0000000000_two", "x_vg7", b, sizeof(b));
	assert_true(strlen(a) <= INDEX_NAME_MAX && strlen(b) <= INDEX_NAME_MAX);
	assert_string_not_equal(a, b);
	assert_string_equal(a + strlen(a) - 4, "_vg7");
	assert_true(index_is_derived("tenant_partition_index_with_a_long_shared_prefix_0000000000_one", a));
}

static void test_parent_def_and_array(void **state)
{
	(void)state;
	char out[512];
	assert_int_equal(part_parent_def("CREATE INDEX CONCURRENTLY docs_v_idx_vg3 ON ONLY public.docs USING hnsw (v "
	                                 "vector_l2_ops) WITH (m=16)", out, sizeof(out)), 0);
	assert_string_equal(out, "CREATE INDEX IF NOT EXISTS docs_v_idx_vg3 ON ONLY public.docs USING hnsw (v "
	                         "vector_l2_ops) WITH (m=16)");
	assert_int_equal(part_parent_def("CREATE UNIQUE INDEX CONCURRENTLY \"X\" ON ONLY s.t USING btree (a)", out,
	                                 sizeof(out)), 0);
	assert_string_equal(out, "CREATE UNIQUE INDEX IF NOT EXISTS \"X\" ON ONLY s.t USING btree (a)");
	/* not a partitioned index's statement */
	assert_int_equal(part_parent_def("CREATE INDEX CONCURRENTLY x ON public.t USING hnsw (v)", out, sizeof(out)), -1);
	assert_int_equal(part_parent_def("CREATE INDEX x ON ONLY public.t USING hnsw (v)", out, sizeof(out)), -1);
	assert_int_equal(part_parent_def("CREATE INDEX CONCURRENTLY x ON ONLY public.t USING hnsw (v)", out, 20), -1);

	const char *items[] = {"public.a", "\"My\".\"b\"", "c\\d"};
	assert_int_equal(part_text_array(items, 3, out, sizeof(out)), 0);
	assert_string_equal(out, "{\"public.a\",\"\\\"My\\\".\\\"b\\\"\",\"c\\\\d\"}");
	assert_int_equal(part_text_array(items, 0, out, sizeof(out)), 0);
	assert_string_equal(out, "{}");
	assert_int_equal(part_text_array(items, 3, out, 10), -1);
}

static const char *const ls[] = {"public", "Other"};
static const char *const leaf[] = {"docs_t1", "docs_t2"};
static const char *const live[] = {"docs_t1_v_idx", "docs_t2_v_idx"};
static const char *const fresh[] = {"docs_t1_v_idx_vg3", "docs_t2_v_idx_vg3"};
static const char *const retired[] = {"docs_t1_v_idx_vgold3", "docs_t2_v_idx_vgold3"};

static void test_swap_sql(void **state)
{
	(void)state;
	char sql[8192];
	struct part_names n = {"public", "docs", "docs_v_idx", "docs_v_idx_vg3", "docs_v_idx_vgold3", 2, ls, leaf, live,
	                       fresh, retired, 50, NULL};
	assert_int_equal(sql_part_swap(&n, SWAP_FLIP, sql, sizeof(sql)), 0);
	assert_string_equal(
		sql, "BEGIN;\n"
		     "SET LOCAL lock_timeout = '50ms';\n"
		     "UPDATE pg_index SET indisvalid = false WHERE indexrelid IN (SELECT 'public.docs_v_idx'::regclass UNION "
		     "ALL SELECT relid FROM pg_partition_tree('public.docs_v_idx'::regclass) WHERE level > 0);\n"
		     "UPDATE pg_index SET indisvalid = true WHERE indexrelid IN (SELECT 'public.docs_v_idx_vg3'::regclass UNION "
		     "ALL SELECT relid FROM pg_partition_tree('public.docs_v_idx_vg3'::regclass) WHERE level > 0);\n"
		     "ALTER INDEX public.docs_v_idx RENAME TO docs_v_idx_vgold3;\n"
		     "ALTER INDEX public.docs_t1_v_idx RENAME TO docs_t1_v_idx_vgold3;\n"
		     "ALTER INDEX \"Other\".docs_t2_v_idx RENAME TO docs_t2_v_idx_vgold3;\n"
		     "ALTER INDEX public.docs_v_idx_vg3 RENAME TO docs_v_idx;\n"
		     "ALTER INDEX public.docs_t1_v_idx_vg3 RENAME TO docs_t1_v_idx;\n"
		     "ALTER INDEX \"Other\".docs_t2_v_idx_vg3 RENAME TO docs_t2_v_idx;\n"
		     "UPDATE pg_class SET relname = relname WHERE oid IN (SELECT 'public.docs'::regclass UNION ALL SELECT "
		     "relid FROM pg_partition_tree('public.docs'::regclass) WHERE level > 0);\n"
		     "COMMIT;");
	/* rename mode: the renames only (the old tree is dropped after) */
	assert_int_equal(sql_part_swap(&n, SWAP_RENAME, sql, sizeof(sql)), 0);
	assert_null(strstr(sql, "pg_index"));
	assert_null(strstr(sql, "pg_class"));
	assert_non_null(strstr(sql, "ALTER INDEX \"Other\".docs_t2_v_idx_vg3 RENAME TO docs_t2_v_idx;"));
	/* rollback: the retired tree valid again under the live names */
	assert_int_equal(sql_part_rollback(&n, sql, sizeof(sql)), 0);
	assert_non_null(strstr(sql, "SET indisvalid = true WHERE indexrelid IN (SELECT 'public.docs_v_idx_vgold3'"));
	assert_non_null(strstr(sql, "SET indisvalid = false WHERE indexrelid IN (SELECT 'public.docs_v_idx'::"));
	assert_non_null(strstr(sql, "ALTER INDEX public.docs_t1_v_idx RENAME TO docs_t1_v_idx_vg3;\n"));
	assert_non_null(strstr(sql, "ALTER INDEX public.docs_t1_v_idx_vgold3 RENAME TO docs_t1_v_idx;\n"));
	/* the fence goes first */
	n.fence = "SELECT fence()";
	assert_int_equal(sql_part_swap(&n, SWAP_FLIP, sql, sizeof(sql)), 0);
	assert_memory_equal(sql, "BEGIN;\nSELECT fence();\nSET LOCAL", 32);
	assert_int_equal(sql_part_swap(&n, SWAP_FLIP, sql, 300), -1);
}

static void test_drop_record_attach_sql(void **state)
{
	(void)state;
	char sql[8192];
	assert_int_equal(sql_part_drop("public", "docs_v_idx_vg3", 2, ls, fresh, 500, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\nSET LOCAL lock_timeout = '500ms';\n"
	                         "DROP INDEX IF EXISTS public.docs_v_idx_vg3;\n"
	                         "DROP INDEX IF EXISTS public.docs_t1_v_idx_vg3;\n"
	                         "DROP INDEX IF EXISTS \"Other\".docs_t2_v_idx_vg3;\n"
	                         "COMMIT;");
	assert_int_equal(sql_part_drop("public", "p", 2, ls, NULL, 0, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\nSET LOCAL lock_timeout = '50ms';\nDROP INDEX IF EXISTS public.p;\nCOMMIT;");

	assert_int_equal(sql_part_record(42, "Other", "docs_t2", "docs_t2_v_idx_vg3", true, "public", "docs", NULL, sql,
	                                 sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
	                         "'\"Other\".docs_t2_v_idx_vg3'::regclass;\n"
	                         "UPDATE pg_class SET relname = relname WHERE oid IN ('\"Other\".docs_t2'::regclass, "
	                         "'public.docs'::regclass);\n"
	                         "UPDATE vecgate.jobs SET partitions_done = array_append(array_remove(coalesce("
	                         "partitions_done, '{}'), '\"Other\".docs_t2_v_idx_vg3'), '\"Other\".docs_t2_v_idx_vg3') "
	                         "WHERE id = 42;\nCOMMIT;");
	/* rename mode: the record only, the candidate stays visible */
	assert_int_equal(sql_part_record(42, "public", "docs_t1", "docs_t1_v_idx_vg3", false, "public", "docs", "SELECT f()",
	                                 sql, sizeof(sql)), 0);
	assert_null(strstr(sql, "pg_index"));
	assert_memory_equal(sql, "BEGIN;\nSELECT f();\nUPDATE vecgate.jobs", 37);

	struct part_names n = {"public", "docs", "docs_v_idx", "docs_v_idx_vg3", "docs_v_idx_vgold3", 2, ls, leaf, live,
	                       fresh, retired, 500, NULL};
	assert_int_equal(sql_part_attach(&n, "CREATE INDEX IF NOT EXISTS docs_v_idx_vg3 ON ONLY public.docs USING hnsw (v)",
	                                 sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\nSET LOCAL lock_timeout = '500ms';\n"
	                         "CREATE INDEX IF NOT EXISTS docs_v_idx_vg3 ON ONLY public.docs USING hnsw (v);\n"
	                         "ALTER INDEX public.docs_v_idx_vg3 ATTACH PARTITION public.docs_t1_v_idx_vg3;\n"
	                         "ALTER INDEX public.docs_v_idx_vg3 ATTACH PARTITION \"Other\".docs_t2_v_idx_vg3;\n"
	                         "COMMIT;");
	assert_int_equal(sql_part_measure("public", "docs_v_idx", "docs_v_idx_vg3", sql, sizeof(sql)), 0);
	assert_non_null(strstr(sql, "SET indisvalid = true WHERE indexrelid IN (SELECT 'public.docs_v_idx_vg3'"));
	assert_non_null(strstr(sql, "SET indisvalid = false WHERE indexrelid IN (SELECT 'public.docs_v_idx'::"));
	assert_int_not_equal(sql[strlen(sql) - 1], '\n');
}

/* partitions: rolling: one partition's swap, and every partition back */
static void test_rolling_sql(void **state)
{
	(void)state;
	char sql[8192];
	assert_int_equal(sql_part_swap_one(42, "Other", "docs_t2", "docs_t2_v_idx", "docs_t2_v_idx_vg3", "public", "docs",
	                                   NULL, 50, sql, sizeof(sql)),
	                 0);
	assert_string_equal(sql, "BEGIN;\nSET LOCAL lock_timeout = '50ms';\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"Other\".docs_t2_v_idx'::regclass;\n"
	                         "UPDATE pg_index SET indisvalid = true WHERE indexrelid = "
	                         "'\"Other\".docs_t2_v_idx_vg3'::regclass;\n"
	                         "UPDATE pg_class SET relname = relname WHERE oid IN ('\"Other\".docs_t2'::regclass, "
	                         "'public.docs'::regclass);\n"
	                         "UPDATE vecgate.jobs SET partitions_swapped = array_append(array_remove(coalesce("
	                         "partitions_swapped, '{}'), '\"Other\".docs_t2_v_idx_vg3'), '\"Other\".docs_t2_v_idx_vg3') "
	                         "WHERE id = 42;\nCOMMIT;");
	/* no renames: the names move once, with the parents */
	assert_null(strstr(sql, "RENAME"));
	assert_int_equal(sql_part_swap_one(42, "Other", "docs_t2", "docs_t2_v_idx", "docs_t2_v_idx_vg3", "public", "docs",
	                                   NULL, 50, sql, 200),
	                 -1);
	struct part_names n = {"public", "docs", "docs_v_idx", "docs_v_idx_vg3", "docs_v_idx_vgold3", 2, ls, leaf, live,
	                       fresh, retired, 500, "SELECT fence()"};
	assert_int_equal(sql_part_unroll(42, &n, sql, sizeof(sql)), 0);
	assert_string_equal(sql, "BEGIN;\nSELECT fence();\nSET LOCAL lock_timeout = '500ms';\n"
	                         "UPDATE pg_index SET indisvalid = true WHERE indexrelid IN (SELECT 'public.docs_v_idx'::regclass "
	                         "UNION ALL SELECT relid FROM pg_partition_tree('public.docs_v_idx'::regclass) WHERE level > 0);\n"
	                         "UPDATE pg_index SET indisvalid = false WHERE indexrelid IN (0, coalesce(to_regclass("
	                         "'public.docs_t1_v_idx_vg3'), 0), coalesce(to_regclass('\"Other\".docs_t2_v_idx_vg3'), 0));\n"
	                         "UPDATE pg_class SET relname = relname WHERE oid IN (SELECT 'public.docs'::regclass UNION ALL "
	                         "SELECT relid FROM pg_partition_tree('public.docs'::regclass) WHERE level > 0);\n"
	                         "UPDATE vecgate.jobs SET partitions_swapped = '{}' WHERE id = 42;\nCOMMIT;");
	assert_int_equal(sql_part_unroll(42, &n, sql, 400), -1);
}

static void test_recall_split(void **state)
{
	(void)state;
	double hits[3] = {0}, want[3] = {0};
	/* q1: truth 1,2 in partition 0, 3,4 in partition 1; found 1,3,4 and a stranger */
	const int64_t t1[] = {1, 2, 3, 4}, g1[] = {1, 3, 9, 4};
	const int p1[] = {0, 0, 1, 1};
	part_recall_add(g1, 4, t1, 4, NULL, 0, 4, p1, 3, hits, want);
	assert_true(hits[0] == 1 && want[0] == 2 && hits[1] == 2 && want[1] == 2 && want[2] == 0);
	/* q2: all in partition 1, found all (a duplicate answer counts once) */
	const int64_t t2[] = {5, 6, 7, 8}, g2[] = {5, 5, 6, 7};
	const int p2[] = {1, 1, 1, 1};
	part_recall_add(g2, 4, t2, 4, NULL, 0, 4, p2, 3, hits, want);
	assert_true(hits[1] == 5 && want[1] == 6);
	/* the split adds up to the whole recall (every query weighs k here) */
	double whole = (recall_at_k(g1, 4, t1, 4, 4) + recall_at_k(g2, 4, t2, 4, 4)) / 2;
	assert_true(fabs((hits[0] + hits[1]) / (want[0] + want[1]) - whole) < 1e-12);
	/* partition 2 held no true neighbour: no number, not 0 */
	assert_true(isnan(part_recall_of(hits[2], want[2])));
	assert_true(part_recall_of(hits[0], want[0]) == 0.5);

	/* a boundary tie found instead of the k-th neighbour counts where that
	 * neighbour lives; one neighbour of an unknown partition counts nowhere */
	double h[2] = {0}, w[2] = {0};
	const int64_t t3[] = {1, 2, 3}, g3[] = {1, 2, 77}, ties[] = {77};
	const int p3[] = {0, -1, 1};
	part_recall_add(g3, 3, t3, 3, ties, 1, 3, p3, 2, h, w);
	assert_true(h[0] == 1 && w[0] == 1 && h[1] == 1 && w[1] == 1);
	/* k below the truth: only the first k neighbours count */
	double h4[1] = {0}, w4[1] = {0};
	const int p4[] = {0, 0, 0};
	part_recall_add(g3, 3, t3, 3, NULL, 0, 2, p4, 1, h4, w4);
	assert_true(h4[0] == 2 && w4[0] == 2);
	/* answers never exceed want, ties or not */
	double h5[1] = {0}, w5[1] = {0};
	const int64_t g5[] = {1, 77, 78}, ties5[] = {77, 78};
	const int p5[] = {0};
	part_recall_add(g5, 3, t3, 1, ties5, 2, 3, p5, 1, h5, w5);
	assert_true(h5[0] == 1 && w5[0] == 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide),    cmocka_unit_test(test_percent),
		cmocka_unit_test(test_names),     cmocka_unit_test(test_parent_def_and_array),
		cmocka_unit_test(test_swap_sql),  cmocka_unit_test(test_drop_record_attach_sql),
		cmocka_unit_test(test_recall_split),      cmocka_unit_test(test_rolling_sql),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
