/*
 * The libpq TLS keywords of vecgate's side connections
 * (proxy/runtime/pgconn_params.c): tls.server.mode maps to sslmode one to
 * one, the CA goes along only where server.c verifies (verify-ca,
 * verify-full), a client certificate whenever configured, a unix socket
 * host gets sslmode=disable, and the arrays stay NULL-terminated within
 * their size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <libpq-fe.h>

#include "proxy/runtime/pgconn_params.h"

/* The value of keyword k in kw/val (n entries), or NULL. */
static const char *lookup(const char **kw, const char **val, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kw[i], k))
			return val[i];
	return NULL;
}

static void test_modes(void **state)
{
	(void)state;
	static const struct {
		enum vg_server_tls_mode mode;
		const char *sslmode;
		bool rootcert;
	} cases[] = {
		{VG_STLS_DISABLE, "disable", false},     {VG_STLS_PREFER, "prefer", false},
		{VG_STLS_REQUIRE, "require", false},     {VG_STLS_VERIFY_CA, "verify-ca", true},
		{VG_STLS_VERIFY_FULL, "verify-full", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct vg_server_tls t = {.mode = cases[i].mode, .ca_file = "/etc/ca.crt"};
		const char *kw[3 + PGCONN_TLS_MAX + 1] = {"host", "port", "user"};
		const char *val[3 + PGCONN_TLS_MAX + 1] = {"127.0.0.1", "5432", "u"};
		size_t n = pgconn_add_tls(&t, "127.0.0.1", kw, val, 3, sizeof(kw) / sizeof(*kw));
		assert_null(kw[n]);
		assert_null(val[n]);
		assert_string_equal(lookup(kw, val, n, "host"), "127.0.0.1");
		assert_string_equal(lookup(kw, val, n, "sslmode"), cases[i].sslmode);
		if (cases[i].rootcert)
			assert_string_equal(lookup(kw, val, n, "sslrootcert"), "/etc/ca.crt");
		else
			assert_null(lookup(kw, val, n, "sslrootcert"));
		assert_null(lookup(kw, val, n, "sslcert"));
		assert_null(lookup(kw, val, n, "sslkey"));
		/* only a libpq that knows the keyword gets it, and never with disable */
		const char *neg = lookup(kw, val, n, "sslnegotiation");
		if (PQlibVersion() >= 170000 && cases[i].mode != VG_STLS_DISABLE)
			assert_string_equal(neg, "postgres");
		else
			assert_null(neg);
	}
}

static void test_client_certificate(void **state)
{
	(void)state;
	struct vg_server_tls t = {.mode = VG_STLS_REQUIRE, .cert_file = "/c.crt", .key_file = "/c.key"};
	const char *kw[PGCONN_TLS_MAX + 1], *val[PGCONN_TLS_MAX + 1];
	size_t n = pgconn_add_tls(&t, "db.example", kw, val, 0, sizeof(kw) / sizeof(*kw));
	assert_string_equal(lookup(kw, val, n, "sslmode"), "require");
	assert_string_equal(lookup(kw, val, n, "sslcert"), "/c.crt");
	assert_string_equal(lookup(kw, val, n, "sslkey"), "/c.key");
	assert_null(kw[n]);
	/* disable sends no certificate either */
	t.mode = VG_STLS_DISABLE;
	n = pgconn_add_tls(&t, "db.example", kw, val, 0, sizeof(kw) / sizeof(*kw));
	assert_int_equal(n, 1);
	assert_string_equal(val[0], "disable");
}

static void test_unix_socket_is_plaintext(void **state)
{
	(void)state;
	/* server.c never starts TLS on a unix socket; neither do side connections */
	struct vg_server_tls t = {.mode = VG_STLS_VERIFY_FULL, .ca_file = "/ca", .cert_file = "/c", .key_file = "/k"};
	const char *kw[2 + PGCONN_TLS_MAX + 1] = {"host", "port"};
	const char *val[2 + PGCONN_TLS_MAX + 1] = {"/run/postgresql", "5432"};
	size_t n = pgconn_add_tls(&t, "/run/postgresql", kw, val, 2, sizeof(kw) / sizeof(*kw));
	assert_int_equal(n, 3);
	assert_string_equal(kw[2], "sslmode");
	assert_string_equal(val[2], "disable");
	assert_null(kw[3]);
}

static void test_small_array_never_overflows(void **state)
{
	(void)state;
	struct vg_server_tls t = {.mode = VG_STLS_VERIFY_FULL, .ca_file = "/ca", .cert_file = "/c", .key_file = "/k"};
	const char *kw[4] = {"host", "x", "x", "x"}, *val[4] = {"h", "x", "x", "x"};
	size_t n = pgconn_add_tls(&t, "h", kw, val, 1, 3);
	assert_int_equal(n, 2); /* room for one pair and the terminator */
	assert_string_equal(kw[1], "sslmode");
	assert_null(kw[2]);
	assert_string_equal(kw[3], "x"); /* untouched beyond cap */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_client_certificate),
		cmocka_unit_test(test_unix_socket_is_plaintext),
		cmocka_unit_test(test_small_array_never_overflows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
