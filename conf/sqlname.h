/*
 * Relation names as an operator writes them in the configuration: either as
 * SQL writes them ("RAG"."DocChunks", a quoted part taken exactly, doubled
 * quotes for a quote) or raw (RAG.DocChunks, each part taken as written,
 * without the case folding SQL would apply: what vecgate always accepted).
 * The name is split into schema and relation once, here, so no later step
 * quotes an already quoted name again.
 *
 * Rules: at most two parts, split at the first '.' outside quotes; a part
 * is quoted when it starts with '"' (then nothing but the '.' or the end
 * may follow its closing quote), raw otherwise (no '"' inside, surrounding
 * blanks trimmed); no part empty; no part longer than 63 bytes, the most
 * PostgreSQL keeps of an identifier (it would cut a longer one silently and
 * look up another name).
 * Pure functions, no allocation.
 */
#ifndef VG_CONF_SQLNAME_H
#define VG_CONF_SQLNAME_H

#include <stdbool.h>
#include <stddef.h>

#define SQLNAME_MAX 63 /* NAMEDATALEN - 1 */

enum sqlname_status {
	SQLNAME_OK = 0,
	SQLNAME_EMPTY,         /* the name, or one of its parts, is empty */
	SQLNAME_UNTERMINATED,  /* a quoted part without its closing quote */
	SQLNAME_AFTER_QUOTE,   /* something other than '.' or the end after a closing quote */
	SQLNAME_STRAY_QUOTE,   /* a '"' inside a raw part */
	SQLNAME_TOO_MANY,      /* more than schema.name */
	SQLNAME_TOO_LONG,      /* a part longer than SQLNAME_MAX bytes */
};

struct sqlname {
	bool has_schema;
	char schema[SQLNAME_MAX + 1]; /* "" without one */
	char name[SQLNAME_MAX + 1];
};

/* Parse s into out.  On failure *at (if not NULL) is the 0-based byte
 * offset in s where the problem was seen. */
enum sqlname_status sqlname_parse(const char *s, struct sqlname *out, size_t *at);

/* What a status means, for an error message. */
const char *sqlname_strerror(enum sqlname_status st);

#endif
