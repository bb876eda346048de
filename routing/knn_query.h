/*
 * Can the ground truth of an eval query be computed by one exact scan of its
 * table?  Only when the query is a plain k-NN over one table, so that "the k
 * rows with the smallest distance" is all it asks.  This recognises that
 * shape with the SQL lexer (routing/classify.h) and builds the statements
 * the scan runs.
 *
 * Recognised (keywords in any case, identifiers plain or "quoted", an
 * optional trailing ';'):
 *   SELECT [q.]id FROM [schema.]table [[AS] q]
 *   [WHERE term [AND term ...]]
 *   ORDER BY [q.]vec OP $1[::vector|::halfvec[(n)]] [ASC] [NULLS LAST]
 *            [, [q.]id [ASC] [NULLS LAST]]
 *   LIMIT $2
 * with OP one of <-> <#> <=> <+>, `id` the one selected column and the
 * tie-break column if there is one.  A term is a simple predicate on one
 * column, which the scan applies to each row itself (routing/knn_filter.h):
 *   [q.]col {= | < | <= | > | >=} value
 *   [q.]col IN (value [, value ...])
 *   [q.]col BETWEEN value AND value
 *   [q.]col IS [NOT] NULL
 * a value being a parameter $n (n >= 2: $2 is k, $3 on come with each eval
 * query), a number, a '...' string or true/false, optionally cast (::type).
 * Anything else (OR, NOT, parentheses, another operator, a function, a
 * join, a subquery, several output columns, an expression, DESC, another
 * cast, a LIMIT other than $2, bit or sparse operators) is not recognised,
 * with the reason, and the caller falls back to one exact query per eval
 * vector.
 * Whether the columns really are an integer id and a vector or halfvec is
 * the catalog's to say (KNN_PROBE_SQL), inside the eval snapshot.
 */
#ifndef VG_ROUTING_KNN_QUERY_H
#define VG_ROUTING_KNN_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol/vdist.h"
#include "protocol/vecfmt.h"
#include "routing/classify.h"

#define KNN_FILTER_TERMS 8   /* AND-ed terms, and distinct columns */
#define KNN_FILTER_VALUES 32 /* values over all terms */
#define KNN_VALUE_MAX 128    /* a literal's bytes */
#define KNN_MAX_PARAM 16     /* the highest $n a filter may use */

enum knn_cmp { KNN_EQ = 0, KNN_LT, KNN_LE, KNN_GT, KNN_GE, KNN_IN, KNN_BETWEEN, KNN_IS_NULL, KNN_IS_NOT_NULL };
enum knn_value_kind { KNN_V_PARAM = 0, KNN_V_NUMBER, KNN_V_STRING, KNN_V_BOOL };

struct knn_value {
	enum knn_value_kind kind;
	int param;                /* KNN_V_PARAM: n of $n */
	char text[KNN_VALUE_MAX]; /* the literal: digits (a leading '-' kept), the string unquoted, "true"/"false" */
};

struct knn_term {
	int column;              /* into knn_filter.columns */
	enum knn_cmp cmp;
	int first, n_values;     /* knn_filter.values[first .. first + n_values) */
};

struct knn_filter {
	int n_terms, n_columns, n_values;
	struct knn_term terms[KNN_FILTER_TERMS];
	char columns[KNN_FILTER_TERMS][SQL_NAME_MAX]; /* each column once, in order of first use */
	struct knn_value values[KNN_FILTER_VALUES];
	int max_param; /* the highest $n used, 0 without */
};

struct knn_query {
	char schema[SQL_NAME_MAX]; /* "" when the query does not name one (search_path decides, as for the query) */
	char table[SQL_NAME_MAX];
	char id_column[SQL_NAME_MAX];
	char vector_column[SQL_NAME_MAX];
	enum vdist_metric metric;
	char cast_type[SQL_NAME_MAX]; /* "vector", "halfvec", or "" without a cast */
	int cast_dims;                /* the (n) of the cast, 0 without */
	bool id_tiebreak;             /* ORDER BY ..., id: the tie order is written out */
	struct knn_filter filter;     /* the WHERE clause, n_terms 0 without */
};

/* 0 when recognised; -1 with the reason in why. */
int knn_query_parse(const char *sql, struct knn_query *out, char *why, size_t whylen);

/* The relation as the query wrote it, quoted: the probe's $1 (to_regclass). */
void knn_relation(const struct knn_query *q, char *out, size_t outlen);

/* COPY (SELECT id, vec[, filter columns] FROM relation) TO STDOUT (FORMAT
 * binary); 0, or -1 if it does not fit. */
int knn_copy_sql(const struct knn_query *q, char *out, size_t outlen);

/* Catalog facts for the scan, inside the eval snapshot: $1 relation (as
 * knn_relation gives it), $2 id column, $3 vector column.  One row:
 * relation found (bool), id column type oid, vector column type name, the
 * name of its binary send function, its typmod, reltuples (float8). */
#define KNN_PROBE_SQL                                                                                      \
	"SELECT c.oid IS NOT NULL, ia.atttypid::int, vt.typname::text, sp.proname::text, va.atttypmod, "       \
	"c.reltuples::float8 "                                                                                 \
	"FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid "                       \
	"LEFT JOIN pg_attribute ia ON ia.attrelid = c.oid AND ia.attname = $2 AND ia.attnum > 0 "             \
	"AND NOT ia.attisdropped "                                                                             \
	"LEFT JOIN pg_attribute va ON va.attrelid = c.oid AND va.attname = $3 AND va.attnum > 0 "             \
	"AND NOT va.attisdropped "                                                                             \
	"LEFT JOIN pg_type vt ON vt.oid = va.atttypid LEFT JOIN pg_proc sp ON sp.oid = vt.typsend"

/* From the probe's answers: can the scan read these columns?  0 with the
 * vector type, or -1 with the reason. */
int knn_probe_check(const struct knn_query *q, bool found, int id_type_oid, const char *vec_type,
                    const char *send_fn, enum vec_type *type, char *why, size_t whylen);

/* How a query uses pgvector's distance operator, for the checks of a new
 * index shape: its first distance operator ("<->"), and the operand on
 * the other side than the query vector (the side without a $n or a
 * literal), normalised as knn_expr_normalize does ("" when the sides
 * cannot be told apart).  0, or -1 when the query has no distance operator. */
struct knn_distance_use {
	char op[4];
	char operand[512];
};
int knn_distance_use(const char *sql, struct knn_distance_use *out);

/* An expression as comparable text: names lower-cased unless quoted
 * ("embedding" = embedding, "Emb" != emb), qualifiers dropped
 * (t.embedding = embedding), parentheses around a single token (not a
 * call's) and around the whole dropped, tokens one space apart; so
 * ((embedding)::halfvec(3)) from pg_get_indexdef and embedding::halfvec(3)
 * in a query read the same.  0, or -1 when empty or too long. */
int knn_expr_normalize(const char *expr, char *out, size_t outlen);

#endif
