/*
 * The admin layer's Prometheus label escaping (proxy/admin/metrics.c,
 * prom_label_value): a label value holding a backslash, a double quote or
 * a newline is written as \\, \" and \n, so a database, user, backend or
 * index name can never break the exposition format or forge a sample.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/admin/views.h"

/* The escaped text of `value`, malloc'd. */
static char *escaped(const char *value)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	prom_label_value(b, value);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	assert_non_null(s);
	evbuffer_remove(b, s, n);
	s[n] = 0;
	evbuffer_free(b);
	return s;
}

static void check(const char *value, const char *want)
{
	char *got = escaped(value);
	assert_string_equal(got, want);
	free(got);
}

static void test_plain_values_unchanged(void **state)
{
	(void)state;
	check("", "");
	check("app", "app");
	check("items_hnsw", "items_hnsw");
	check("VG001", "VG001");
	check("ünïcode 名前 'single' {braces} = ,", "ünïcode 名前 'single' {braces} = ,");
}

static void test_special_characters(void **state)
{
	(void)state;
	check("\\", "\\\\");
	check("\"", "\\\"");
	check("\n", "\\n");
	check("a\"b", "a\\\"b");
	check("db\\name", "db\\\\name");
	check("line1\nline2", "line1\\nline2");
	/* every kind, adjacent, at both ends */
	check("\"\\\n", "\\\"\\\\\\n");
	check("\nx\"} 1\nforged{a=\"", "\\nx\\\"} 1\\nforged{a=\\\"");
	/* a carriage return or tab is legal in a label value and stays as it is */
	check("a\tb\rc", "a\tb\rc");
}

static void test_escaped_value_has_no_raw_specials(void **state)
{
	(void)state;
	char *got = escaped("we\"ird\\na\nme\"");
	assert_null(strchr(got, '\n'));
	/* every quote is preceded by a backslash that is not itself escaped */
	for (const char *p = got; *p; p++) {
		if (*p == '\\') {
			assert_true(p[1] == '\\' || p[1] == '"' || p[1] == 'n');
			p++;
		} else {
			assert_true(*p != '"');
		}
	}
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_values_unchanged),
		cmocka_unit_test(test_special_characters),
		cmocka_unit_test(test_escaped_value_has_no_raw_specials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
