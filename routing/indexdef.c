/*
 * Rewrite pg_get_indexdef() output for an online rebuild.  The definition is
 * scanned token by token with quotes and parenthesis depth tracked, so words
 * inside column expressions, string literals or quoted names never match the
 * top-level clauses (WITH, TABLESPACE, WHERE) being looked for.
 */
#include "routing/indexdef.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t errlen, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return -1;
}

/* Words that cannot be an index name without quotes: PostgreSQL's reserved
 * and type/function-name keywords (not a ColId), plus IF, which split_def
 * would read as IF NOT EXISTS when it parses a rewritten definition. */
static bool is_keyword_reserved(const char *s)
{
	static const char *const words[] = {
		"all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary",
		"both", "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create",
		"cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
		"current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end",
		"except", "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "if",
		"ilike", "in", "index", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral",
		"leading", "left", "like", "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null",
		"offset", "on", "only", "or", "order", "outer", "overlaps", "placing", "primary", "references",
		"returning", "right", "select", "session_user", "similar", "some", "symmetric", "table", "tablesample",
		"then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic", "verbose", "when",
		"where", "window", "with", NULL};
	for (int i = 0; words[i]; i++)
		if (!strcmp(words[i], s))
			return true;
	return false;
}

void quote_ident(const char *name, char *out, size_t outlen)
{
	bool plain = name[0] && (islower((unsigned char)name[0]) || name[0] == '_') && !is_keyword_reserved(name);
	for (const char *p = name; plain && *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '$'))
			plain = false;
	if (plain) {
		snprintf(out, outlen, "%s", name);
		return;
	}
	size_t o = 0;
	if (outlen < 3) {
		if (outlen)
			out[0] = 0;
		return;
	}
	out[o++] = '"';
	for (const char *p = name; *p && o + 3 < outlen; p++) {
		if (*p == '"')
			out[o++] = '"';
		out[o++] = *p;
	}
	out[o++] = '"';
	out[o] = 0;
}

/* Skip one token starting at p: a quoted identifier, a string literal, a
 * parenthesised group (whole), or a run of non-space characters.  *closed
 * (if not NULL) tells whether a quote or group was terminated: pg_get_indexdef
 * never produces an open one, so a definition with one is refused rather
 * than rewritten into something else. */
static const char *scan_token(const char *p, bool *closed)
{
	if (closed)
		*closed = true;
	if (*p == '"' || *p == '\'') {
		char q = *p++;
		while (*p) {
			if (*p == q) {
				if (p[1] == q) {
					p += 2;
					continue;
				}
				return p + 1;
			}
			p++;
		}
		if (closed)
			*closed = false;
		return p;
	}
	if (*p == '(') {
		int depth = 0;
		while (*p) {
			if (*p == '"' || *p == '\'') {
				bool inner;
				p = scan_token(p, &inner);
				if (!inner)
					break;
				continue;
			}
			if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0)
				return p + 1;
			p++;
		}
		if (closed)
			*closed = false;
		return p;
	}
	while (*p && !isspace((unsigned char)*p) && *p != '(')
		p++;
	return p;
}

static const char *skip_token(const char *p)
{
	return scan_token(p, NULL);
}

static const char *skip_space(const char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

static bool word_is(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - p) == n && !strncasecmp(p, word, n);
}

struct def_parts {
	const char *name_start, *name_end; /* the index name token */
	const char *with_start, *with_end; /* "WITH (...)" or NULL */
	const char *insert_at;             /* where a new WITH goes */
	const char *after_index;           /* just after "INDEX" */
};

static int split_def(const char *def, struct def_parts *dp, char *err, size_t errlen)
{
	memset(dp, 0, sizeof(*dp));
	const char *p = skip_space(def);
	const char *e = skip_token(p);
	if (!word_is(p, e, "CREATE"))
		return fail(err, errlen, "definition does not start with CREATE");
	p = skip_space(e);
	e = skip_token(p);
	if (word_is(p, e, "UNIQUE")) {
		p = skip_space(e);
		e = skip_token(p);
	}
	if (!word_is(p, e, "INDEX"))
		return fail(err, errlen, "definition is not CREATE [UNIQUE] INDEX");
	dp->after_index = e;
	p = skip_space(e);
	e = skip_token(p);
	if (word_is(p, e, "CONCURRENTLY")) {
		p = skip_space(e);
		e = skip_token(p);
	}
	if (word_is(p, e, "IF")) /* IF NOT EXISTS */
		return fail(err, errlen, "unexpected IF NOT EXISTS in definition");
	dp->name_start = p;
	dp->name_end = e;
	p = skip_space(e);
	e = skip_token(p);
	if (!word_is(p, e, "ON"))
		return fail(err, errlen, "expected ON after the index name");
	bool seen_using = false;
	for (p = skip_space(e); *p; p = skip_space(e)) {
		bool closed;
		e = scan_token(p, &closed);
		if (!closed)
			return fail(err, errlen, "unterminated quote or parenthesis in definition");
		if (e == p)
			e = p + 1;
		if (word_is(p, e, "USING"))
			seen_using = true;
		if (!seen_using)
			continue;
		if (word_is(p, e, "WITH")) {
			const char *q = skip_space(e);
			if (*q != '(')
				return fail(err, errlen, "WITH without a parameter list");
			bool closed;
			dp->with_start = p;
			dp->with_end = scan_token(q, &closed);
			if (!closed)
				return fail(err, errlen, "unterminated WITH parameter list");
			e = dp->with_end;
		} else if ((word_is(p, e, "TABLESPACE") || word_is(p, e, "WHERE")) && !dp->insert_at) {
			dp->insert_at = p;
		}
	}
	if (!seen_using)
		return fail(err, errlen, "definition has no USING clause");
	if (!dp->insert_at)
		dp->insert_at = def + strlen(def);
	return 0;
}

int indexdef_name(const char *def, char *out, size_t outlen)
{
	struct def_parts dp;
	if (split_def(def, &dp, NULL, 0) < 0)
		return -1;
	size_t o = 0;
	const char *p = dp.name_start;
	if (*p == '"') {
		for (p++; p < dp.name_end - 1 && o + 1 < outlen; p++) {
			if (*p == '"')
				p++;
			out[o++] = *p;
		}
	} else {
		for (; p < dp.name_end && o + 1 < outlen; p++)
			out[o++] = *p;
	}
	out[o] = 0;
	return 0;
}

static bool valid_param_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* Exactly one complete '...' literal (inner quotes doubled)?  Only then may a
 * value that starts with a quote go in unchanged: "'16'); DROP ..." may not. */
static bool is_one_literal(const char *v)
{
	if (*v != '\'')
		return false;
	const char *p = v + 1;
	for (;;) {
		if (!*p)
			return false;
		if (*p == '\'') {
			if (p[1] != '\'')
				return p[1] == 0;
			p++;
		}
		p++;
	}
}

/* A value goes in as is when it is a number, a bare word or one literal,
 * else quoted. */
static void put_value(char *buf, size_t buflen, size_t *o, const char *v)
{
	bool bare = *v != 0;
	for (const char *p = v; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-'))
			bare = false;
	if (is_one_literal(v))
		bare = true;
	if (bare) {
		*o += (size_t)snprintf(buf + *o, *o < buflen ? buflen - *o : 0, "%s", v);
		return;
	}
	if (*o < buflen)
		buf[(*o)++] = '\'';
	for (const char *p = v; *p; p++) {
		if (*p == '\'' && *o < buflen)
			buf[(*o)++] = '\'';
		if (*o < buflen)
			buf[(*o)++] = *p;
	}
	if (*o < buflen)
		buf[(*o)++] = '\'';
}

struct kv {
	char name[64];
	char value[256];
};

/* "WITH (a=1, b='x,y')" -> pairs */
static int parse_with(const char *start, const char *end, struct kv *kvs, int max, char *err, size_t errlen)
{
	const char *p = strchr(start, '(') + 1;
	const char *stop = end - 1; /* the closing paren */
	int n = 0;
	while (p < stop) {
		p = skip_space(p);
		const char *eq = p;
		while (eq < stop && *eq != '=' && *eq != ',')
			eq++;
		if (eq >= stop || *eq != '=')
			return fail(err, errlen, "malformed WITH parameter");
		const char *v = eq + 1;
		const char *ve = v;
		while (ve < stop && *ve != ',') {
			if (*ve == '\'' || *ve == '"' || *ve == '(')
				ve = skip_token(ve);
			else
				ve++;
		}
		if (ve > stop) /* a quote opened inside a name ran past the list */
			return fail(err, errlen, "malformed WITH parameter");
		if (n == max)
			return fail(err, errlen, "too many WITH parameters");
		size_t nl = (size_t)(eq - p), vl;
		while (nl && isspace((unsigned char)p[nl - 1]))
			nl--;
		while (v < ve && isspace((unsigned char)*v)) /* never past the value's end */
			v++;
		vl = (size_t)(ve - v);
		while (vl && isspace((unsigned char)v[vl - 1]))
			vl--;
		if (nl >= sizeof(kvs[n].name) || vl >= sizeof(kvs[n].value))
			return fail(err, errlen, "WITH parameter too long");
		memcpy(kvs[n].name, p, nl);
		kvs[n].name[nl] = 0;
		memcpy(kvs[n].value, v, vl);
		kvs[n].value[vl] = 0;
		n++;
		p = ve < stop ? ve + 1 : ve;
	}
	return n;
}

int indexdef_rewrite(const char *def, const char *new_name, const struct index_param *overrides,
                     int n_overrides, char *out, size_t outlen, char *err, size_t errlen)
{
	struct def_parts dp;
	if (split_def(def, &dp, err, errlen) < 0)
		return -1;
	struct kv kvs[32];
	int n = 0;
	if (dp.with_start && (n = parse_with(dp.with_start, dp.with_end, kvs, 32, err, errlen)) < 0)
		return -1;
	for (int i = 0; i < n_overrides; i++) {
		if (!valid_param_name(overrides[i].name) || !overrides[i].value || !overrides[i].value[0])
			return fail(err, errlen, "invalid WITH override (name must be an identifier, value non-empty)");
		/* never cut a name or value to fit: that would set a different parameter */
		if (strlen(overrides[i].name) >= sizeof(kvs[0].name))
			return fail(err, errlen, "WITH override name too long");
		int j = 0;
		while (j < n && strcasecmp(kvs[j].name, overrides[i].name))
			j++;
		if (j == n) {
			if (n == 32)
				return fail(err, errlen, "too many WITH parameters");
			snprintf(kvs[n].name, sizeof(kvs[n].name), "%s", overrides[i].name);
			n++;
		}
		kvs[j].value[0] = 0;
		size_t o = 0;
		put_value(kvs[j].value, sizeof(kvs[j].value) - 1, &o, overrides[i].value);
		if (o >= sizeof(kvs[j].value) - 1)
			return fail(err, errlen, "WITH override value too long");
		kvs[j].value[o] = 0;
	}
	char qname[256];
	quote_ident(new_name, qname, sizeof(qname));
	char with[4096] = "";
	size_t w = 0;
	for (int i = 0; i < n && w < sizeof(with); i++)
		w += (size_t)snprintf(with + w, sizeof(with) - w, "%s%s=%s", i ? ", " : "", kvs[i].name, kvs[i].value);
	if (w >= sizeof(with))
		return fail(err, errlen, "WITH clause too long");

	/* assemble: head CONCURRENTLY name mid [WITH (...)] tail */
	const char *rest = dp.name_end;
	const char *with_at = dp.with_start ? dp.with_start : dp.insert_at;
	const char *after_with = dp.with_start ? dp.with_end : dp.insert_at;
	int len;
	if (n > 0) {
		bool need_space = !dp.with_start && with_at > rest && with_at[-1] != ' ';
		bool trailing = !dp.with_start && *with_at;
		len = snprintf(out, outlen, "%.*s CONCURRENTLY %s%.*s%sWITH (%s)%s%s", (int)(dp.after_index - def), def,
		               qname, (int)(with_at - rest), rest, need_space ? " " : "", with, trailing ? " " : "",
		               after_with);
	} else {
		len = snprintf(out, outlen, "%.*s CONCURRENTLY %s%s", (int)(dp.after_index - def), def, qname, rest);
	}
	if (len < 0 || (size_t)len >= outlen)
		return fail(err, errlen, "rewritten definition does not fit");
	return 0;
}

int indexdef_retarget(const char *def, const char *rel, const char *new_name, char *out, size_t outlen)
{
	struct def_parts dp;
	if (split_def(def, &dp, NULL, 0) < 0)
		return -1;
	/* from ON past the table (and ONLY) up to USING */
	const char *p = skip_space(dp.name_end), *e = skip_token(p), *using = NULL;
	for (p = skip_space(e); *p && !using; p = skip_space(e)) {
		bool closed;
		e = scan_token(p, &closed);
		if (!closed)
			return -1;
		if (e == p)
			e = p + 1;
		if (word_is(p, e, "USING"))
			using = p;
	}
	if (!using)
		return -1;
	char qname[256];
	quote_ident(new_name, qname, sizeof(qname));
	int len = snprintf(out, outlen, "CREATE INDEX %s ON %s %s", qname, rel, using);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}
