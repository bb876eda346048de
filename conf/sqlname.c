/*
 * Split a configured relation name into schema and name, accepting both the
 * SQL spelling ("RAG"."DocChunks") and the raw one (RAG.DocChunks).  One
 * left-to-right pass: a part is read whole (quoted or raw), then either the
 * end or a '.' must follow.
 */
#include "conf/sqlname.h"

#include <assert.h>
#include <string.h>

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One part starting at s[*pos] (blanks before it skipped) into out; *pos
 * ends after it and after the blanks that follow. */
static enum sqlname_status read_part(const char *s, size_t *pos, char *out, size_t *at)
{
	size_t p = *pos, o = 0;
	while (blank(s[p]))
		p++;
	*at = p;
	if (s[p] == '"') {
		for (p++;; p++) {
			if (!s[p]) {
				*at = p;
				return SQLNAME_UNTERMINATED;
			}
			if (s[p] == '"') {
				if (s[p + 1] != '"')
					break;
				p++; /* "" is one quote */
			}
			if (o == SQLNAME_MAX) {
				*at = p;
				return SQLNAME_TOO_LONG;
			}
			out[o++] = s[p];
		}
		p++; /* the closing quote */
		if (o == 0)
			return SQLNAME_EMPTY;
		while (blank(s[p]))
			p++;
		if (s[p] && s[p] != '.') {
			*at = p;
			return SQLNAME_AFTER_QUOTE;
		}
	} else {
		size_t end = p;
		while (s[end] && s[end] != '.') {
			if (s[end] == '"') {
				*at = end;
				return SQLNAME_STRAY_QUOTE;
			}
			end++;
		}
		size_t stop = end;
		while (stop > p && blank(s[stop - 1]))
			stop--;
		if (stop == p)
			return SQLNAME_EMPTY;
		if (stop - p > SQLNAME_MAX) {
			*at = p + SQLNAME_MAX;
			return SQLNAME_TOO_LONG;
		}
		memcpy(out, s + p, stop - p);
		o = stop - p;
		p = end;
	}
	out[o] = 0;
	*pos = p;
	return SQLNAME_OK;
}

enum sqlname_status sqlname_parse(const char *s, struct sqlname *out, size_t *at)
{
	size_t where = 0, pos = 0;
	char first[SQLNAME_MAX + 1];
	memset(out, 0, sizeof(*out));
	enum sqlname_status st = read_part(s, &pos, first, &where);
	if (st == SQLNAME_OK && s[pos] == '.') {
		pos++;
		st = read_part(s, &pos, out->name, &where);
		if (st == SQLNAME_OK && s[pos]) {
			where = pos;
			st = SQLNAME_TOO_MANY;
		}
		if (st == SQLNAME_OK) {
			out->has_schema = true;
			memcpy(out->schema, first, sizeof(first));
		}
	} else if (st == SQLNAME_OK) {
		assert(!s[pos]); /* read_part stops at '.' or the end */
		memcpy(out->name, first, sizeof(first));
	}
	if (st != SQLNAME_OK) {
		memset(out, 0, sizeof(*out));
		if (at)
			*at = where;
	}
	return st;
}

const char *sqlname_strerror(enum sqlname_status st)
{
	switch (st) {
	case SQLNAME_OK: return "ok";
	case SQLNAME_EMPTY: return "an empty name or name part";
	case SQLNAME_UNTERMINATED: return "a quoted name without its closing quote";
	case SQLNAME_AFTER_QUOTE: return "only '.' or the end may follow a quoted name";
	case SQLNAME_STRAY_QUOTE: return "a '\"' inside an unquoted name (quote the whole part, doubling inner quotes)";
	case SQLNAME_TOO_MANY: return "more parts than schema.name";
	case SQLNAME_TOO_LONG: return "a name part longer than 63 bytes (PostgreSQL would cut it to another name)";
	}
	return "?";
}
