/*
 * Session variables that must follow a client from one pooled server to the
 * next: the startup parameters applications send (client_encoding, DateStyle,
 * application_name, ...) and what the server reports back.  Before a server
 * runs a client's statements, the difference becomes one SET/RESET batch.
 */
#include "proxy/varcache.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const var_names[VAR_COUNT] = {
	[VAR_CLIENT_ENCODING] = "client_encoding",
	[VAR_DATESTYLE] = "DateStyle",
	[VAR_TIMEZONE] = "TimeZone",
	[VAR_INTERVALSTYLE] = "IntervalStyle",
	[VAR_STANDARD_CONFORMING_STRINGS] = "standard_conforming_strings",
	[VAR_APPLICATION_NAME] = "application_name",
	[VAR_EXTRA_FLOAT_DIGITS] = "extra_float_digits",
	[VAR_SEARCH_PATH] = "search_path",
	[VAR_STATEMENT_TIMEOUT] = "statement_timeout",
};

int varcache_lookup(const char *name)
{
	for (int i = 0; i < VAR_COUNT; i++)
		if (strcasecmp(var_names[i], name) == 0)
			return i;
	return -1;
}

const char *varcache_name(int idx)
{
	return var_names[idx];
}

void varcache_set(struct varcache *vc, int idx, const char *value)
{
	if (vc->val[idx] && value && strcmp(vc->val[idx], value) == 0)
		return;
	free(vc->val[idx]);
	vc->val[idx] = value ? strdup(value) : NULL;
}

void varcache_copy(struct varcache *dst, const struct varcache *src)
{
	for (int i = 0; i < VAR_COUNT; i++)
		varcache_set(dst, i, src->val[i]);
}

void varcache_clear(struct varcache *vc)
{
	for (int i = 0; i < VAR_COUNT; i++) {
		free(vc->val[i]);
		vc->val[i] = NULL;
	}
}

static bool same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void put_literal(struct pg_buf *sql, const char *v)
{
	buf_put_byte(sql, '\'');
	for (const char *p = v; *p; p++) {
		if (*p == '\'')
			buf_put_byte(sql, '\'');
		buf_put_byte(sql, (uint8_t)*p);
	}
	buf_put_byte(sql, '\'');
}

int varcache_sync_sql(const struct varcache *client, struct varcache *server, struct pg_buf *sql)
{
	int n = 0;
	for (int i = 0; i < VAR_COUNT; i++) {
		const char *cv = client->val[i];
		if (same(cv, server->val[i]))
			continue;
		const char *name = var_names[i];
		if (cv) {
			buf_put_bytes(sql, "SET ", 4);
			buf_put_bytes(sql, name, strlen(name));
			buf_put_bytes(sql, " = ", 3);
			put_literal(sql, cv);
		} else {
			buf_put_bytes(sql, "RESET ", 6);
			buf_put_bytes(sql, name, strlen(name));
		}
		buf_put_bytes(sql, "; ", 2);
		varcache_set(server, i, cv);
		n++;
	}
	return n;
}
