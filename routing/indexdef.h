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

#include <stddef.h>

struct index_param {
	const char *name;  /* e.g. "m", "ef_construction", "lists" */
	const char *value; /* as written: 16, 'auto', on */
};

/* Returns 0, or -1 with a reason in err. */
int indexdef_rewrite(const char *def, const char *new_name, const struct index_param *overrides,
                     int n_overrides, char *out, size_t outlen, char *err, size_t errlen);

/* The same index on another table, built at once (no CONCURRENTLY):
 * "CREATE INDEX new_name ON rel USING ..." (rel already quoted), for a
 * build plan's trial on a scratch copy.  Returns 0 or -1. */
int indexdef_retarget(const char *def, const char *rel, const char *new_name, char *out, size_t outlen);

/* The index name in a definition, unquoted.  Returns 0 or -1. */
int indexdef_name(const char *def, char *out, size_t outlen);

/* Quote an identifier only when PostgreSQL needs it ("Emb New" -> "\"Emb New\""). */
void quote_ident(const char *name, char *out, size_t outlen);

#endif
