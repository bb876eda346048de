/*
 * JSON output for the admin API.  Only writing is needed: requests carry
 * their few parameters in the path and query string.
 */
#include "proxy/json.h"

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

void json_obj_begin(struct json *j, const char *key)
{
	prefix(j, key);
	put(j, "{", 1);
	if (j->depth < 31)
		j->need_comma[++j->depth] = false;
}

void json_obj_end(struct json *j)
{
	put(j, "}", 1);
	if (j->depth > 0)
		j->depth--;
}

void json_arr_begin(struct json *j, const char *key)
{
	prefix(j, key);
	put(j, "[", 1);
	if (j->depth < 31)
		j->need_comma[++j->depth] = false;
}

void json_arr_end(struct json *j)
{
	put(j, "]", 1);
	if (j->depth > 0)
		j->depth--;
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
