/*
 * Build the pg_hint_plan comment that pins one vector read to an index:
 * find how the statement names the managed table in its FROM lists (the
 * alias, or the table's own name), and refuse the cases where a hint could
 * be wrong or void.  Measured on pg_hint_plan 1.5: a hint naming the table
 * while the query uses an alias is silently ignored, and one naming an
 * index that does not exist leaves the planner no index at all.
 */
#include "routing/pin_hint.h"
#include "routing/classify.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PIN_MAX_DEPTH 32

int pin_quote_ident(const char *name, char *out, size_t cap)
{
	size_t o = 0;
	if (cap < 3)
		return -1;
	out[o++] = '"';
	for (const char *p = name; *p; p++) {
		if (o + (*p == '"' ? 2 : 1) + 2 > cap)
			return -1;
		if (*p == '"')
			out[o++] = '"';
		out[o++] = *p;
	}
	out[o++] = '"';
	out[o] = 0;
	return 0;
}

/* pg_hint_plan takes the first hint opener whose text before it holds only
 * letters, digits, white space and _ , ( ) [ ]: the statement's own hint. */
static bool has_own_hint(const char *sql, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		char c = sql[i];
		if (c == '/' && sql[i + 1] == '*' && sql[i + 2] == '+')
			return true;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ' ||
		      c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '_' || c == ',' || c == '(' ||
		      c == ')' || c == '[' || c == ']'))
			return false;
	}
	return false;
}

static bool is_word(const struct sql_token *t, const char *w)
{
	return t->type == SQL_TOK_WORD && !strcmp(t->word, w);
}

static bool is_punct(const struct sql_token *t, char c)
{
	return t->type == SQL_TOK_PUNCT && t->len == 1 && *t->p == c;
}

static bool is_ident(const struct sql_token *t)
{
	return t->type == SQL_TOK_WORD || t->type == SQL_TOK_QIDENT;
}

/* Does an identifier token denote `name`?  Unquoted words are folded by the
 * lexer; the comparison stays lenient about case as the classifier is. */
static bool ident_is(const struct sql_token *t, const char *name)
{
	return t->type == SQL_TOK_QIDENT ? !strcmp(t->word, name) : !strcasecmp(t->word, name);
}

struct walk {
	struct sql_lexer lx;
	struct sql_token tok, next; /* one token of lookahead */
};

static void walk_advance(struct walk *w)
{
	w->tok = w->next;
	sql_lexer_next(&w->lx, &w->next);
}

int pin_index_list(const char *const *names, int n, char *out, size_t cap)
{
	size_t o = 0;
	if (!cap || n <= 0)
		return -1;
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		char q[2 * SQL_NAME_MAX + 3];
		if (!names[i][0] || strstr(names[i], "/*") || strstr(names[i], "*/") ||
		    pin_quote_ident(names[i], q, sizeof(q)) < 0)
			return -1;
		int w = snprintf(out + o, cap - o, "%s%s", o ? " " : "", q);
		if (w < 0 || (size_t)w >= cap - o)
			return -1;
		o += (size_t)w;
	}
	return 0;
}

/* How a statement names the table: its references in FROM lists (the last
 * one's hint name, and where its name starts and ends in the text), and
 * what makes rewriting it unsafe. */
struct table_refs {
	int found, statements;
	bool deep, ordered, aliased;
	char ref[SQL_NAME_MAX + 4];
	const char *start, *name, *end; /* the reference as written; name: its last part */
};

static void find_refs(const char *sql, size_t len, const char *schema, const char *table, struct table_refs *r)
{
	struct walk w;
	sql_lexer_init(&w.lx, sql, len);
	sql_lexer_next(&w.lx, &w.next);
	walk_advance(&w);

	bool in_from[PIN_MAX_DEPTH] = {false};
	int depth = 0, found = 0, statements = 1;
	bool expect_rel = false, deep = false, ordered = false;
	char ref[SQL_NAME_MAX + 4] = "";
	memset(r, 0, sizeof(*r));
	for (; w.tok.type != SQL_TOK_END; walk_advance(&w)) {
		const struct sql_token *t = &w.tok;
		if (is_punct(t, ';')) {
			if (w.next.type != SQL_TOK_END)
				statements++;
			depth = 0;
			memset(in_from, 0, sizeof(in_from));
			expect_rel = false;
			continue;
		}
		if (is_punct(t, '(')) {
			expect_rel = false;
			if (++depth >= PIN_MAX_DEPTH) {
				deep = true;
				break;
			}
			in_from[depth] = false;
			continue;
		}
		if (is_punct(t, ')')) {
			expect_rel = false;
			if (depth > 0)
				depth--;
			continue;
		}
		if (is_word(t, "order") && is_word(&w.next, "by"))
			ordered = true;
		if (is_word(t, "from") || is_word(t, "join")) {
			in_from[depth] = true;
			expect_rel = true;
			continue;
		}
		if (in_from[depth] && is_punct(t, ',')) {
			expect_rel = true;
			continue;
		}
		if (t->type == SQL_TOK_WORD && sql_word_ends_from(t->word)) {
			/* WHERE, ORDER, LIMIT ...: the FROM list at this depth is over */
			in_from[depth] = false;
			expect_rel = false;
			continue;
		}
		if (!expect_rel)
			continue;
		expect_rel = false;
		/* a relation: [ONLY|LATERAL] name[.name[.name]] [[AS] alias], unless
		 * a subquery or a function follows */
		while (is_word(&w.tok, "only") || is_word(&w.tok, "lateral"))
			walk_advance(&w);
		if (!is_ident(&w.tok))
			continue; /* "(" of a subquery: its own FROM is read inside */
		struct sql_token parts[3];
		int n = 0;
		parts[n++] = w.tok;
		while (is_punct(&w.next, '.') && n < 3) {
			walk_advance(&w);
			walk_advance(&w);
			if (!is_ident(&w.tok))
				break;
			parts[n++] = w.tok;
		}
		if (is_punct(&w.next, '('))
			continue; /* a function in FROM */
		const struct sql_token *name = &parts[n - 1];
		bool match = ident_is(name, table) && (n < 2 || ident_is(&parts[n - 2], schema));
		/* the alias, if any */
		const struct sql_token *alias = NULL;
		struct sql_token alias_tok;
		if (is_word(&w.next, "as")) {
			walk_advance(&w);
			if (is_ident(&w.next)) {
				walk_advance(&w);
				alias_tok = w.tok;
				alias = &alias_tok;
			}
		} else if (w.next.type == SQL_TOK_QIDENT || (w.next.type == SQL_TOK_WORD && !sql_word_not_alias(w.next.word))) {
			walk_advance(&w);
			alias_tok = w.tok;
			alias = &alias_tok;
		}
		if (!match)
			continue;
		found++;
		r->start = parts[0].p;
		r->name = name->p;
		r->end = name->p + name->len;
		r->aliased = alias != NULL;
		const struct sql_token *r = alias ? alias : name;
		/* a quoted name keeps its doubled quotes: pg_hint_plan reads "" as " */
		snprintf(ref, sizeof(ref), "\"%s\"", r->word);
		if (r->len >= 64 + (r->type == SQL_TOK_QIDENT ? 2u : 0u) || strstr(r->word, "/*") || strstr(r->word, "*/"))
			ref[0] = 0; /* truncated, or a name a hint comment cannot carry */
	}
	r->found = found;
	r->statements = statements;
	r->deep = deep;
	r->ordered = ordered;
	snprintf(r->ref, sizeof(r->ref), "%s", ref);
}

enum pin_verdict pin_hint_for(const char *sql, size_t len, const char *schema, const char *table,
                              const char *index_list, char *out, size_t cap, const char **why)
{
	static const char *const no_why = "";
	*why = no_why;
	struct table_refs r;
	find_refs(sql, len, schema, table, &r);
	int found = r.found, statements = r.statements;
	bool deep = r.deep, ordered = r.ordered;
	const char *ref = r.ref;
	if (deep) {
		*why = "nested too deeply to be read";
		return PIN_UNSAFE;
	}
	if (!found || !ordered)
		return PIN_NOT_READ; /* without ORDER BY no index returns rows by distance */
	if (has_own_hint(sql, len)) {
		*why = "it carries its own plan hint";
		return PIN_UNSAFE;
	}
	if (statements > 1) {
		*why = "the text holds more than one statement";
		return PIN_UNSAFE;
	}
	if (found > 1) {
		*why = "it names the table more than once";
		return PIN_UNSAFE;
	}
	if (!ref[0] || !index_list[0]) {
		*why = "a name a hint comment cannot carry";
		return PIN_UNSAFE;
	}
	int n = snprintf(out, cap, "/*+ IndexScan(%s %s) */ ", ref, index_list);
	if (n < 0 || (size_t)n >= cap) {
		*why = "the hint does not fit";
		return PIN_UNSAFE;
	}
	return PIN_HINTED;
}

int pin_retarget(const char *sql, size_t len, const char *schema, const char *table, const char *leaf_ref,
                 char *out, size_t cap, const char **why)
{
	struct table_refs r;
	*why = "";
	find_refs(sql, len, schema, table, &r);
	if (r.deep)
		*why = "nested too deeply to be read";
	else if (r.statements > 1)
		*why = "the text holds more than one statement";
	else if (r.found != 1)
		*why = r.found ? "it names the table more than once" : "it does not read the table in a FROM list";
	if (**why)
		return -1;
	/* without an alias the table's own name stays the alias, so columns
	 * written table.column still resolve */
	char alias[SQL_NAME_MAX + 8] = "";
	if (!r.aliased) {
		int an = snprintf(alias, sizeof(alias), " AS %.*s", (int)(r.end - r.name), r.name);
		if (an < 0 || (size_t)an >= sizeof(alias)) {
			*why = "a name too long to alias";
			return -1;
		}
	}
	int n = snprintf(out, cap, "%.*s%s%s%.*s", (int)(r.start - sql), sql, leaf_ref, alias,
	                 (int)(len - (size_t)(r.end - sql)), r.end);
	if (n < 0 || (size_t)n >= cap) {
		*why = "the rewritten text does not fit";
		return -1;
	}
	return 0;
}
