/*
 * A PostgreSQL-faithful lexer and a conservative statement classifier.
 * The lexer follows the server's rules where they decide what is code:
 * nested block comments, standard-conforming '' strings, E'' strings with
 * backslash escapes, $tag$ dollar quoting, "" identifiers, and the rule that
 * a multi-character operator does not end in + or - unless it contains one of
 * ~ ! @ # % ^ & | ` ?  (so "<->-1" is "<->" then "-1").
 */
#include "routing/classify.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum tok_type { T_END, T_WORD, T_QIDENT, T_STRING, T_NUMBER, T_OP, T_PUNCT, T_PARAM };

struct tok {
	enum tok_type type;
	const char *p;
	size_t len;
	char word[64]; /* words lower-cased, quoted identifiers as written (truncated) */
};

struct lexer {
	const char *s;
	size_t len, pos;
};

static bool is_ident_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static bool is_ident_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static bool is_op_char(char c)
{
	return c && strchr("+-*/<>=~!@#%^&|`?", c) != NULL;
}

static char peek(const struct lexer *lx, size_t ahead)
{
	return lx->pos + ahead < lx->len ? lx->s[lx->pos + ahead] : 0;
}

/* Skip a quoted run ending at `q`; doubled q is an escaped q; with
 * backslashes, a backslash escapes the next character (E'' strings).
 * Returns whether the closing quote was found; lx->pos never passes len. */
static bool skip_quoted(struct lexer *lx, char q, bool backslashes)
{
	lx->pos++;
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];
		if (backslashes && c == '\\') {
			lx->pos = lx->len - lx->pos > 2 ? lx->pos + 2 : lx->len;
			continue;
		}
		if (c == q) {
			if (peek(lx, 1) == q) {
				lx->pos += 2;
				continue;
			}
			lx->pos++;
			return true;
		}
		lx->pos++;
	}
	return false;
}

/* At '$': a dollar quote "$tag$...$tag$" (skipped, true) or not (false). */
static bool skip_dollar_quote(struct lexer *lx)
{
	size_t i = lx->pos + 1;
	if (i < lx->len && (is_ident_start((unsigned char)lx->s[i]) && lx->s[i] != '$')) {
		while (i < lx->len && is_ident_char((unsigned char)lx->s[i]) && lx->s[i] != '$')
			i++;
	}
	if (i >= lx->len || lx->s[i] != '$')
		return false;
	size_t taglen = i - lx->pos + 1; /* "$tag$" */
	const char *tag = lx->s + lx->pos;
	for (size_t j = i + 1; j + taglen <= lx->len; j++) {
		if (lx->s[j] == '$' && !memcmp(lx->s + j, tag, taglen)) {
			lx->pos = j + taglen;
			return true;
		}
	}
	lx->pos = lx->len; /* unterminated: the rest is string */
	return true;
}

static void skip_space_and_comments(struct lexer *lx)
{
	for (;;) {
		while (lx->pos < lx->len && isspace((unsigned char)lx->s[lx->pos]))
			lx->pos++;
		if (peek(lx, 0) == '-' && peek(lx, 1) == '-') {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
				lx->pos++;
			continue;
		}
		if (peek(lx, 0) == '/' && peek(lx, 1) == '*') {
			int depth = 0;
			while (lx->pos < lx->len) {
				if (peek(lx, 0) == '/' && peek(lx, 1) == '*') {
					depth++;
					lx->pos += 2;
				} else if (peek(lx, 0) == '*' && peek(lx, 1) == '/') {
					lx->pos += 2;
					if (--depth == 0)
						break;
				} else {
					lx->pos++;
				}
			}
			continue;
		}
		return;
	}
}

static void set_word(struct tok *t, const char *p, size_t n, bool lower)
{
	size_t m = n < sizeof(t->word) - 1 ? n : sizeof(t->word) - 1;
	for (size_t i = 0; i < m; i++)
		t->word[i] = lower ? (char)tolower((unsigned char)p[i]) : p[i];
	t->word[m] = 0;
}

/* The content of a quoted identifier: from just after the opening quote to
 * just before the closing one, or to the end of the input when the quote is
 * never closed (an unterminated U&" must not make the length negative). */
static void set_quoted_word(struct tok *t, const char *content, const char *end, bool closed)
{
	size_t n = (size_t)(end - content);
	if (closed && n > 0)
		n--;
	set_word(t, content, n, false);
}

static void next_token(struct lexer *lx, struct tok *t)
{
	skip_space_and_comments(lx);
	t->word[0] = 0;
	t->p = lx->s + lx->pos;
	if (lx->pos >= lx->len) {
		t->type = T_END;
		t->len = 0;
		return;
	}
	size_t start = lx->pos;
	char c = lx->s[lx->pos];
	if (c == '\'') {
		skip_quoted(lx, '\'', false);
		t->type = T_STRING;
	} else if ((c == 'e' || c == 'E') && peek(lx, 1) == '\'') {
		lx->pos++;
		skip_quoted(lx, '\'', true);
		t->type = T_STRING;
	} else if (strchr("bBxXnN", c) && peek(lx, 1) == '\'') {
		lx->pos++;
		skip_quoted(lx, '\'', false);
		t->type = T_STRING;
	} else if ((c == 'u' || c == 'U') && peek(lx, 1) == '&' && (peek(lx, 2) == '\'' || peek(lx, 2) == '"')) {
		char q = peek(lx, 2);
		lx->pos += 2;
		bool closed = skip_quoted(lx, q, false);
		t->type = q == '\'' ? T_STRING : T_QIDENT;
		if (q == '"')
			set_quoted_word(t, lx->s + start + 3, lx->s + lx->pos, closed);
	} else if (c == '"') {
		bool closed = skip_quoted(lx, '"', false);
		t->type = T_QIDENT;
		/* content without the quotes; doubled quotes kept as written */
		set_quoted_word(t, lx->s + start + 1, lx->s + lx->pos, closed);
	} else if (c == '$') {
		if (skip_dollar_quote(lx)) {
			t->type = T_STRING;
		} else {
			lx->pos++;
			while (lx->pos < lx->len && isdigit((unsigned char)lx->s[lx->pos]))
				lx->pos++;
			t->type = T_PARAM;
		}
	} else if (is_ident_start((unsigned char)c)) {
		while (lx->pos < lx->len && is_ident_char((unsigned char)lx->s[lx->pos]))
			lx->pos++;
		t->type = T_WORD;
		set_word(t, lx->s + start, lx->pos - start, true);
	} else if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)peek(lx, 1)))) {
		while (lx->pos < lx->len && (isalnum((unsigned char)lx->s[lx->pos]) || lx->s[lx->pos] == '.' ||
		                             lx->s[lx->pos] == '_'))
			lx->pos++;
		t->type = T_NUMBER;
	} else if (is_op_char(c)) {
		size_t end = lx->pos;
		while (end < lx->len && is_op_char(lx->s[end])) {
			if (end > lx->pos && ((lx->s[end] == '-' && end + 1 < lx->len && lx->s[end + 1] == '-') ||
			                      (lx->s[end] == '/' && end + 1 < lx->len && lx->s[end + 1] == '*')))
				break;
			end++;
		}
		size_t n = end - lx->pos;
		bool special = false;
		for (size_t i = 0; i < n; i++)
			if (strchr("~!@#%^&|`?", lx->s[lx->pos + i]))
				special = true;
		while (n > 1 && !special && (lx->s[lx->pos + n - 1] == '+' || lx->s[lx->pos + n - 1] == '-'))
			n--;
		lx->pos += n;
		t->type = T_OP;
	} else {
		lx->pos++;
		t->type = T_PUNCT;
	}
	t->len = lx->pos - start;
}

void sql_lexer_init(struct sql_lexer *lx, const char *sql, size_t len)
{
	lx->s = sql;
	lx->len = len;
	lx->pos = 0;
}

void sql_lexer_next(struct sql_lexer *lx, struct sql_token *t)
{
	static const enum sql_token_type types[] = {
		[T_END] = SQL_TOK_END, [T_WORD] = SQL_TOK_WORD,     [T_QIDENT] = SQL_TOK_QIDENT,
		[T_STRING] = SQL_TOK_STRING, [T_NUMBER] = SQL_TOK_NUMBER, [T_OP] = SQL_TOK_OP,
		[T_PUNCT] = SQL_TOK_PUNCT,   [T_PARAM] = SQL_TOK_PARAM,
	};
	struct lexer in = {lx->s, lx->len, lx->pos};
	struct tok k;
	next_token(&in, &k);
	lx->pos = in.pos;
	t->type = types[k.type];
	t->p = k.p;
	t->len = k.len;
	memcpy(t->word, k.word, sizeof(t->word));
}

/* ---- the byte scan that keeps most statements away from the lexer ---- */

static bool is_distance_op_char(char c)
{
	switch (c) {
	case '-': case '=': case '#': case '+': case '~': case '%':
		return true;
	default:
		return false;
	}
}

/* "index" ends in an x: look for each x (either case) and compare the four
 * bytes before it, so the scan runs at memchr's speed over the text. */
static bool has_word_index(const char *sql, size_t len)
{
	for (int pass = 0; pass < 2; pass++) {
		const char *p = sql + 4, *end = sql + len;
		while (p < end && (p = memchr(p, pass ? 'X' : 'x', (size_t)(end - p)))) {
			if ((p[-4] | 0x20) == 'i' && (p[-3] | 0x20) == 'n' && (p[-2] | 0x20) == 'd' && (p[-1] | 0x20) == 'e')
				return true;
			p++;
		}
	}
	return false;
}

static bool has_distance_op(const char *sql, size_t len)
{
	const char *p = sql, *end = sql + len;
	while (end - p >= 3 && (p = memchr(p, '<', (size_t)(end - p - 2)))) {
		if (is_distance_op_char(p[1]) && p[2] == '>')
			return true;
		p++;
	}
	return false;
}

unsigned sql_prescan(const char *sql, size_t len)
{
	unsigned r = 0;
	if (len >= 5 && has_word_index(sql, len))
		r |= SQL_MAY_INDEX;
	if (len >= 3 && has_distance_op(sql, len))
		r |= SQL_MAY_VECTOR_OP;
	return r;
}

bool sql_is_vector_operator(const char *op, size_t len)
{
	static const char *const ops[] = {"<->", "<=>", "<#>", "<+>", "<~>", "<%>"};
	if (len != 3)
		return false;
	for (size_t i = 0; i < sizeof(ops) / sizeof(*ops); i++)
		if (!memcmp(op, ops[i], 3))
			return true;
	return false;
}

/* ---- the query vector of a k-NN statement ---- */

/* A plain '...' literal (no E'' escapes, no doubled quotes: a vector
 * literal never needs them) or a parameter $n. */
static bool vector_operand_of(const char *sql, const struct tok *t, struct vec_operand *out)
{
	if (t->type == T_STRING && t->len >= 2 && t->p[0] == '\'' && t->p[t->len - 1] == '\'' &&
	    !memchr(t->p + 1, '\'', t->len - 2)) {
		out->kind = VOP_LITERAL;
		out->off = (size_t)(t->p + 1 - sql);
		out->len = t->len - 2;
		return true;
	}
	if (t->type == T_PARAM && t->len > 1 && t->len <= 6) {
		int n = 0; /* the text is not NUL-terminated: digits within the token only */
		for (size_t i = 1; i < t->len; i++)
			n = n * 10 + (t->p[i] - '0');
		if (n < 1)
			return false;
		out->kind = VOP_PARAM;
		out->param = n;
		return true;
	}
	return false;
}

static bool is_punct(const struct tok *t, char c)
{
	return t->type == T_PUNCT && t->p[0] == c;
}

void sql_vector_operand(const char *sql, size_t len, struct vec_operand *out)
{
	memset(out, 0, sizeof(*out));
	struct lexer lx = {sql, len, 0};
	struct tok prev[4]; /* prev[0] the token just before */
	memset(prev, 0, sizeof(prev));
	for (;;) {
		struct tok t;
		next_token(&lx, &t);
		if (t.type == T_END)
			return;
		if (t.type == T_OP && sql_is_vector_operator(t.p, t.len)) {
			struct tok r;
			next_token(&lx, &r);
			if (is_punct(&r, '('))
				next_token(&lx, &r);
			if (vector_operand_of(sql, &r, out))
				return;
			/* the left side, cast or not: X <op>, X::type <op> */
			const struct tok *l = &prev[0];
			if (prev[0].type == T_WORD && is_punct(&prev[1], ':') && is_punct(&prev[2], ':'))
				l = &prev[3];
			if (vector_operand_of(sql, l, out))
				return;
			t = r;
		}
		memmove(prev + 1, prev, 3 * sizeof(prev[0]));
		prev[0] = t;
	}
}

/* ---- classification ---- */

static bool word_is(const struct tok *t, const char *w)
{
	return t->type == T_WORD && !strcmp(t->word, w);
}

static bool word_in(const char *w, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(w, *list))
			return true;
	return false;
}

static void add_table(struct sql_class *c, const char *name)
{
	if (!name[0])
		return;
	for (int i = 0; i < c->n_tables; i++)
		if (!strcmp(c->tables[i], name))
			return;
	if (c->n_tables == SQL_MAX_TABLES) {
		c->truncated = true;
		return;
	}
	strncpy(c->tables[c->n_tables], name, SQL_NAME_MAX - 1);
	c->tables[c->n_tables][SQL_NAME_MAX - 1] = 0;
	c->n_tables++;
}

/* One statement's tokens, buffered so the classifier can look ahead. */
#define STMT_MAX_TOKENS 2048
struct stmt {
	struct tok *toks; /* grown on demand: most statements have few tokens */
	int *depth;
	int n, cap;
};

static bool stmt_push(struct stmt *st, const struct tok *t, int depth)
{
	if (st->n == st->cap) {
		int cap = st->cap ? st->cap * 2 : 64;
		struct tok *toks = realloc(st->toks, (size_t)cap * sizeof(*toks));
		if (!toks)
			return false;
		st->toks = toks;
		int *d = realloc(st->depth, (size_t)cap * sizeof(*d));
		if (!d)
			return false;
		st->depth = d;
		st->cap = cap;
	}
	st->toks[st->n] = *t;
	st->depth[st->n] = depth;
	st->n++;
	return true;
}

/* A possibly schema-qualified name starting at toks[i]; returns the index
 * after it, or i if there is no name. */
static int read_name(const struct stmt *st, int i, char *out, size_t outlen)
{
	out[0] = 0;
	size_t o = 0;
	while (i < st->n && (st->toks[i].type == T_WORD || st->toks[i].type == T_QIDENT)) {
		int n = snprintf(out + o, outlen - o, "%s", st->toks[i].word);
		if (n < 0 || (size_t)n >= outlen - o)
			break;
		o += (size_t)n;
		if (i + 2 < st->n && st->toks[i + 1].type == T_PUNCT && *st->toks[i + 1].p == '.') {
			if (o + 1 < outlen)
				out[o++] = '.', out[o] = 0;
			i += 2;
			continue;
		}
		return i + 1;
	}
	return i;
}

static const char *const read_starts[] = {"select", "values", "table", "show", "with", "explain", NULL};
static const char *const write_words[] = {"insert", "update", "delete", "merge", NULL};
static const char *const ddl_starts[] = {"create", "alter", "drop", "reindex", "truncate", "grant", "revoke",
                                         "comment", "cluster", "refresh", "security", "import", NULL};
static const char *const writing_functions[] = {"nextval", "setval", "pg_advisory_lock", "pg_advisory_xact_lock",
                                                "lo_create", "lo_import", "txid_current", "pg_notify", NULL};
static const char *const not_table_words[] = {"lateral", "only", "select", "values", "unnest", NULL};
/* words that end a FROM list */
static const char *const from_enders[] = {"where", "group", "order", "limit", "having", "union", "window",
                                          "offset", "fetch", "for", "except", "intersect", "returning", NULL};


/* A table name at toks[j] (after FROM, JOIN, INTO, ',' ...), unless it is a
 * subquery or a function call. */
static void table_at(const struct stmt *st, int j, struct sql_class *c, bool column_list_follows)
{
	while (j < st->n && st->toks[j].type == T_WORD && word_in(st->toks[j].word, not_table_words))
		j++;
	char name[SQL_NAME_MAX];
	int after = read_name(st, j, name, sizeof(name));
	if (after == j ||
	    (!column_list_follows && after < st->n && st->toks[after].type == T_PUNCT && *st->toks[after].p == '('))
		return;
	add_table(c, name);
}

/* Consume the optional keyword `w` at toks[*i]; true if it was there. */
static bool accept_word(const struct stmt *st, int *i, const char *w)
{
	if (*i < st->n && word_is(&st->toks[*i], w)) {
		(*i)++;
		return true;
	}
	return false;
}

static void classify_guarded_ddl(const struct stmt *st, struct sql_class *c)
{
	const struct tok *t = st->toks;
	int i = 1;
	enum ddl_kind kind = DDL_OTHER;
	char name[SQL_NAME_MAX] = "", extra[SQL_NAME_MAX] = "";
	if (word_is(&t[0], "reindex")) {
		bool conc = false;
		if (i < st->n && t[i].type == T_PUNCT && *t[i].p == '(') {
			for (; i < st->n && !(t[i].type == T_PUNCT && *t[i].p == ')'); i++)
				if (word_is(&t[i], "concurrently"))
					conc = true;
			i++;
		}
		if (i < st->n && t[i].type == T_WORD)
			snprintf(extra, sizeof(extra), "%s", t[i++].word); /* index/table/schema/... */
		if (accept_word(st, &i, "concurrently"))
			conc = true;
		read_name(st, i, name, sizeof(name));
		kind = conc ? DDL_REINDEX_CONCURRENTLY : DDL_REINDEX;
		if (!strcmp(extra, "table"))
			add_table(c, name);
	} else if (word_is(&t[0], "create")) {
		accept_word(st, &i, "unique");
		if (accept_word(st, &i, "index")) {
			bool conc = accept_word(st, &i, "concurrently");
			if (i + 2 < st->n && word_is(&t[i], "if") && word_is(&t[i + 1], "not") && word_is(&t[i + 2], "exists"))
				i += 3;
			if (i < st->n && !word_is(&t[i], "on"))
				i = read_name(st, i, extra, sizeof(extra));
			if (accept_word(st, &i, "on")) {
				accept_word(st, &i, "only");
				read_name(st, i, name, sizeof(name));
				add_table(c, name);
			}
			kind = conc ? DDL_CREATE_INDEX_CONCURRENTLY : DDL_CREATE_INDEX;
		}
	} else if (word_is(&t[0], "drop")) {
		if (accept_word(st, &i, "index")) {
			bool conc = accept_word(st, &i, "concurrently");
			if (i + 1 < st->n && word_is(&t[i], "if") && word_is(&t[i + 1], "exists"))
				i += 2;
			read_name(st, i, name, sizeof(name));
			kind = conc ? DDL_DROP_INDEX_CONCURRENTLY : DDL_DROP_INDEX;
		}
	}
	if (c->ddl_kind == DDL_NONE || (c->ddl_kind == DDL_OTHER && kind != DDL_OTHER)) {
		c->ddl_kind = kind;
		snprintf(c->ddl_target, sizeof(c->ddl_target), "%s", name);
		snprintf(c->ddl_target2, sizeof(c->ddl_target2), "%s", extra);
	}
}

/* Returns whether the statement only reads. */
static bool classify_statement(const struct stmt *st, struct sql_class *c)
{
	const struct tok *t = st->toks;
	const char *w0 = t[0].type == T_WORD ? t[0].word : "";
	bool reads = word_in(w0, read_starts);

	if (!strcmp(w0, "begin") || !strcmp(w0, "start")) {
		c->txn_begin = c->txn_control = true;
		return false;
	}
	if (!strcmp(w0, "commit") || !strcmp(w0, "end") || !strcmp(w0, "rollback") || !strcmp(w0, "abort")) {
		c->txn_control = true;
		bool to_savepoint = false, prepared = false;
		for (int i = 1; i < st->n; i++) {
			if (word_is(&t[i], "to"))
				to_savepoint = true;
			if (word_is(&t[i], "prepared"))
				prepared = true;
		}
		if (!to_savepoint && !prepared)
			c->txn_end = true;
		return false;
	}
	if (!strcmp(w0, "savepoint") || !strcmp(w0, "release") ||
	    (!strcmp(w0, "prepare") && st->n > 1 && word_is(&t[1], "transaction"))) {
		c->txn_control = true;
		return false;
	}
	if (word_in(w0, ddl_starts)) {
		c->ddl = true;
		classify_guarded_ddl(st, c);
	}

	bool writes = !reads;
	bool analyze = false;
	int from_depth = -1; /* inside a FROM list at this paren depth */
	for (int i = 0; i < st->n; i++) {
		const struct tok *k = &t[i];
		if (k->type == T_WORD) {
			if (word_in(k->word, write_words) && i > 0)
				writes = true; /* writable CTE, EXPLAIN ANALYZE of a write, ... */
			if (!strcmp(k->word, "analyze") && !strcmp(w0, "explain"))
				analyze = true;
			if (word_in(k->word, writing_functions) && i + 1 < st->n && t[i + 1].type == T_PUNCT &&
			    *t[i + 1].p == '(')
				writes = true;
			if (!strcmp(k->word, "for") && i + 1 < st->n &&
			    (word_is(&t[i + 1], "update") || word_is(&t[i + 1], "share") || word_is(&t[i + 1], "no") ||
			     word_is(&t[i + 1], "key"))) {
				c->locking = true;
				writes = true;
			}
			if (!strcmp(k->word, "into") && !strcmp(w0, "select") && st->depth[i] == 0)
				writes = true; /* SELECT INTO creates a table */
			bool takes_table = !strcmp(k->word, "from") || !strcmp(k->word, "join") ||
			                   !strcmp(k->word, "into") || (!strcmp(k->word, "update") && i == 0) ||
			                   (!strcmp(k->word, "table") && i == 0) || (!strcmp(k->word, "copy") && i == 0);
			if (!strcmp(k->word, "from"))
				from_depth = st->depth[i];
			else if (from_depth == st->depth[i] && word_in(k->word, from_enders))
				from_depth = -1;
			if (takes_table && i + 1 < st->n)
				table_at(st, i + 1, c, !strcmp(k->word, "into") || !strcmp(k->word, "copy"));
		} else if (k->type == T_PUNCT && *k->p == ',' && from_depth == st->depth[i]) {
			table_at(st, i + 1, c, false); /* FROM a, b */
		} else if (k->type == T_OP && sql_is_vector_operator(k->p, k->len)) {
			c->vector_op = true;
		}
	}
	if (!strcmp(w0, "explain") && !analyze)
		writes = c->ddl ? writes : false;
	if (!reads || c->ddl)
		writes = true;
	return !writes;
}

void sql_classify(const char *sql, size_t len, struct sql_class *out)
{
	memset(out, 0, sizeof(*out));
	struct stmt stmt = {0}, *stp = &stmt;
	struct lexer lx = {sql, len, 0};
	bool all_read = true;
	bool overflow = false; /* too long to judge, or out of memory */
	int depth = 0;
	for (;;) {
		struct tok t;
		next_token(&lx, &t);
		bool end_of_stmt = t.type == T_END || (t.type == T_PUNCT && *t.p == ';' && depth == 0);
		if (!end_of_stmt) {
			if (t.type == T_PUNCT && (*t.p == '(' || *t.p == '['))
				depth++;
			if (t.type == T_PUNCT && (*t.p == ')' || *t.p == ']') && depth > 0)
				depth--;
			if (overflow || stp->n >= STMT_MAX_TOKENS || !stmt_push(stp, &t, depth)) {
				overflow = true;
				if (t.type == T_OP && sql_is_vector_operator(t.p, t.len))
					out->vector_op = true; /* past what we buffer: still notice it */
			}
			continue;
		}
		if (stp->n > 0 || overflow) {
			out->statements++;
			if (overflow)
				all_read = false; /* too long to judge: be conservative */
			if (stp->n == 0 || !classify_statement(stp, out))
				all_read = false;
		}
		stp->n = 0;
		depth = 0;
		overflow = false;
		if (t.type == T_END)
			break;
	}
	out->read_only = out->statements > 0 && all_read;
	free(stmt.toks);
	free(stmt.depth);
}

bool sql_word_ends_from(const char *word)
{
	return word_in(word, from_enders);
}

bool sql_word_not_alias(const char *word)
{
	static const char *const join_words[] = {"join", "inner", "left",  "right",       "full", "cross", "natural",
	                                         "on",   "using", "lateral", "tablesample", "as",   NULL};
	return word_in(word, from_enders) || word_in(word, join_words);
}

bool sql_name_matches(const char *given, const char *schema, const char *name)
{
	const char *dot = strrchr(given, '.');
	if (!dot)
		return !strcasecmp(given, name);
	size_t sl = (size_t)(dot - given);
	return strlen(schema) == sl && !strncasecmp(given, schema, sl) && !strcasecmp(dot + 1, name);
}

int sql_max_param(const char *sql, size_t len)
{
	struct lexer lx = {sql, len, 0};
	struct tok t;
	int max = 0;
	for (next_token(&lx, &t); t.type != T_END; next_token(&lx, &t)) {
		if (t.type != T_PARAM || t.len < 2 || t.len > 6)
			continue;
		int n = atoi(t.p + 1);
		if (n > max)
			max = n;
	}
	return max;
}
