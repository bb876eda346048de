/*
 * Recognise the plain k-NN eval query whose exact answer one scan of the
 * table can give, token by token with the same lexer the classifier uses,
 * so that a comment, a string or a quoted identifier is read the way the
 * server reads it.  Recognising too little only costs speed (the caller
 * falls back to per-query ground truth); recognising too much would make
 * the gate measure against the wrong truth, so every part of the grammar is
 * spelled out and anything else is refused with its reason.
 */
#include "routing/knn_query.h"
#include "routing/indexdef.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 256 /* a plain k-NN query with a filter of KNN_FILTER_TERMS terms fits */

struct cursor {
	struct sql_token t[MAX_TOKENS];
	int n, i;
	char *why;
	size_t whylen;
};

static const struct sql_token *peek(const struct cursor *c)
{
	return &c->t[c->i < c->n ? c->i : c->n - 1]; /* the last token is END */
}

static bool is_word(const struct sql_token *t, const char *w)
{
	return t->type == SQL_TOK_WORD && !strcmp(t->word, w);
}

static bool accept_word(struct cursor *c, const char *w)
{
	if (!is_word(peek(c), w))
		return false;
	c->i++;
	return true;
}

static bool is_punct(const struct sql_token *t, char ch)
{
	return t->type == SQL_TOK_PUNCT && t->len == 1 && *t->p == ch;
}

static bool accept_punct(struct cursor *c, char ch)
{
	if (!is_punct(peek(c), ch))
		return false;
	c->i++;
	return true;
}

static int refuse(struct cursor *c, const char *what)
{
	const struct sql_token *t = peek(c);
	if (t->type == SQL_TOK_END)
		snprintf(c->why, c->whylen, "%s, found the end of the query", what);
	else
		snprintf(c->why, c->whylen, "%s, found '%.*s'", what, (int)(t->len < 40 ? t->len : 40), t->p);
	return -1;
}

/* words that cannot be a table alias here */
static bool clause_word(const struct sql_token *t)
{
	return t->type == SQL_TOK_WORD && sql_word_not_alias(t->word);
}

/* A plain or quoted identifier (no doubled quotes, not truncated). */
static bool accept_ident(struct cursor *c, char *out)
{
	const struct sql_token *t = peek(c);
	if (t->type == SQL_TOK_WORD) {
		if (t->len >= sizeof(t->word))
			return false;
	} else if (t->type == SQL_TOK_QIDENT) {
		/* "name": the content must be exactly what word holds */
		if (t->len < 3 || t->len - 2 >= sizeof(t->word) || strchr(t->word, '"') || t->p[t->len - 1] != '"' ||
		    t->p[0] != '"')
			return false;
	} else {
		return false;
	}
	snprintf(out, SQL_NAME_MAX, "%s", t->word);
	c->i++;
	return true;
}

/* [qualifier.]column; the qualifier must name the table or its alias */
static bool accept_column(struct cursor *c, const char *qualifier, char *out)
{
	int save = c->i;
	char first[SQL_NAME_MAX];
	if (!accept_ident(c, first))
		return false;
	if (!accept_punct(c, '.')) {
		snprintf(out, SQL_NAME_MAX, "%s", first);
		return true;
	}
	if (strcmp(first, qualifier) != 0 || !accept_ident(c, out)) {
		c->i = save;
		return false;
	}
	return true;
}

static bool accept_param(struct cursor *c, const char *which)
{
	const struct sql_token *t = peek(c);
	if (t->type != SQL_TOK_PARAM || t->len != strlen(which) || memcmp(t->p, which, t->len))
		return false;
	c->i++;
	return true;
}

/* [ASC] [NULLS LAST]: the default order, written out */
static bool plain_order(struct cursor *c)
{
	accept_word(c, "asc");
	if (accept_word(c, "nulls")) {
		if (!accept_word(c, "last"))
			return false;
	}
	return !is_word(peek(c), "desc") && !is_word(peek(c), "using");
}

/* ---- the WHERE clause: AND-ed simple predicates ---- */

static int filter_column(struct knn_filter *f, const char *name)
{
	for (int i = 0; i < f->n_columns; i++)
		if (!strcmp(f->columns[i], name))
			return i;
	if (f->n_columns == KNN_FILTER_TERMS)
		return -1;
	snprintf(f->columns[f->n_columns], SQL_NAME_MAX, "%s", name);
	return f->n_columns++;
}

/* $n, [-]number, 'string', true, false; then an optional ::type, which the
 * scan does not need (it reads the value as the column's type, and refuses
 * one that does not read as such) */
static int accept_value(struct cursor *c, struct knn_filter *f)
{
	if (f->n_values == KNN_FILTER_VALUES)
		return refuse(c, "more values in the filter than one pass keeps");
	struct knn_value *v = &f->values[f->n_values];
	const struct sql_token *t = peek(c);
	memset(v, 0, sizeof(*v));
	bool minus = false;
	if (t->type == SQL_TOK_OP && t->len == 1 && *t->p == '-') {
		minus = true;
		c->i++;
		t = peek(c);
		if (t->type != SQL_TOK_NUMBER)
			return refuse(c, "expected a number after '-'");
	}
	if (t->type == SQL_TOK_PARAM) {
		char *end;
		long n = strtol(t->p + 1, &end, 10);
		if (end != t->p + t->len || n < 1 || n > KNN_MAX_PARAM)
			return refuse(c, "a parameter the filter cannot use");
		if (n == 1)
			return refuse(c, "the query vector $1 in the filter");
		v->kind = KNN_V_PARAM;
		v->param = (int)n;
		if (n > f->max_param)
			f->max_param = (int)n;
	} else if (t->type == SQL_TOK_NUMBER) {
		if (t->len + 2 > KNN_VALUE_MAX)
			return refuse(c, "a number too long");
		v->kind = KNN_V_NUMBER;
		snprintf(v->text, sizeof(v->text), "%s%.*s", minus ? "-" : "", (int)t->len, t->p);
	} else if (t->type == SQL_TOK_STRING && t->p[0] == '\'' && t->len >= 2 && t->p[t->len - 1] == '\'') {
		/* a plain '...' literal, '' for a quote (E'', $$ $$ and others are refused) */
		size_t o = 0;
		for (size_t i = 1; i + 1 < t->len; i++) {
			if (t->p[i] == '\'' && ++i + 1 >= t->len) /* the second of '' */
				return refuse(c, "a malformed string literal");
			if (o + 1 == KNN_VALUE_MAX)
				return refuse(c, "a string literal too long");
			v->text[o++] = t->p[i];
		}
		v->kind = KNN_V_STRING;
	} else if (is_word(t, "true") || is_word(t, "false")) {
		v->kind = KNN_V_BOOL;
		snprintf(v->text, sizeof(v->text), "%s", t->word);
	} else {
		return refuse(c, "expected a value ($n, a number, a '...' string, true or false)");
	}
	c->i++;
	if (accept_punct(c, ':')) {
		char type[SQL_NAME_MAX];
		if (!accept_punct(c, ':') || !accept_ident(c, type))
			return refuse(c, "expected a type after ::");
		if (accept_punct(c, '.') && !accept_ident(c, type))
			return refuse(c, "expected a type");
	}
	f->n_values++;
	return 0;
}

static int parse_term(struct cursor *c, const char *qualifier, struct knn_filter *f)
{
	char col[SQL_NAME_MAX];
	if (f->n_terms == KNN_FILTER_TERMS)
		return refuse(c, "more terms in the filter than one pass keeps");
	if (!accept_column(c, qualifier, col))
		return refuse(c, "the WHERE clause is not a simple predicate: expected a column of the table");
	struct knn_term *t = &f->terms[f->n_terms];
	if ((t->column = filter_column(f, col)) < 0)
		return refuse(c, "more filter columns than one pass reads");
	t->first = f->n_values;
	const struct sql_token *op = peek(c);
	static const struct {
		const char *op;
		enum knn_cmp cmp;
	} ops[] = {{"=", KNN_EQ}, {"<", KNN_LT}, {"<=", KNN_LE}, {">", KNN_GT}, {">=", KNN_GE}};
	for (size_t i = 0; op->type == SQL_TOK_OP && i < sizeof(ops) / sizeof(*ops); i++) {
		if (op->len == strlen(ops[i].op) && !memcmp(op->p, ops[i].op, op->len)) {
			t->cmp = ops[i].cmp;
			c->i++;
			if (accept_value(c, f) < 0)
				return -1;
			t->n_values = 1;
			f->n_terms++;
			return 0;
		}
	}
	if (accept_word(c, "in")) {
		t->cmp = KNN_IN;
		if (!accept_punct(c, '('))
			return refuse(c, "expected '(' after IN");
		do {
			if (accept_value(c, f) < 0)
				return -1;
			t->n_values++;
		} while (accept_punct(c, ','));
		if (!accept_punct(c, ')'))
			return refuse(c, "expected ')' closing the IN list");
	} else if (accept_word(c, "between")) {
		t->cmp = KNN_BETWEEN;
		if (is_word(peek(c), "symmetric") || is_word(peek(c), "asymmetric"))
			return refuse(c, "the WHERE clause is not a simple predicate");
		if (accept_value(c, f) < 0)
			return -1;
		if (!accept_word(c, "and"))
			return refuse(c, "expected AND in BETWEEN value AND value");
		if (accept_value(c, f) < 0)
			return -1;
		t->n_values = 2;
	} else if (accept_word(c, "is")) {
		t->cmp = accept_word(c, "not") ? KNN_IS_NOT_NULL : KNN_IS_NULL;
		if (!accept_word(c, "null"))
			return refuse(c, "expected IS [NOT] NULL");
	} else {
		return refuse(c, "the WHERE clause is not a simple predicate: expected =, <, <=, >, >=, IN, BETWEEN or IS [NOT] "
		                 "NULL after a column");
	}
	f->n_terms++;
	return 0;
}

static int parse_filter(struct cursor *c, const char *qualifier, struct knn_filter *f)
{
	do {
		if (parse_term(c, qualifier, f) < 0)
			return -1;
	} while (accept_word(c, "and"));
	if (is_word(peek(c), "or"))
		return refuse(c, "OR in the WHERE clause needs per-query ground truth");
	return 0;
}

int knn_query_parse(const char *sql, struct knn_query *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	struct cursor *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	c->why = why;
	c->whylen = whylen;
	struct sql_lexer lx;
	sql_lexer_init(&lx, sql, strlen(sql));
	for (;;) {
		if (c->n == MAX_TOKENS) {
			snprintf(why, whylen, "longer than a plain k-NN query");
			free(c);
			return -1;
		}
		sql_lexer_next(&lx, &c->t[c->n]);
		if (c->t[c->n++].type == SQL_TOK_END)
			break;
	}
	int rc = -1;
	char qual[SQL_NAME_MAX] = "", col[SQL_NAME_MAX];
	if (!accept_word(c, "select")) {
		refuse(c, "expected SELECT");
		goto out;
	}
	/* the id column, qualified or not: the qualifier is checked once the
	 * FROM clause has named the table */
	int id_at = c->i;
	char id_first[SQL_NAME_MAX] = "";
	if (!accept_ident(c, id_first)) {
		refuse(c, "expected the id column");
		goto out;
	}
	if (accept_punct(c, '.')) {
		snprintf(qual, sizeof(qual), "%s", id_first);
		if (!accept_ident(c, out->id_column)) {
			refuse(c, "expected the id column");
			goto out;
		}
	} else {
		snprintf(out->id_column, sizeof(out->id_column), "%s", id_first);
	}
	if (!accept_word(c, "from")) {
		refuse(c, "expected FROM after a single id column");
		goto out;
	}
	char first[SQL_NAME_MAX];
	if (!accept_ident(c, first)) {
		refuse(c, "expected a table");
		goto out;
	}
	if (accept_punct(c, '.')) {
		snprintf(out->schema, sizeof(out->schema), "%s", first);
		if (!accept_ident(c, out->table)) {
			refuse(c, "expected a table");
			goto out;
		}
	} else {
		snprintf(out->table, sizeof(out->table), "%s", first);
	}
	char alias[SQL_NAME_MAX] = "";
	if (accept_word(c, "as")) {
		if (!accept_ident(c, alias)) {
			refuse(c, "expected an alias");
			goto out;
		}
	} else if (!clause_word(peek(c)) && !is_punct(peek(c), ',') && !is_punct(peek(c), '(')) {
		accept_ident(c, alias);
	}
	const char *qualifier = alias[0] ? alias : out->table;
	if (qual[0] && strcmp(qual, qualifier) != 0) {
		c->i = id_at;
		refuse(c, "the id column's qualifier is not the table");
		goto out;
	}
	if (accept_word(c, "where") && parse_filter(c, qualifier, &out->filter) < 0)
		goto out;
	if (!accept_word(c, "order") || !accept_word(c, "by")) {
		refuse(c, "expected ORDER BY (a join or another clause needs per-query ground truth)");
		goto out;
	}
	if (!accept_column(c, qualifier, out->vector_column)) {
		refuse(c, "expected the vector column");
		goto out;
	}
	const struct sql_token *op = peek(c);
	int m = op->type == SQL_TOK_OP ? vdist_metric_of(op->p, op->len) : -1;
	if (m < 0) {
		refuse(c, "expected a distance operator <->, <#>, <=> or <+>");
		goto out;
	}
	out->metric = (enum vdist_metric)m;
	c->i++;
	if (!accept_param(c, "$1")) {
		refuse(c, "expected $1 (the query vector)");
		goto out;
	}
	if (accept_punct(c, ':')) {
		char type[SQL_NAME_MAX];
		if (!accept_punct(c, ':') || !accept_ident(c, type)) {
			refuse(c, "expected ::vector or ::halfvec");
			goto out;
		}
		if (accept_punct(c, '.') && !accept_ident(c, type)) { /* schema.type: the type's name decides */
			refuse(c, "expected a type");
			goto out;
		}
		if (strcmp(type, "vector") != 0 && strcmp(type, "halfvec") != 0) {
			c->i--;
			refuse(c, "the query vector is cast to a type other than vector or halfvec");
			goto out;
		}
		snprintf(out->cast_type, sizeof(out->cast_type), "%s", type);
		if (accept_punct(c, '(')) {
			const struct sql_token *nt = peek(c);
			char *end;
			long dims = nt->type == SQL_TOK_NUMBER ? strtol(nt->p, &end, 10) : 0;
			if (nt->type != SQL_TOK_NUMBER || end != nt->p + nt->len || dims < 1 || dims > VECFMT_MAX_DIM) {
				refuse(c, "expected the dimensions of the cast");
				goto out;
			}
			out->cast_dims = (int)dims;
			c->i++;
			if (!accept_punct(c, ')')) {
				refuse(c, "expected ')'");
				goto out;
			}
		}
	}
	if (!plain_order(c)) {
		refuse(c, "the order is not ascending distance");
		goto out;
	}
	if (accept_punct(c, ',')) {
		if (!accept_column(c, qualifier, col) || strcmp(col, out->id_column) != 0) {
			refuse(c, "the only tie-break recognised is the id column");
			goto out;
		}
		if (!plain_order(c)) {
			refuse(c, "the tie-break must be ascending id");
			goto out;
		}
		out->id_tiebreak = true;
	}
	if (!accept_word(c, "limit") || !accept_param(c, "$2")) {
		refuse(c, "expected LIMIT $2");
		goto out;
	}
	accept_punct(c, ';');
	if (peek(c)->type != SQL_TOK_END) {
		refuse(c, "expected the end of the query");
		goto out;
	}
	rc = 0;
out:
	free(c);
	return rc;
}

void knn_relation(const struct knn_query *q, char *out, size_t outlen)
{
	char qt[200];
	quote_ident(q->table, qt, sizeof(qt));
	if (q->schema[0]) {
		char qs[200];
		quote_ident(q->schema, qs, sizeof(qs));
		snprintf(out, outlen, "%s.%s", qs, qt);
	} else {
		snprintf(out, outlen, "%s", qt);
	}
}

int knn_copy_sql(const struct knn_query *q, char *out, size_t outlen)
{
	char rel[420], id[200], vec[200], cols[KNN_FILTER_TERMS * 200] = "";
	knn_relation(q, rel, sizeof(rel));
	quote_ident(q->id_column, id, sizeof(id));
	quote_ident(q->vector_column, vec, sizeof(vec));
	size_t o = 0;
	for (int i = 0; i < q->filter.n_columns; i++) {
		char qc[200];
		quote_ident(q->filter.columns[i], qc, sizeof(qc));
		o += (size_t)snprintf(cols + o, sizeof(cols) - o, ", %s", qc);
	}
	int n = snprintf(out, outlen, "COPY (SELECT %s, %s%s FROM %s) TO STDOUT (FORMAT binary)", id, vec, cols, rel);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int knn_probe_check(const struct knn_query *q, bool found, int id_type_oid, const char *vec_type,
                    const char *send_fn, enum vec_type *type, char *why, size_t whylen)
{
	if (!found) {
		snprintf(why, whylen, "relation %s not found", q->table);
		return -1;
	}
	/* int8, int2, int4: what the eval's ids are */
	if (id_type_oid != 20 && id_type_oid != 21 && id_type_oid != 23) {
		snprintf(why, whylen, id_type_oid ? "id column %s is not smallint, integer or bigint"
		                                  : "no column %s in the table", q->id_column);
		return -1;
	}
	if (!vec_type || !send_fn) {
		snprintf(why, whylen, "no column %s in the table", q->vector_column);
		return -1;
	}
	/* the send function fixes the binary format we decode */
	if (!strcmp(send_fn, "vector_send"))
		*type = VEC_FLOAT32;
	else if (!strcmp(send_fn, "halfvec_send"))
		*type = VEC_FLOAT16;
	else {
		snprintf(why, whylen, "column %s is of type %s, not pgvector's vector or halfvec", q->vector_column,
		         vec_type);
		return -1;
	}
	if (q->cast_type[0] && strcmp(q->cast_type, vec_type) != 0) {
		snprintf(why, whylen, "the query vector is cast to %s, column %s is %s", q->cast_type, q->vector_column,
		         vec_type);
		return -1;
	}
	return 0;
}

/* ---- how a query uses the distance operator (index shape checks) ---- */

#define NORM_TOKENS 128

struct norm_tok {
	char text[72]; /* a name (63 bytes at most) in quotes fits; longer tokens are not compared */
	bool ident; /* a name: a word or a quoted identifier */
	char punct; /* the character of a one-character punctuation, else 0 */
	bool number; /* "1" "." "5" must not run together into 1.5 */
};

static bool tok_text(const struct sql_token *t, struct norm_tok *out)
{
	memset(out, 0, sizeof(*out));
	if (t->type == SQL_TOK_WORD || t->type == SQL_TOK_QIDENT) {
		/* "embedding" and embedding are the same name; "Emb" and emb are
		 * not, so a name that needs its quotes keeps them */
		bool plain = t->type == SQL_TOK_WORD || islower((unsigned char)t->word[0]) || t->word[0] == '_';
		for (const char *c = t->word; plain && *c; c++)
			plain = islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_';
		out->ident = true;
		if (plain) {
			snprintf(out->text, sizeof(out->text), "%s", t->word);
			return true;
		}
	}
	if (t->len >= sizeof(out->text))
		return false;
	snprintf(out->text, sizeof(out->text), "%.*s", (int)t->len, t->p);
	if (t->type == SQL_TOK_PUNCT && t->len == 1)
		out->punct = *t->p;
	out->number = t->type == SQL_TOK_NUMBER;
	return true;
}

/* the ')' matching the '(' at i, or -1 */
static int closing(const struct norm_tok *v, int n, int i)
{
	int depth = 0;
	for (int j = i; j < n; j++) {
		if (v[j].punct == '(')
			depth++;
		else if (v[j].punct == ')' && --depth == 0)
			return j;
	}
	return -1;
}

static bool structural(const struct norm_tok *t)
{
	return t->punct && strchr("().,:[];", t->punct);
}

static int normalize_tokens(const struct sql_token *t, int n, char *out, size_t outlen)
{
	struct norm_tok v[NORM_TOKENS];
	int m = 0;
	if (n > NORM_TOKENS)
		return -1;
	for (int i = 0; i < n; i++)
		if (!tok_text(&t[i], &v[m++]))
			return -1;
	for (bool changed = true; changed;) {
		changed = false;
		/* qualifiers go: t.embedding, public.halfvec */
		for (int i = 0; i + 2 < m; i++) {
			if (v[i].ident && v[i + 1].punct == '.' && v[i + 2].ident) {
				memmove(&v[i], &v[i + 2], (size_t)(m - i - 2) * sizeof(*v));
				m -= 2;
				changed = true;
			}
		}
		/* (x) around one token, unless it is a call's or a type's: (embedding)::halfvec(3) */
		for (int i = 0; i + 2 < m; i++) {
			if (v[i].punct == '(' && v[i + 2].punct == ')' && !v[i + 1].punct && (i == 0 || !v[i - 1].ident)) {
				v[i] = v[i + 1];
				memmove(&v[i + 1], &v[i + 3], (size_t)(m - i - 3) * sizeof(*v));
				m -= 2;
				changed = true;
			}
		}
		/* parentheses around the whole */
		if (m >= 2 && v[0].punct == '(' && closing(v, m, 0) == m - 1) {
			memmove(&v[0], &v[1], (size_t)(m - 2) * sizeof(*v));
			m -= 2;
			changed = true;
		}
	}
	size_t o = 0;
	if (outlen)
		out[0] = 0;
	for (int i = 0; i < m; i++) {
		/* spaces around everything but the structural punctuation, so
		 * that neither names nor operators run together into others */
		bool space = i && ((!structural(&v[i - 1]) && !structural(&v[i])) ||
		                   (v[i - 1].punct == '.' && v[i].number) || (v[i].punct == '.' && v[i - 1].number));
		int w = snprintf(out + o, o < outlen ? outlen - o : 0, "%s%s", space ? " " : "", v[i].text);
		if (w < 0 || o + (size_t)w >= outlen)
			return -1;
		o += (size_t)w;
	}
	return m ? 0 : -1;
}

/* all tokens of sql (the END excluded); -1 when there are too many */
static int lex_all(const char *sql, struct sql_token *t, int max)
{
	struct sql_lexer lx;
	sql_lexer_init(&lx, sql, strlen(sql));
	for (int n = 0; n < max; n++) {
		sql_lexer_next(&lx, &t[n]);
		if (t[n].type == SQL_TOK_END)
			return n;
	}
	return -1;
}

int knn_expr_normalize(const char *expr, char *out, size_t outlen)
{
	struct sql_token *t = calloc(NORM_TOKENS + 1, sizeof(*t));
	int n = t ? lex_all(expr, t, NORM_TOKENS + 1) : -1;
	int rc = n > 0 ? normalize_tokens(t, n, out, outlen) : -1;
	free(t);
	return rc;
}

/* words that end an operand when met walking away from the operator */
static bool operand_stop(const struct sql_token *t)
{
	static const char *const words[] = {"select", "by", "where", "and", "or", "on", "when", "then", "else", "not",
	                                    "distinct", "having", "all", "in", "is", "case", "returning", "from",
	                                    "join", "limit", "offset", "as", "asc", "desc", "nulls", "using", "end",
	                                    "order", "group", "union", "window", "fetch", "for", NULL};
	if (t->type != SQL_TOK_WORD)
		return false;
	for (int i = 0; words[i]; i++)
		if (!strcmp(t->word, words[i]))
			return true;
	return false;
}

/* The operand that ends at token `last` walking back (dir -1) or starts at
 * `first` walking on (dir 1): [from, to) in t. */
static void operand_range(const struct sql_token *t, int n, int at, int dir, int *from, int *to)
{
	int depth = 0, i = at;
	for (; i >= 0 && i < n; i += dir) {
		const struct sql_token *x = &t[i];
		bool open = x->type == SQL_TOK_PUNCT && *x->p == (dir < 0 ? ')' : '(');
		bool close = x->type == SQL_TOK_PUNCT && *x->p == (dir < 0 ? '(' : ')');
		if (open) {
			depth++;
			continue;
		}
		if (close) {
			if (depth == 0)
				break;
			depth--;
			continue;
		}
		if (depth > 0)
			continue;
		if ((x->type == SQL_TOK_PUNCT && (*x->p == ',' || *x->p == ';')) || x->type == SQL_TOK_OP || operand_stop(x))
			break;
	}
	if (dir < 0) {
		*from = i + 1;
		*to = at + 1;
	} else {
		*from = at;
		*to = i;
	}
}

static bool has_vector_literal(const struct sql_token *t, int from, int to)
{
	for (int i = from; i < to; i++)
		if (t[i].type == SQL_TOK_PARAM || t[i].type == SQL_TOK_STRING)
			return true;
	return false;
}

int knn_distance_use(const char *sql, struct knn_distance_use *out)
{
	memset(out, 0, sizeof(*out));
	struct sql_token *t = calloc(1025, sizeof(*t));
	int n = t ? lex_all(sql, t, 1025) : -1;
	int op = -1;
	for (int i = 0; i < n && op < 0; i++)
		if (t[i].type == SQL_TOK_OP && sql_is_vector_operator(t[i].p, t[i].len))
			op = i;
	if (op < 0) {
		free(t);
		return -1;
	}
	snprintf(out->op, sizeof(out->op), "%.3s", t[op].p);
	int lf, lt, rf, rt;
	operand_range(t, n, op - 1, -1, &lf, &lt);
	operand_range(t, n, op + 1, 1, &rf, &rt);
	bool lv = has_vector_literal(t, lf, lt), rv = has_vector_literal(t, rf, rt);
	/* the column side is the one without the query vector ($n or a literal) */
	if (lv != rv) {
		int from = lv ? rf : lf, to = lv ? rt : lt;
		if (to > from && normalize_tokens(t + from, to - from, out->operand, sizeof(out->operand)) < 0)
			out->operand[0] = 0;
	}
	free(t);
	return 0;
}
