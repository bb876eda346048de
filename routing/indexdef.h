/*
 * Index definitions as data: the rebuild never hard-codes an access method.
 * It takes pg_get_indexdef() of the live index and rewrites it into the new
 * index's CREATE INDEX CONCURRENTLY statement: new name, WITH (...) storage
 * parameters merged with the operator's overrides (override wins), everything
 * else (method, columns, opclasses, INCLUDE, TABLESPACE, WHERE) untouched.
 * Pure functions over strings; quoting of identifiers and literals follows
 * PostgreSQL's rules.
 */
#ifndef VG_ROUTING_INDEXDEF_H
#define VG_ROUTING_INDEXDEF_H

#include <stdbool.h>
#include <stddef.h>

struct index_param {
	const char *name;  /* e.g. "m", "ef_construction", "lists" */
	const char *value; /* as written: 16, 'auto', on */
};

/* Returns 0, or -1 with a reason in err. */
int indexdef_rewrite(const char *def, const char *new_name, const struct index_param *overrides,
                     int n_overrides, char *out, size_t outlen, char *err, size_t errlen);

/* A new shape for the index, beyond its WITH parameters; NULL members keep
 * the live definition's.  Each applies to the first (and only) key:
 *   method      another access method ("hnsw"): the live WITH parameters
 *               are dropped (they belong to the old method), the overrides
 *               still apply
 *   opclass     the key's operator class, written as given (quoted and
 *               qualified as needed): it replaces the live one and its
 *               parameters, or goes where pg_get_indexdef left the default out
 *   expression  the key itself: a column name, or an expression (in
 *               parentheses unless it is wrapped whole already); one
 *               balanced piece of SQL, no ';' or comment
 * The opclass and expression need an index of one key column. */
struct index_shape {
	const char *method, *opclass, *expression;
};
/* Could this text go in as the key expression (balanced, no ';' or comment)? */
bool indexdef_expression_ok(const char *expr);
int indexdef_rewrite_shape(const char *def, const char *new_name, const struct index_shape *shape,
                           const struct index_param *overrides, int n_overrides, char *out, size_t outlen, char *err,
                           size_t errlen);

/* The live definition's method, number of key columns, and its first key
 * (column or expression) and opclass as written ("" where the default was
 * left out).  0, or -1 when it cannot be read or does not fit. */
struct index_key {
	char method[64];
	int n_keys;
	char key[1024];
	char opclass[256];
};
int indexdef_key(const char *def, struct index_key *out);

/* The same index on another table, built at once (no CONCURRENTLY):
 * "CREATE INDEX new_name ON rel USING ..." (rel already quoted), for a
 * build plan's trial on a scratch copy.  Returns 0 or -1. */
int indexdef_retarget(const char *def, const char *rel, const char *new_name, char *out, size_t outlen);

/* The index name in a definition, unquoted.  Returns 0 or -1. */
int indexdef_name(const char *def, char *out, size_t outlen);

/* Quote an identifier only when PostgreSQL needs it ("Emb New" -> "\"Emb New\""). */
void quote_ident(const char *name, char *out, size_t outlen);
/* The same, quoted whatever the name ("x"): a message that shows exactly what was looked up. */
void quote_ident_always(const char *name, char *out, size_t outlen);

/* PostgreSQL keeps 63 bytes of a name (NAMEDATALEN - 1) and cuts the rest
 * without an error, so "<63-byte live name>_vg7" would become the live
 * name itself and two long names sharing a prefix would become one. */
#define INDEX_NAME_MAX 63
/* The name of a rebuild's new or retired index: live + suffix (e.g. "_vg7",
 * "_vgold7") when that fits INDEX_NAME_MAX bytes; else the live name cut at
 * a character boundary, "_" and 8 hex digits of a hash of the whole live
 * name, then the suffix, so the suffix survives and two long names differ.
 * outlen must hold INDEX_NAME_MAX + 1 bytes; the suffix at most 20. */
void index_derived_name(const char *live, const char *suffix, char *out, size_t outlen);
/* Is name what index_derived_name gives for live and "_vg<N>" or "_vgold<N>"? */
bool index_is_derived(const char *live, const char *name);

#endif
