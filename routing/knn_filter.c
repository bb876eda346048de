/*
 * Bind a filtered eval query's WHERE clause to typed constants and apply it
 * to the rows of the exact scan.  Every reading of a value follows the
 * server's input function for the column's type closely enough that a
 * value is either read to the same constant or refused (then per-query
 * ground truth asks the server itself).
 */
#include "routing/knn_filter.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int knn_coltype_of(const char *column, unsigned type_oid, const char *type_name, bool deterministic,
                   enum knn_coltype *out, char *why, size_t whylen)
{
	static const struct {
		unsigned oid;
		enum knn_coltype t;
	} known[] = {{21, KNN_COL_INT2}, {23, KNN_COL_INT4}, {20, KNN_COL_INT8},   {700, KNN_COL_FLOAT4},
	             {701, KNN_COL_FLOAT8}, {16, KNN_COL_BOOL}, {25, KNN_COL_TEXT}, {1043, KNN_COL_TEXT},
	             {19, KNN_COL_TEXT},    {2950, KNN_COL_UUID}};
	for (size_t i = 0; i < sizeof(known) / sizeof(*known); i++) {
		if (known[i].oid != type_oid)
			continue;
		if (known[i].t == KNN_COL_TEXT && !deterministic) {
			snprintf(why, whylen, "filter column %s has a nondeterministic collation (its = is not byte for byte)",
			         column);
			return -1;
		}
		*out = known[i].t;
		return 0;
	}
	snprintf(why, whylen, "filter column %s is of type %s; one pass reads integer, real, boolean, text and uuid "
	         "filter columns", column, type_name && *type_name ? type_name : "?");
	return -1;
}

/* leading and trailing white space, as the input functions allow */
static void trim(const char **s, size_t *n)
{
	while (*n && isspace((unsigned char)**s))
		(*s)++, (*n)--;
	while (*n && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* s without its surrounding white space, into buf: false when empty or too long */
static bool trimmed(const char *s, char *buf, size_t buflen, size_t *n)
{
	*n = strlen(s);
	trim(&s, n);
	if (!*n || *n >= buflen)
		return false;
	memcpy(buf, s, *n);
	buf[*n] = 0;
	return true;
}

static bool read_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char buf[32];
	size_t n;
	if (!trimmed(s, buf, sizeof(buf), &n))
		return false;
	for (size_t i = buf[0] == '-' || buf[0] == '+'; i < n; i++)
		if (!isdigit((unsigned char)buf[i]))
			return false;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || end == buf || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool read_float(const char *s, bool single, double *out)
{
	char buf[128];
	size_t n;
	if (!trimmed(s, buf, sizeof(buf), &n))
		return false;
	char *end;
	errno = 0;
	double v = single ? (double)strtof(buf, &end) : strtod(buf, &end);
	if (end == buf || *end || errno == ERANGE) /* the server refuses a value out of range */
		return false;
	*out = v;
	return true;
}

/* boolin: a prefix of true/false/yes/no, on/off (two letters at least), 1/0 */
static bool read_bool(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	trim(&s, &n);
	static const struct {
		const char *word;
		size_t min;
		int value;
	} words[] = {{"true", 1, 1}, {"false", 1, 0}, {"yes", 1, 1}, {"no", 1, 0}, {"on", 2, 1}, {"off", 2, 0},
	             {"1", 1, 1},    {"0", 1, 0}};
	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++) {
		if (n >= words[i].min && n <= strlen(words[i].word) && !strncasecmp(s, words[i].word, n)) {
			*out = words[i].value;
			return true;
		}
	}
	return false;
}

static int hexval(char c)
{
	return isdigit((unsigned char)c) ? c - '0' : isxdigit((unsigned char)c) ? (tolower((unsigned char)c) - 'a' + 10) : -1;
}

/* uuid_in: 32 hex digits, optionally in braces, a '-' allowed after each group of four */
static bool read_uuid(const char *s, uint8_t *out)
{
	size_t n = strlen(s);
	trim(&s, &n);
	bool braces = n && s[0] == '{';
	if (braces) {
		if (n < 2 || s[n - 1] != '}')
			return false;
		s++;
		n -= 2;
	}
	size_t digits = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '-') {
			if (digits == 0 || digits % 4 || digits == 32 || i + 1 == n || s[i + 1] == '-')
				return false;
			continue;
		}
		int v = hexval(s[i]);
		if (v < 0 || digits == 32)
			return false;
		if (digits % 2 == 0)
			out[digits / 2] = (uint8_t)(v << 4);
		else
			out[digits / 2] |= (uint8_t)v;
		digits++;
	}
	return digits == 32;
}

static bool has_point(const char *s)
{
	return strpbrk(s, ".eE") != NULL;
}

/* One value of term t as a constant of type ty. */
static int bind_value(const struct knn_value *v, enum knn_coltype ty, const char *const *params, int n_params,
                      struct knn_cell *out, const char *column, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	const char *text = v->text;
	if (v->kind == KNN_V_PARAM) {
		if (v->param >= n_params || !params[v->param]) {
			snprintf(why, whylen, "no value for $%d", v->param);
			return -1;
		}
		text = params[v->param];
	}
	static const int64_t lo[] = {-32768, -2147483648LL, INT64_MIN}, hi[] = {32767, 2147483647LL, INT64_MAX};
	bool ok = false;
	switch (ty) {
	case KNN_COL_INT2:
	case KNN_COL_INT4:
	case KNN_COL_INT8:
		/* a number literal is int4, int8 or numeric by itself: an integer
		 * of either compares as such; anything else is numeric */
		if (v->kind == KNN_V_NUMBER)
			ok = !has_point(text) && read_int(text, INT64_MIN, INT64_MAX, &out->i);
		else if (v->kind != KNN_V_BOOL)
			ok = read_int(text, lo[ty - KNN_COL_INT2], hi[ty - KNN_COL_INT2], &out->i);
		break;
	case KNN_COL_FLOAT4:
	case KNN_COL_FLOAT8:
		/* float4 = <number literal> compares in double precision (float48) */
		if (v->kind != KNN_V_BOOL)
			ok = read_float(text, ty == KNN_COL_FLOAT4 && v->kind != KNN_V_NUMBER, &out->d);
		break;
	case KNN_COL_BOOL:
		if (v->kind != KNN_V_NUMBER)
			ok = read_bool(text, &out->i);
		break;
	case KNN_COL_TEXT:
		if (v->kind == KNN_V_STRING || v->kind == KNN_V_PARAM) {
			out->s = text;
			out->len = strlen(text);
			ok = true;
		}
		break;
	case KNN_COL_UUID:
		if (v->kind == KNN_V_STRING || v->kind == KNN_V_PARAM)
			ok = read_uuid(text, out->uuid);
		break;
	}
	if (!ok) {
		snprintf(why, whylen, "the filter compares column %s with %s%.40s%s, which one pass cannot read as the "
		         "column's type", column, v->kind == KNN_V_STRING ? "'" : "", text, v->kind == KNN_V_STRING ? "'" : "");
		return -1;
	}
	return 0;
}

int knn_filter_bind(const struct knn_filter *f, const enum knn_coltype *types, const char *const *params,
                    int n_params, struct knn_bound *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	out->filter = f;
	for (int c = 0; c < f->n_columns; c++)
		out->types[c] = types[c];
	for (int t = 0; t < f->n_terms; t++) {
		const struct knn_term *term = &f->terms[t];
		enum knn_coltype ty = types[term->column];
		const char *column = f->columns[term->column];
		bool ordering = term->cmp != KNN_EQ && term->cmp != KNN_IN && term->cmp != KNN_IS_NULL &&
		                term->cmp != KNN_IS_NOT_NULL;
		if (ty == KNN_COL_TEXT && ordering) {
			snprintf(why, whylen, "a range on text column %s depends on its collation", column);
			return -1;
		}
		for (int i = term->first; i < term->first + term->n_values; i++)
			if (bind_value(&f->values[i], ty, params, n_params, &out->consts[i], column, why, whylen) < 0)
				return -1;
	}
	return 0;
}

static int64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return n == 8 ? (int64_t)v : n == 4 ? (int32_t)(uint32_t)v : (int16_t)(uint16_t)v;
}

int knn_cell_decode(enum knn_coltype t, const uint8_t *p, int32_t len, struct knn_cell *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 0) {
		out->null = true;
		return 0;
	}
	switch (t) {
	case KNN_COL_INT2:
	case KNN_COL_INT4:
	case KNN_COL_INT8:
		if (len != 2 && len != 4 && len != 8)
			return -1;
		out->i = be(p, len);
		return 0;
	case KNN_COL_FLOAT4: {
		if (len != 4)
			return -1;
		uint32_t u = (uint32_t)be(p, 4);
		float f;
		memcpy(&f, &u, 4);
		out->d = f;
		return 0;
	}
	case KNN_COL_FLOAT8: {
		if (len != 8)
			return -1;
		uint64_t u = (uint64_t)be(p, 8);
		memcpy(&out->d, &u, 8);
		return 0;
	}
	case KNN_COL_BOOL:
		if (len != 1)
			return -1;
		out->i = p[0] != 0;
		return 0;
	case KNN_COL_TEXT:
		out->s = (const char *)p;
		out->len = (size_t)len;
		return 0;
	case KNN_COL_UUID:
		if (len != 16)
			return -1;
		memcpy(out->uuid, p, 16);
		return 0;
	}
	return -1;
}

/* <0, 0, >0 as PostgreSQL orders the two (NaN equal to NaN, after every number) */
static int compare(enum knn_coltype t, const struct knn_cell *a, const struct knn_cell *b)
{
	switch (t) {
	case KNN_COL_FLOAT4:
	case KNN_COL_FLOAT8:
		if (isnan(a->d))
			return isnan(b->d) ? 0 : 1;
		if (isnan(b->d))
			return -1;
		return a->d < b->d ? -1 : a->d > b->d;
	case KNN_COL_TEXT:
		assert(false); /* only equality: bound that way */
		return 1;
	case KNN_COL_UUID:
		return memcmp(a->uuid, b->uuid, 16);
	default:
		return a->i < b->i ? -1 : a->i > b->i;
	}
}

static bool equal(enum knn_coltype t, const struct knn_cell *a, const struct knn_cell *b)
{
	if (t == KNN_COL_TEXT)
		return a->len == b->len && !memcmp(a->s, b->s, a->len);
	return compare(t, a, b) == 0;
}

bool knn_filter_match(const struct knn_bound *b, const struct knn_cell *cells)
{
	const struct knn_filter *f = b->filter;
	for (int t = 0; t < f->n_terms; t++) {
		const struct knn_term *term = &f->terms[t];
		const struct knn_cell *x = &cells[term->column];
		const struct knn_cell *k = &b->consts[term->first];
		enum knn_coltype ty = b->types[term->column];
		bool pass = false;
		if (term->cmp == KNN_IS_NULL || term->cmp == KNN_IS_NOT_NULL) {
			pass = x->null == (term->cmp == KNN_IS_NULL);
		} else if (!x->null) {
			switch (term->cmp) {
			case KNN_EQ: pass = equal(ty, x, k); break;
			case KNN_LT: pass = compare(ty, x, k) < 0; break;
			case KNN_LE: pass = compare(ty, x, k) <= 0; break;
			case KNN_GT: pass = compare(ty, x, k) > 0; break;
			case KNN_GE: pass = compare(ty, x, k) >= 0; break;
			case KNN_BETWEEN: pass = compare(ty, x, &k[0]) >= 0 && compare(ty, x, &k[1]) <= 0; break;
			case KNN_IN:
				for (int i = 0; i < term->n_values && !pass; i++)
					pass = equal(ty, x, &k[i]);
				break;
			case KNN_IS_NULL:
			case KNN_IS_NOT_NULL: break;
			}
		}
		if (!pass)
			return false;
	}
	return true;
}
