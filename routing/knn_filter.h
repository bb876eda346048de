/*
 * The WHERE clause of a filtered eval query, applied by the exact scan to
 * each row it reads, so that a filtered eval set costs one pass over the
 * table instead of one exact query per eval vector.
 *
 * knn_query_parse (routing/knn_query.h) reads the clause into AND-ed terms
 * on columns; here each term is bound, once per distinct set of parameter
 * values among the eval queries, to typed constants read the way the
 * server reads them, and evaluated against the row's columns as they come
 * out of a binary COPY.  Only comparisons whose result does not depend on
 * anything but the bytes are bound:
 *   smallint, integer, bigint   =, <, <=, >, >=, IN, BETWEEN with integers
 *   real, double precision      the same, with PostgreSQL's order (NaN
 *                               equals NaN and sorts after every number); a
 *                               number literal compares in double precision
 *                               (the server's float4 = numeric), a string or
 *                               parameter in the column's precision
 *   boolean                     the same (false < true)
 *   text, varchar, name         = and IN, byte for byte, under a
 *                               deterministic collation (ranges depend on
 *                               the collation: refused)
 *   uuid                        all, by its 16 bytes
 *   any of them                 IS NULL, IS NOT NULL
 * A value that does not read as the column's type (3.5 for an integer, 'x'
 * for a uuid), another type, or a text range is refused with the reason,
 * and the caller keeps per-query ground truth: never a different answer
 * than the server's, at worst the slower path.
 * Pure functions, no allocation.
 */
#ifndef VG_ROUTING_KNN_FILTER_H
#define VG_ROUTING_KNN_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/knn_query.h"

enum knn_coltype {
	KNN_COL_INT2 = 0,
	KNN_COL_INT4,
	KNN_COL_INT8,
	KNN_COL_FLOAT4,
	KNN_COL_FLOAT8,
	KNN_COL_BOOL,
	KNN_COL_TEXT, /* text, varchar, name: bytes */
	KNN_COL_UUID,
};

/* The column type one pass can read, from the catalog: its type oid (a
 * domain's base type), its name for the message, and whether its collation
 * is deterministic.  0, or -1 with the reason (column named in it). */
int knn_coltype_of(const char *column, unsigned type_oid, const char *type_name, bool deterministic,
                   enum knn_coltype *out, char *why, size_t whylen);

/* A value of the column as typed constant or as a row's cell. */
struct knn_cell {
	bool null;
	int64_t i;         /* the integers, KNN_COL_BOOL (0/1) */
	double d;          /* KNN_COL_FLOAT4/8 (a float4 exactly, as a double) */
	const char *s;     /* KNN_COL_TEXT: bytes (not terminated) */
	size_t len;
	uint8_t uuid[16];
};

/* A filter bound to one eval query's parameters. */
struct knn_bound {
	const struct knn_filter *filter;
	enum knn_coltype types[KNN_FILTER_TERMS];     /* per filter column */
	struct knn_cell consts[KNN_FILTER_VALUES];    /* per filter value */
};

/* Bind f to the column types and the parameter values: params[n] is the
 * text of $n (n < n_params; params[2] is k), NULL where not given.  Text
 * constants point into params or f.  0, or -1 with the reason. */
int knn_filter_bind(const struct knn_filter *f, const enum knn_coltype *types, const char *const *params,
                    int n_params, struct knn_bound *out, char *why, size_t whylen);

/* One cell of a binary COPY row (len -1: NULL) as type t.  0, or -1 when
 * the bytes are not that type's send format. */
int knn_cell_decode(enum knn_coltype t, const uint8_t *p, int32_t len, struct knn_cell *out);

/* Does the row (one cell per filter column) pass every term? */
bool knn_filter_match(const struct knn_bound *b, const struct knn_cell *cells);

#endif
