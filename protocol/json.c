/*
 * JSON both ways without a library: the admin API writes its answers
 * (commas and escaping handled by the writer, NaN as null) and reads the
 * small bodies it accepts; vecgatectl reads the API's answers.  Pure code
 * over strings, so the fuzzer can drive the reader.
 */
#include "protocol/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_init(struct json *j)
{
	memset(j, 0, sizeof(*j));
}

void json_free(struct json *j)
{
	free(j->buf);
	memset(j, 0, sizeof(*j));
}

static void put(struct json *j, const char *s, size_t n)
{
	if (j->len + n + 1 > j->cap) {
		size_t nc = j->cap ? j->cap * 2 : 512;
		while (nc < j->len + n + 1)
			nc *= 2;
		char *nb = realloc(j->buf, nc);
		if (!nb)
			return;
		j->buf = nb;
		j->cap = nc;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = 0;
}

static void puts_(struct json *j, const char *s)
{
	put(j, s, strlen(s));
}

static void put_escaped(struct json *j, const char *s)
{
	put(j, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(j, esc, 2);
		} else if (c == '\n') {
			put(j, "\\n", 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(j, esc, 6);
		} else {
			put(j, (const char *)&c, 1);
		}
	}
	put(j, "\"", 1);
}

static void prefix(struct json *j, const char *key)
{
	if (j->depth > 0 && j->need_comma[j->depth])
		put(j, ",", 1);
	if (j->depth > 0)
		j->need_comma[j->depth] = true;
	if (key) {
		put_escaped(j, key);
		put(j, ":", 1);
	}
}

static void open_container(struct json *j, const char *key, const char *bracket)
{
	prefix(j, key);
	put(j, bracket, 1);
	if (j->depth < 31)
		j->need_comma[++j->depth] = false;
}

static void close_container(struct json *j, const char *bracket)
{
	put(j, bracket, 1);
	if (j->depth > 0)
		j->depth--;
}

void json_obj_begin(struct json *j, const char *key)
{
	open_container(j, key, "{");
}

void json_obj_end(struct json *j)
{
	close_container(j, "}");
}

void json_arr_begin(struct json *j, const char *key)
{
	open_container(j, key, "[");
}

void json_arr_end(struct json *j)
{
	close_container(j, "]");
}

void json_str(struct json *j, const char *key, const char *v)
{
	prefix(j, key);
	if (v)
		put_escaped(j, v);
	else
		puts_(j, "null");
}

void json_num(struct json *j, const char *key, double v)
{
	prefix(j, key);
	if (isnan(v) || isinf(v)) {
		puts_(j, "null");
		return;
	}
	char b[64];
	snprintf(b, sizeof(b), "%.6g", v);
	puts_(j, b);
}

void json_int(struct json *j, const char *key, long long v)
{
	prefix(j, key);
	char b[32];
	snprintf(b, sizeof(b), "%lld", v);
	puts_(j, b);
}

void json_bool(struct json *j, const char *key, bool v)
{
	prefix(j, key);
	puts_(j, v ? "true" : "false");
}

/* ---- reading ---- */

struct jparser {
	const char *p;
	int depth;
};

static void skip_ws(struct jparser *jp)
{
	while (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\r' || *jp->p == '\t')
		jp->p++;
}

static char *parse_string(struct jparser *jp)
{
	if (*jp->p != '"')
		return NULL;
	jp->p++;
	size_t cap = 32, len = 0;
	char *out = malloc(cap);
	while (out && *jp->p && *jp->p != '"') {
		char c = *jp->p++;
		if (c == '\\') {
			char e = *jp->p++;
			switch (e) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4 && *jp->p; i++, jp->p++) {
					char h = *jp->p;
					v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
				}
				c = v < 0x80 ? (char)v : '?';
				break;
			}
			case 0: free(out); return NULL;
			default: c = e; break;
			}
		}
		if (len + 2 > cap) {
			char *n = realloc(out, cap *= 2);
			if (!n) {
				free(out);
				return NULL;
			}
			out = n;
		}
		out[len++] = c;
	}
	if (!out || *jp->p != '"') {
		free(out);
		return NULL;
	}
	jp->p++;
	out[len] = 0;
	return out;
}

static struct jnode *parse_value(struct jparser *jp)
{
	skip_ws(jp);
	if (++jp->depth > 64)
		return NULL;
	struct jnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	char c = *jp->p;
	if (c == '{' || c == '[') {
		n->type = c == '{' ? J_OBJ : J_ARR;
		jp->p++;
		struct jnode **tail = &n->child;
		skip_ws(jp);
		if (*jp->p == (c == '{' ? '}' : ']')) {
			jp->p++;
			jp->depth--;
			return n;
		}
		for (;;) {
			char *key = NULL;
			if (n->type == J_OBJ) {
				skip_ws(jp);
				if (!(key = parse_string(jp)))
					goto bad;
				skip_ws(jp);
				if (*jp->p++ != ':') {
					free(key);
					goto bad;
				}
			}
			struct jnode *v = parse_value(jp);
			if (!v) {
				free(key);
				goto bad;
			}
			v->key = key;
			*tail = v;
			tail = &v->next;
			skip_ws(jp);
			if (*jp->p == ',') {
				jp->p++;
				continue;
			}
			if (*jp->p == (n->type == J_OBJ ? '}' : ']')) {
				jp->p++;
				break;
			}
			goto bad;
		}
	} else if (c == '"') {
		n->type = J_STR;
		if (!(n->str = parse_string(jp)))
			goto bad;
	} else if (!strncmp(jp->p, "true", 4) || !strncmp(jp->p, "false", 5)) {
		n->type = J_BOOL;
		n->b = *jp->p == 't';
		jp->p += n->b ? 4 : 5;
	} else if (!strncmp(jp->p, "null", 4)) {
		n->type = J_NULL;
		jp->p += 4;
	} else {
		char *end;
		n->type = J_NUM;
		n->num = strtod(jp->p, &end);
		if (end == jp->p)
			goto bad;
		jp->p = end;
	}
	jp->depth--;
	return n;
bad:
	json_node_free(n);
	return NULL;
}

struct jnode *json_parse(const char *text)
{
	struct jparser jp = {text, 0};
	struct jnode *n = parse_value(&jp);
	if (!n)
		return NULL;
	skip_ws(&jp);
	if (*jp.p) {
		json_node_free(n);
		return NULL;
	}
	return n;
}

void json_node_free(struct jnode *n)
{
	while (n) {
		struct jnode *next = n->next;
		json_node_free(n->child);
		free(n->key);
		free(n->str);
		free(n);
		n = next;
	}
}

const struct jnode *json_get(const struct jnode *n, const char *path)
{
	while (n && *path) {
		size_t len = strcspn(path, ".");
		if (n->type != J_OBJ)
			return NULL;
		const struct jnode *c = n->child;
		while (c && !(c->key && strlen(c->key) == len && !strncmp(c->key, path, len)))
			c = c->next;
		n = c;
		path += len;
		if (*path == '.')
			path++;
	}
	return n;
}

const char *json_get_str(const struct jnode *n, const char *path)
{
	const struct jnode *v = json_get(n, path);
	return v && v->type == J_STR ? v->str : NULL;
}

bool json_get_bool(const struct jnode *n, const char *path)
{
	const struct jnode *v = json_get(n, path);
	return v && v->type == J_BOOL && v->b;
}

double json_get_num(const struct jnode *n, const char *path)
{
	const struct jnode *v = json_get(n, path);
	return v && v->type == J_NUM ? v->num : NAN;
}
