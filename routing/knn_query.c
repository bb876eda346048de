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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 64

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
	if (!accept_word(c, "order") || !accept_word(c, "by")) {
		refuse(c, "expected ORDER BY (a WHERE clause, join or other clause needs per-query ground truth)");
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
	char rel[420], id[200], vec[200];
	knn_relation(q, rel, sizeof(rel));
	quote_ident(q->id_column, id, sizeof(id));
	quote_ident(q->vector_column, vec, sizeof(vec));
	int n = snprintf(out, outlen, "COPY (SELECT %s, %s FROM %s) TO STDOUT (FORMAT binary)", id, vec, rel);
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
