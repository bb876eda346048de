/*
 * Rewrite pg_get_indexdef() output for an online rebuild.  The definition is
 * scanned token by token with quotes and parenthesis depth tracked, so words
 * inside column expressions, string literals or quoted names never match the
 * top-level clauses (WITH, TABLESPACE, WHERE) being looked for.
 */
#include "routing/indexdef.h"

#include <assert.h>
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
	if (plain)
		snprintf(out, outlen, "%s", name);
	else
		quote_ident_always(name, out, outlen);
}

void quote_ident_always(const char *name, char *out, size_t outlen)
{
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

/* FNV-1a, 32 bits: a stable short tag of a name (not a secret) */
static unsigned name_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

void index_derived_name(const char *live, const char *suffix, char *out, size_t outlen)
{
	assert(outlen > INDEX_NAME_MAX && strlen(suffix) <= 20);
	size_t ll = strlen(live), sl = strlen(suffix);
	if (ll + sl <= INDEX_NAME_MAX) {
		snprintf(out, outlen, "%s%s", live, suffix);
		return;
	}
	size_t keep = INDEX_NAME_MAX - sl - 9; /* "_" + 8 hex digits */
	while (keep > 0 && ((unsigned char)live[keep] & 0xc0) == 0x80)
		keep--; /* never half a UTF-8 character */
	snprintf(out, outlen, "%.*s_%08x%s", (int)keep, live, name_hash(live), suffix);
}

bool index_is_derived(const char *live, const char *name)
{
	size_t n = strlen(name), d = n;
	while (d > 0 && isdigit((unsigned char)name[d - 1]))
		d--;
	if (d == n || n - d > 10)
		return false;
	static const char *const kinds[] = {"_vgold", "_vg"};
	for (int k = 0; k < 2; k++) {
		size_t kl = strlen(kinds[k]);
		if (d < kl || strncmp(name + d - kl, kinds[k], kl))
			continue;
		char suffix[24], want[INDEX_NAME_MAX + 1];
		snprintf(suffix, sizeof(suffix), "%s", name + d - kl);
		index_derived_name(live, suffix, want, sizeof(want));
		if (!strcmp(want, name))
			return true;
	}
	return false;
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
	const char *method_start, *method_end; /* the access method after USING */
	const char *keys_start, *keys_end;     /* "(key, ...)" right after it */
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
	int after_using = 0; /* tokens since USING: the method, then the key list */
	for (p = skip_space(e); *p; p = skip_space(e)) {
		bool closed;
		e = scan_token(p, &closed);
		if (!closed)
			return fail(err, errlen, "unterminated quote or parenthesis in definition");
		if (e == p)
			e = p + 1;
		if (!seen_using && word_is(p, e, "USING")) {
			seen_using = true;
			continue;
		}
		if (!seen_using)
			continue;
		if (++after_using == 1) {
			if (*p == '(') /* USING(...): no method name */
				return fail(err, errlen, "definition has no access method after USING");
			dp->method_start = p;
			dp->method_end = e;
			continue;
		}
		if (after_using == 2 && *p == '(') {
			dp->keys_start = p;
			dp->keys_end = e;
			continue;
		}
		if (word_is(p, e, "WITH")) {
			/* pg_get_indexdef writes one, before TABLESPACE and WHERE; a
			 * second one would be rewritten as part of the key list */
			if (dp->with_start || dp->insert_at)
				return fail(err, errlen, "WITH clause repeated or after TABLESPACE/WHERE");
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
	if (!dp->keys_start)
		return fail(err, errlen, "definition has no key list after USING method");
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

/* The first key of a key list "(k1 [COLLATE c] [opclass [(params)]] [ASC|DESC] [NULLS ...], k2 ...)":
 * where its column or expression, its opclass (with params) and the key end. */
struct key_parts {
	const char *expr_start, *expr_end;
	const char *opclass_start, *opclass_end; /* empty (start == end) when the default was left out */
	const char *key_end;                     /* the ',' or ')' after the first key */
	int n_keys;
};

static bool is_order_word(const char *p, const char *e)
{
	return word_is(p, e, "ASC") || word_is(p, e, "DESC") || word_is(p, e, "NULLS");
}

/* A token inside a key: quoted, parenthesised, or a run that also ends at
 * ',' and ')' (the key list's own punctuation). */
static const char *key_token(const char *p)
{
	if (*p == '(')
		return skip_token(p);
	/* quotes are part of the run they stand in: schema."Name" is one token */
	while (*p && !isspace((unsigned char)*p) && *p != '(' && *p != ')' && *p != ',')
		p = *p == '"' || *p == '\'' ? skip_token(p) : p + 1;
	return p;
}

static int split_keys(const struct def_parts *dp, struct key_parts *kp, char *err, size_t errlen)
{
	memset(kp, 0, sizeof(*kp));
	const char *p = skip_space(dp->keys_start + 1), *stop = dp->keys_end - 1; /* inside the parentheses */
	kp->n_keys = 1;
	/* keys are separated by commas outside quotes and parentheses */
	for (const char *q = p; q < stop; q = *q == '"' || *q == '\'' || *q == '(' ? skip_token(q) : q + 1) {
		if (*q == ',') {
			if (!kp->key_end)
				kp->key_end = q;
			kp->n_keys++;
		}
	}
	if (!kp->key_end)
		kp->key_end = stop;
	const char *end = kp->key_end;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	if (p >= end)
		return fail(err, errlen, "empty key list");
	kp->expr_start = p;
	kp->expr_end = key_token(p);
	if (*kp->expr_end == '(' && kp->expr_end < end) /* a function call: name(args) */
		kp->expr_end = skip_token(kp->expr_end);
	/* pg_get_indexdef writes a column, a call, or (expression): a space,
	 * ',' or ')' follows each */
	if (kp->expr_end > end || kp->expr_end == p ||
	    (kp->expr_end < end && !isspace((unsigned char)*kp->expr_end)))
		return fail(err, errlen, "malformed key");
	p = skip_space(kp->expr_end);
	const char *e = p < end ? key_token(p) : p;
	if (p < end && word_is(p, e, "COLLATE")) {
		p = skip_space(e);
		e = p < end ? key_token(p) : p;
		if (p >= end || e == p)
			return fail(err, errlen, "COLLATE without a collation");
		p = skip_space(e);
		e = p < end ? key_token(p) : p;
	}
	kp->opclass_start = kp->opclass_end = p;
	if (p < end && e > p && *p != '(' && !is_order_word(p, e)) {
		kp->opclass_end = e;
		const char *q = skip_space(e);
		if (q < end && *q == '(') /* opclass parameters */
			kp->opclass_end = skip_token(q);
	}
	if (kp->opclass_end > end)
		return fail(err, errlen, "malformed key");
	/* only the order may follow: ASC | DESC, NULLS FIRST | LAST */
	for (p = skip_space(kp->opclass_end); p < end; p = skip_space(e)) {
		e = key_token(p);
		if (e == p || e > end ||
		    !(is_order_word(p, e) || word_is(p, e, "FIRST") || word_is(p, e, "LAST")))
			return fail(err, errlen, "malformed key");
	}
	return 0;
}

int indexdef_key(const char *def, struct index_key *out)
{
	struct def_parts dp;
	struct key_parts kp;
	memset(out, 0, sizeof(*out));
	if (split_def(def, &dp, NULL, 0) < 0 || split_keys(&dp, &kp, NULL, 0) < 0)
		return -1;
	size_t ml = (size_t)(dp.method_end - dp.method_start), el = (size_t)(kp.expr_end - kp.expr_start),
	       ol = (size_t)(kp.opclass_end - kp.opclass_start);
	if (ml >= sizeof(out->method) || el >= sizeof(out->key) || ol >= sizeof(out->opclass))
		return -1;
	memcpy(out->method, dp.method_start, ml);
	memcpy(out->key, kp.expr_start, el);
	memcpy(out->opclass, kp.opclass_start, ol);
	out->n_keys = kp.n_keys;
	return 0;
}

/* An expression from the configuration goes into DDL: one balanced piece
 * of text (quotes closed, parentheses never below zero and back to zero, no
 * ';' or comment outside quotes), so it can only ever be the key. */
bool indexdef_expression_ok(const char *x)
{
	int depth = 0;
	const char *p = skip_space(x);
	if (!*p)
		return false;
	while (*p) {
		if (*p == '"' || *p == '\'') {
			bool closed;
			p = scan_token(p, &closed);
			if (!closed)
				return false;
			continue;
		}
		if (*p == ';' || (p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*'))
			return false;
		if (*p == '(')
			depth++;
		else if (*p == ')' && --depth < 0)
			return false;
		p++;
	}
	return depth == 0;
}

/* An unquoted word that the key's grammar would read as something else:
 * a reserved keyword (COLLATE, ASC, ...) or NULLS (fuzz_indexdef). */
static bool bare_keyword(const char *s, const char *e)
{
	char w[32];
	size_t n = (size_t)(e - s);
	if (n >= sizeof(w))
		return false;
	for (size_t i = 0; i < n; i++)
		w[i] = (char)tolower((unsigned char)s[i]);
	w[n] = 0;
	return is_keyword_reserved(w) || !strcmp(w, "nulls");
}

/* [schema.]name, each part a "quoted" name or a run of name characters:
 * all an operator class may be in the key list */
static bool qualified_name(const char *s)
{
	for (int part = 0; part < 2; part++) {
		const char *p = s;
		if (*p == '"') {
			bool closed;
			p = scan_token(p, &closed);
			if (!closed || p - s < 3)
				return false;
		} else {
			while (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80)
				p++;
			if (p == s || bare_keyword(s, p))
				return false;
		}
		if (!*p)
			return true;
		if (*p != '.' || part == 1)
			return false;
		s = p + 1;
	}
	return false;
}

/* Does the expression need parentheses to be a key?  A column name does not. */
static bool needs_parens(const char *x)
{
	const char *p = skip_space(x), *e = skip_token(p);
	if (*p == '(' && !*skip_space(e))
		return false; /* wrapped whole already */
	if (*p == '"' || *p == '\'')
		return *p == '\'' || *skip_space(e);
	for (const char *q = p; q < e; q++)
		if (!(isalnum((unsigned char)*q) || *q == '_' || (unsigned char)*q >= 0x80))
			return true;
	return *skip_space(e) != 0;
}

static void put(char *out, size_t outlen, size_t *o, const char *p, size_t n)
{
	if (*o < outlen) {
		size_t room = outlen - *o - 1;
		memcpy(out + *o, p, n < room ? n : room);
		out[*o + (n < room ? n : room)] = 0;
	}
	*o += n;
}

static void puts_(char *out, size_t outlen, size_t *o, const char *s)
{
	put(out, outlen, o, s, strlen(s));
}

/* A token written in place of another may leave the definition's next
 * character touching it ("i"ON, c(p)DESC): a space keeps them two tokens. */
static void keep_apart(char *out, size_t outlen, size_t *o, const char *next)
{
	if (!isspace((unsigned char)*next) && *next != ',' && *next != ')')
		puts_(out, outlen, o, " ");
}

/* The part between the index name and WITH/the end, with the method and
 * the first key changed as the shape asks. */
static int rewrite_middle(const struct def_parts *dp, const char *to, const struct index_shape *shape, char *out,
                          size_t outlen, size_t *o, char *err, size_t errlen)
{
	const char *from = dp->name_end;
	if (!shape || (!shape->method && !shape->opclass && !shape->expression)) {
		put(out, outlen, o, from, (size_t)(to - from));
		return 0;
	}
	struct key_parts kp;
	if (split_keys(dp, &kp, err, errlen) < 0)
		return -1;
	if ((shape->opclass || shape->expression) && kp.n_keys != 1)
		return fail(err, errlen, "an opclass or expression override needs an index of one key column");
	if (shape->method && !valid_param_name(shape->method))
		return fail(err, errlen, "invalid access method name");
	if (shape->expression && !indexdef_expression_ok(shape->expression))
		return fail(err, errlen, "the expression must be one balanced SQL expression (no ';' or comment)");
	if (shape->opclass && !qualified_name(shape->opclass))
		return fail(err, errlen, "invalid operator class name (a keyword such as COLLATE, ASC or NULLS needs quotes)");
	put(out, outlen, o, from, (size_t)(dp->method_start - from));
	if (shape->method)
		puts_(out, outlen, o, shape->method);
	else
		put(out, outlen, o, dp->method_start, (size_t)(dp->method_end - dp->method_start));
	put(out, outlen, o, dp->method_end, (size_t)(kp.expr_start - dp->method_end));
	if (shape->expression) {
		bool wrap = needs_parens(shape->expression);
		const char *x = skip_space(shape->expression);
		size_t xl = strlen(x);
		while (xl && isspace((unsigned char)x[xl - 1]))
			xl--;
		puts_(out, outlen, o, wrap ? "(" : "");
		put(out, outlen, o, x, xl);
		puts_(out, outlen, o, wrap ? ")" : "");
	} else {
		put(out, outlen, o, kp.expr_start, (size_t)(kp.expr_end - kp.expr_start));
	}
	put(out, outlen, o, kp.expr_end, (size_t)(kp.opclass_start - kp.expr_end));
	if (shape->opclass) {
		/* in place of the old opclass and its parameters, or inserted where
		 * pg_get_indexdef left the default out */
		if (kp.opclass_start == kp.expr_end || !isspace((unsigned char)kp.opclass_start[-1]))
			puts_(out, outlen, o, " ");
		puts_(out, outlen, o, shape->opclass);
		keep_apart(out, outlen, o, kp.opclass_end);
	} else {
		put(out, outlen, o, kp.opclass_start, (size_t)(kp.opclass_end - kp.opclass_start));
	}
	put(out, outlen, o, kp.opclass_end, (size_t)(to - kp.opclass_end));
	return 0;
}

int indexdef_rewrite(const char *def, const char *new_name, const struct index_param *overrides,
                     int n_overrides, char *out, size_t outlen, char *err, size_t errlen)
{
	return indexdef_rewrite_shape(def, new_name, NULL, overrides, n_overrides, out, outlen, err, errlen);
}

int indexdef_rewrite_shape(const char *def, const char *new_name, const struct index_shape *shape,
                           const struct index_param *overrides, int n_overrides, char *out, size_t outlen, char *err,
                           size_t errlen)
{
	struct def_parts dp;
	if (split_def(def, &dp, err, errlen) < 0)
		return -1;
	struct kv kvs[32];
	int n = 0;
	if (dp.with_start && (n = parse_with(dp.with_start, dp.with_end, kvs, 32, err, errlen)) < 0)
		return -1;
	/* another access method: the live one's parameters mean nothing to it */
	bool dropped = shape && shape->method &&
	               ((size_t)(dp.method_end - dp.method_start) != strlen(shape->method) ||
	                strncasecmp(dp.method_start, shape->method, strlen(shape->method)));
	if (dropped)
		n = 0;
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

	/* assemble: head CONCURRENTLY name middle [WITH (...)] tail */
	const char *with_at = dp.with_start ? dp.with_start : dp.insert_at;
	const char *after_with = dp.with_start ? dp.with_end : dp.insert_at;
	size_t o = 0;
	if (outlen)
		out[0] = 0;
	put(out, outlen, &o, def, (size_t)(dp.after_index - def));
	puts_(out, outlen, &o, " CONCURRENTLY ");
	puts_(out, outlen, &o, qname);
	keep_apart(out, outlen, &o, dp.name_end);
	if (rewrite_middle(&dp, with_at, shape, out, outlen, &o, err, errlen) < 0)
		return -1;
	if (n > 0) {
		bool need_space = !dp.with_start && with_at > dp.name_end && with_at[-1] != ' ';
		bool trailing = !dp.with_start && *with_at;
		puts_(out, outlen, &o, need_space ? " WITH (" : "WITH (");
		puts_(out, outlen, &o, with);
		puts_(out, outlen, &o, ")");
		puts_(out, outlen, &o, trailing ? " " : "");
		puts_(out, outlen, &o, after_with);
	} else if (dp.with_start && dropped) {
		/* every parameter went with the old method: WITH goes too */
		while (o > 0 && o < outlen && out[o - 1] == ' ')
			out[--o] = 0;
		const char *rest = skip_space(dp.with_end);
		puts_(out, outlen, &o, *rest ? " " : "");
		puts_(out, outlen, &o, rest);
	} else {
		puts_(out, outlen, &o, with_at);
	}
	if (o >= outlen)
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
