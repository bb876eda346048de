/*
 * Can a new index shape serve the reads the live index serves?  A rebuild
 * may change the access method (ivfflat -> hnsw), the key's operator class
 * or the key expression (embedding -> embedding::halfvec(1536)); each is
 * judged at preflight from catalog facts, never from a list of known
 * operator classes, so vecgate stays index-type agnostic:
 *   - the method exists and is an index access method;
 *   - the operator class exists for that method (named, or the live one's
 *     name under the new method, as pgvector names its classes alike);
 *   - it orders by every operator the live class orders by (pg_amop,
 *     purpose 'o'), and by the eval query's operator: vector_cosine_ops
 *     (<=>) cannot serve reads ordered by <-> (vector_l2_ops);
 *   - it accepts the key's type (equal, binary coercible, or polymorphic);
 *   - a new expression is what the eval query orders by (or the live key),
 *     compared as normalised text (routing/knn_query.h): an index on
 *     embedding::halfvec(n) serves no read of embedding <-> $1::vector.
 * Pure functions; the catalog query is a constant.
 */
#ifndef VG_ROUTING_INDEX_SHAPE_H
#define VG_ROUTING_INDEX_SHAPE_H

#include <stdbool.h>
#include <stddef.h>

/* $1 live index oid, $2 method ('' = the live one), $3 opclass schema
 * ('' = any, the live class's schema first, then the visible one), $4
 * opclass ('' = the live class's name), $5 key type oid ('' = the live
 * key's) -> one row: live method, live opclass, its schema, its ordering
 * operators (space separated); new method (NULL: none), its amtype; new
 * opclass (NULL: none), its schema, its ordering operators; the key type,
 * the type the new opclass accepts, and whether it accepts the key. */
extern const char SQL_INDEX_SHAPE[];

/* What was asked (NULL: keep) and what the catalog and the eval query say. */
struct shape_facts {
	const char *want_method, *want_opclass_schema, *want_opclass, *want_expression;
	const char *live_method, *live_opclass, *live_opclass_schema, *live_ops;
	const char *new_method, *new_amtype, *new_opclass, *new_opclass_schema, *new_ops;
	const char *key_type, *opclass_type;
	bool type_ok;
	const char *live_key;    /* the live index's key, as pg_get_indexdef writes it */
	const char *eval_op;     /* the eval query's distance operator, or NULL when it has none */
	const char *eval_operand; /* its other operand, normalised; "" or NULL when not found */
};

/* 0 when the new shape serves the same reads; -1 with the reason in why. */
int shape_verdict(const struct shape_facts *f, char *why, size_t whylen);

#endif
