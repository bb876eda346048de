/*
 * Fuzz the SQL classifier and the routing checks built on it.  Every Query
 * and Parse message that mentions an index or a distance operator is lexed
 * here, byte for byte as the client sent it (not NUL-terminated), and the
 * answer decides whether a statement may leave the primary.  So the lexer
 * must never read outside the buffer, and the answer must be coherent: a
 * "read-only" statement that is also DDL or locking would send writes to a
 * replica.  The k-NN recogniser the eval's exact scan relies on reads the
 * same text: what it accepts must be a single read-only vector read.  The
 * plan-hint pin (swap_mode hint) reads it too: the hint it writes goes in
 * front of the application's text, so it must be one well-formed comment
 * that names the relation of a table the classifier saw.
 * Input: the SQL text.
 */
#include "routing/classify.h"
#include "routing/knn_filter.h"
#include "routing/knn_query.h"
#include "routing/pin_hint.h"
#include "routing/route.h"
#include "tests/fuzz/fuzz_util.h"

static void check_name(const char *s)
{
	FUZZ_CHECK(memchr(s, 0, SQL_NAME_MAX) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *sql = (char *)fuzz_memdup(data, size); /* exact size: no terminator to lean on */
	struct sql_class c;
	sql_classify(sql, size, &c);

	FUZZ_CHECK(c.statements >= 0 && (size_t)c.statements <= size);
	FUZZ_CHECK(c.n_tables >= 0 && c.n_tables <= SQL_MAX_TABLES);
	FUZZ_CHECK(!c.truncated || c.n_tables == SQL_MAX_TABLES);
	for (int i = 0; i < c.n_tables; i++) {
		check_name(c.tables[i]);
		FUZZ_CHECK(c.tables[i][0]);
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c.tables[i], c.tables[j])); /* listed once */
	}
	check_name(c.ddl_target);
	check_name(c.ddl_target2);
	/* coherence of the flags the router relies on */
	if (c.read_only)
		FUZZ_CHECK(c.statements > 0 && !c.ddl && !c.locking && !c.txn_control);
	if (c.txn_begin || c.txn_end)
		FUZZ_CHECK(c.txn_control);
	if (c.ddl_kind != DDL_NONE)
		FUZZ_CHECK(c.ddl);
	if (c.ddl)
		FUZZ_CHECK(c.ddl_kind != DDL_NONE && !c.read_only);
	if (c.statements == 0)
		FUZZ_CHECK(!c.read_only && !c.ddl && c.n_tables == 0);

	/* the same text gives the same answer (no state kept between calls) */
	struct sql_class again;
	sql_classify(sql, size, &again);
	FUZZ_CHECK(!memcmp(&c, &again, sizeof(c)));

	/* routing: a vector read matches every table it names, split at the
	 * last dot as sql_name_matches does */
	bool vread = route_is_vector_read(&c);
	if (vread)
		FUZZ_CHECK(c.statements == 1 && c.read_only && c.vector_op);
	char schemas[SQL_MAX_TABLES][SQL_NAME_MAX];
	struct route_table_ref refs[SQL_MAX_TABLES];
	for (int i = 0; i < c.n_tables; i++) {
		const char *dot = strrchr(c.tables[i], '.');
		size_t sl = dot ? (size_t)(dot - c.tables[i]) : 0;
		memcpy(schemas[i], c.tables[i], sl);
		schemas[i][sl] = 0;
		refs[i].schema = dot ? schemas[i] : "public";
		refs[i].table = dot ? dot + 1 : c.tables[i];
		FUZZ_CHECK(sql_name_matches(c.tables[i], refs[i].schema, refs[i].table));
	}
	uint64_t hits = route_match(&c, refs, c.n_tables);
	if (!vread)
		FUZZ_CHECK(hits == 0);
	else if (c.n_tables > 0)
		FUZZ_CHECK(hits == (UINT64_C(1) << c.n_tables) - 1);

	/* the query vector's place: inside the text, a literal without quotes */
	struct vec_operand op;
	sql_vector_operand(sql, size, &op);
	if (op.kind == VOP_LITERAL) {
		FUZZ_CHECK(op.off >= 1 && op.off + op.len < size);
		FUZZ_CHECK(sql[op.off - 1] == '\'' && sql[op.off + op.len] == '\'');
		FUZZ_CHECK(!memchr(sql + op.off, '\'', op.len));
	} else if (op.kind == VOP_PARAM) {
		FUZZ_CHECK(op.param >= 1);
	}

	/* a query one exact scan may answer (eval ground truth) is a
	 * single read-only vector read of the table it names */
	if (!memchr(data, 0, size)) {
		char *text = fuzz_strndup(data, size);
		struct knn_query q;
		char why[200];
		if (knn_query_parse(text, &q, why, sizeof(why)) == 0) {
			FUZZ_CHECK(c.statements == 1 && c.read_only && c.vector_op && c.n_tables == 1);
			FUZZ_CHECK(q.table[0] && q.id_column[0] && q.vector_column[0]);
			FUZZ_CHECK(q.metric >= VDIST_L2 && q.metric <= VDIST_L1);
			char copy[4096];
			FUZZ_CHECK(knn_copy_sql(&q, copy, sizeof(copy)) == 0);
			/* its filter bound to column types and values picked from the
			 * input, applied to cells cut from the input: a refusal says why,
			 * a binding evaluates any row */
			const struct knn_filter *flt = &q.filter;
			FUZZ_CHECK(flt->n_terms <= KNN_FILTER_TERMS && flt->n_columns <= flt->n_terms);
			FUZZ_CHECK(flt->max_param <= KNN_MAX_PARAM);
			if (flt->n_terms) {
				enum knn_coltype types[KNN_FILTER_TERMS];
				for (int c = 0; c < flt->n_columns; c++)
					types[c] = (enum knn_coltype)(data[(size_t)c % size] % (KNN_COL_UUID + 1));
				const char *params[KNN_MAX_PARAM + 1] = {NULL, "[1]", "10", "3", "-1.5", "t", "x",
				                                         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "NaN"};
				struct knn_bound *b = malloc(sizeof(*b));
				char fwhy[300] = "";
				FUZZ_CHECK(b);
				if (knn_filter_bind(flt, types, params, 9, b, fwhy, sizeof(fwhy)) == 0) {
					struct knn_cell cells[KNN_FILTER_TERMS];
					for (int c = 0; c < flt->n_columns; c++) {
						int32_t len = (int32_t)(data[(size_t)(c + 1) % size] % 20) - 1;
						if (len > (int32_t)size)
							len = (int32_t)size;
						if (knn_cell_decode(types[c], data, len, &cells[c]) < 0)
							knn_cell_decode(types[c], NULL, -1, &cells[c]);
					}
					(void)knn_filter_match(b, cells);
				} else {
					FUZZ_CHECK(fwhy[0] && memchr(fwhy, 0, sizeof(fwhy)));
				}
				free(b);
			}
		} else {
			FUZZ_CHECK(memchr(why, 0, sizeof(why)) != NULL && why[0]);
		}
		/* the index shape checks' reading: an operator found is a distance
		 * operator, and a normalised operand normalises to itself */
		struct knn_distance_use use;
		if (knn_distance_use(text, &use) == 0) {
			FUZZ_CHECK(sql_is_vector_operator(use.op, strlen(use.op)));
			FUZZ_CHECK(memchr(use.operand, 0, sizeof(use.operand)) != NULL);
			char again[512];
			if (use.operand[0]) {
				FUZZ_CHECK(knn_expr_normalize(use.operand, again, sizeof(again)) == 0);
				FUZZ_CHECK(!strcmp(again, use.operand));
			}
		}
		char norm[512], norm2[512];
		if (knn_expr_normalize(text, norm, sizeof(norm)) == 0) {
			int rc2 = knn_expr_normalize(norm, norm2, sizeof(norm2));
			if (rc2 != 0 || strcmp(norm, norm2))
				fprintf(stderr, "once:  %s\ntwice: %s\n", norm, rc2 ? "(failed)" : norm2);
			FUZZ_CHECK(rc2 == 0 && !strcmp(norm, norm2));
		}
		free(text);
	}

	/* the pin's hint for each table the classifier saw, and for a fixed one */
	for (int i = 0; i <= c.n_tables; i++) {
		const char *schema = i < c.n_tables ? refs[i].schema : "public";
		const char *table = i < c.n_tables ? refs[i].table : "items";
		char hint[256], again_hint[256];
		const char *why, *why2;
		enum pin_verdict v = pin_hint_for(sql, size, schema, table, "\"items_b\"", hint, sizeof(hint), &why);
		FUZZ_CHECK(v == PIN_NOT_READ || v == PIN_HINTED || v == PIN_UNSAFE);
		FUZZ_CHECK(why != NULL);
		if (v == PIN_UNSAFE)
			FUZZ_CHECK(why[0]);
		if (v == PIN_HINTED) {
			size_t hl = strnlen(hint, sizeof(hint));
			FUZZ_CHECK(hl < sizeof(hint));
			FUZZ_CHECK(!strncmp(hint, "/*+ IndexScan(\"", 15) && hl > 20);
			FUZZ_CHECK(!strcmp(hint + hl - 3, "*/ "));
			/* one comment: no opener or closer inside it */
			FUZZ_CHECK(!strstr(hint + 3, "/*") && strstr(hint, "*/") == hint + hl - 3);
			FUZZ_CHECK(strstr(hint, " \"items_b\") */ ") == hint + hl - 15);
		}
		FUZZ_CHECK(pin_hint_for(sql, size, schema, table, "\"items_b\"", again_hint, sizeof(again_hint), &why2) == v);
		if (v == PIN_HINTED)
			FUZZ_CHECK(!strcmp(hint, again_hint));
	}

	/* the operator check on the first bytes of the input */
	if (size >= 3 && sql_is_vector_operator(sql, 3))
		FUZZ_CHECK(sql[0] == '<' && sql[2] == '>');
	free(sql);
	return 0;
}
