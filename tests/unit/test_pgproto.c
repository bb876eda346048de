/*
 * Unit tests for protocol/pgproto: framing over partial and coalesced reads,
 * every parser against truncated and malformed bodies, and builders round-
 * tripping through the parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/pgproto.h"

/* A framer as the proxy uses it: bytes arrive in arbitrary chunks, whole
 * messages are cut off the front of the accumulated buffer. */
struct framer {
	uint8_t buf[4096];
	size_t len;
	uint8_t types[64];
	uint32_t lens[64];
	int n;
	int errors;
};

static void framer_feed(struct framer *f, const uint8_t *p, size_t n)
{
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	for (;;) {
		uint8_t type;
		uint32_t total;
		enum pkt_status st = pkt_peek_header(f->buf, f->len, 1024, &type, &total);
		if (st == PKT_NEED_MORE)
			return;
		if (st != PKT_OK) {
			f->errors++;
			return;
		}
		if (f->len < total)
			return;
		f->types[f->n] = type;
		f->lens[f->n] = total;
		f->n++;
		memmove(f->buf, f->buf + total, f->len - total);
		f->len -= total;
	}
}

static size_t make_stream(struct pg_buf *b)
{
	build_query(b, "SELECT 1");
	build_parse_named(b, "s1", (const uint8_t *)"SELECT $1\0\0\0", 12);
	build_empty(b, 'S');
	build_ready(b, 'I');
	build_error(b, "ERROR", "42601", "syntax error", "detail here", NULL);
	return b->len;
}

static void test_framing_chunked(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	size_t n = make_stream(&b);
	/* every chunk size from 1 byte to the whole stream gives the same cut */
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct framer f = {0};
		for (size_t off = 0; off < n; off += chunk) {
			size_t k = n - off < chunk ? n - off : chunk;
			framer_feed(&f, b.data + off, k);
		}
		assert_int_equal(f.errors, 0);
		assert_int_equal(f.n, 5);
		assert_int_equal(f.len, 0);
		assert_int_equal(f.types[0], 'Q');
		assert_int_equal(f.lens[0], 1 + 4 + 9);
		assert_int_equal(f.types[1], 'P');
		assert_int_equal(f.types[2], 'S');
		assert_int_equal(f.lens[2], 5);
		assert_int_equal(f.types[3], 'Z');
		assert_int_equal(f.lens[3], 6);
		assert_int_equal(f.types[4], 'E');
	}
	buf_free(&b);
}

static void test_framing_limits(void **state)
{
	(void)state;
	uint8_t type;
	uint32_t total;
	const uint8_t short_len[] = {'Q', 0, 0, 0, 3};
	assert_int_equal(pkt_peek_header(short_len, 5, 1024, &type, &total), PKT_BAD_LENGTH);
	const uint8_t big[] = {'Q', 0, 0, 0x10, 0};
	assert_int_equal(pkt_peek_header(big, 5, 1024, &type, &total), PKT_TOO_LARGE);
	assert_int_equal(pkt_peek_header(big, 5, 1 << 20, &type, &total), PKT_OK);
	assert_int_equal(total, 4097);
	const uint8_t huge[] = {'d', 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(pkt_peek_header(huge, 5, 0xffffffffu, &type, &total), PKT_TOO_LARGE);
	assert_int_equal(pkt_peek_header(big, 4, 1024, &type, &total), PKT_NEED_MORE);
	const uint8_t st[] = {0, 0, 0, 7};
	assert_int_equal(pkt_peek_startup(st, 4, 10000, &total), PKT_BAD_LENGTH);
	const uint8_t st2[] = {0, 1, 0, 0};
	assert_int_equal(pkt_peek_startup(st2, 4, 10000, &total), PKT_TOO_LARGE);
	assert_int_equal(pkt_peek_startup(st2, 3, 10000, &total), PKT_NEED_MORE);
}

/* Regression: for a message over the limit pkt_peek_header returned without
 * setting *total, and the proxy printed that uninitialised length in its
 * "message too large" error.  Both outputs are now always written. */
static void test_framing_outputs_always_set(void **state)
{
	(void)state;
	uint8_t type = 0;
	uint32_t total = 12345;
	const uint8_t big[] = {'Q', 0, 0x10, 0, 0};
	assert_int_equal(pkt_peek_header(big, 5, 1024, &type, &total), PKT_TOO_LARGE);
	assert_int_equal(type, 'Q');
	assert_int_equal(total, 0x100001u);
	const uint8_t huge[] = {'d', 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(pkt_peek_header(huge, 5, 1024, &type, &total), PKT_TOO_LARGE);
	assert_int_equal(total, UINT32_MAX);
	const uint8_t short_len[] = {'Q', 0, 0, 0, 3};
	assert_int_equal(pkt_peek_header(short_len, 5, 1024, &type, &total), PKT_BAD_LENGTH);
	assert_int_equal(total, 4u);
	total = 12345;
	assert_int_equal(pkt_peek_header(big, 2, 1024, &type, &total), PKT_NEED_MORE);
	assert_int_equal(total, 0u);
	const uint8_t st[] = {0, 1, 0, 0};
	total = 12345;
	assert_int_equal(pkt_peek_startup(st, 4, 10000, &total), PKT_TOO_LARGE);
	assert_int_equal(total, 65536u);
}

static void test_startup_parse(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	const char *names[] = {"user", "database", "application_name"};
	const char *values[] = {"alice", "app", "psql"};
	build_startup(&b, names, values, 3);
	struct startup_packet sp;
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_NORMAL);
	assert_string_equal(sp.user, "alice");
	assert_string_equal(sp.database, "app");
	assert_string_equal(startup_get(&sp, "application_name"), "psql");
	assert_null(startup_get(&sp, "nope"));

	/* database defaults to the user */
	buf_reset(&b);
	build_startup(&b, names, values, 1);
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_NORMAL);
	assert_string_equal(sp.database, "alice");

	/* no user */
	buf_reset(&b);
	build_startup(&b, names + 1, values + 1, 1);
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);

	/* missing final terminator */
	buf_reset(&b);
	build_startup(&b, names, values, 2);
	b.data[3] = (uint8_t)(b.len - 1);
	startup_parse(b.data, b.len - 1, &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);

	/* length word disagrees with the packet */
	buf_reset(&b);
	build_startup(&b, names, values, 2);
	startup_parse(b.data, b.len - 2, &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);

	/* name without value */
	const uint8_t novalue[] = {0, 0, 0, 14, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 0};
	startup_parse(novalue, sizeof(novalue), &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);

	/* SSL, GSS, cancel, wrong version */
	buf_reset(&b);
	build_ssl_request(&b);
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_SSL);
	const uint8_t gss[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
	startup_parse(gss, 8, &sp);
	assert_int_equal(sp.kind, STARTUP_GSSENC);
	buf_reset(&b);
	build_cancel(&b, 1234, 0xdeadbeef);
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_CANCEL);
	assert_int_equal(sp.cancel_pid, 1234);
	assert_int_equal(sp.cancel_key, 0xdeadbeef);
	startup_parse(b.data, 12, &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);
	const uint8_t v2[] = {0, 0, 0, 9, 0, 2, 0, 0, 0};
	startup_parse(v2, sizeof(v2), &sp);
	assert_int_equal(sp.kind, STARTUP_BAD_VERSION);
	buf_free(&b);
}

static void test_startup_too_many_params(void **state)
{
	(void)state;
	const char *names[STARTUP_MAX_PARAMS + 1], *values[STARTUP_MAX_PARAMS + 1];
	char nb[STARTUP_MAX_PARAMS + 1][8];
	for (int i = 0; i <= STARTUP_MAX_PARAMS; i++) {
		snprintf(nb[i], sizeof(nb[i]), "p%d", i);
		names[i] = i == 0 ? "user" : nb[i];
		values[i] = "x";
	}
	struct pg_buf b;
	buf_init(&b);
	build_startup(&b, names, values, STARTUP_MAX_PARAMS + 1);
	struct startup_packet sp;
	startup_parse(b.data, b.len, &sp);
	assert_int_equal(sp.kind, STARTUP_MALFORMED);
	buf_free(&b);
}

static void test_error_roundtrip(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, "FATAL", "28P01", "password authentication failed", NULL, "check it");
	struct pg_error_fields ef;
	assert_int_equal(parse_error_fields(b.data + 5, b.len - 5, &ef), 0);
	assert_string_equal(ef.severity, "FATAL");
	assert_string_equal(ef.sqlstate, "28P01");
	assert_string_equal(ef.message, "password authentication failed");
	assert_string_equal(ef.hint, "check it");
	assert_null(ef.detail);
	/* every truncation fails cleanly */
	for (size_t cut = 0; cut < b.len - 5; cut++)
		assert_int_equal(parse_error_fields(b.data + 5, cut, &ef), -1);
	buf_free(&b);
}

static void test_auth_request_parse(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	uint8_t salt[4] = {1, 2, 3, 4};
	build_auth(&b, 5, salt, 4);
	struct pg_auth_request ar;
	assert_int_equal(parse_auth_request(b.data + 5, b.len - 5, &ar), 0);
	assert_int_equal(ar.code, 5);
	assert_memory_equal(ar.md5_salt, salt, 4);
	assert_int_equal(parse_auth_request(b.data + 5, 6, &ar), -1);
	buf_reset(&b);
	build_auth_sasl(&b);
	assert_int_equal(parse_auth_request(b.data + 5, b.len - 5, &ar), 0);
	assert_true(ar.offers_scram);
	assert_int_equal(parse_auth_request(b.data + 5, b.len - 7, &ar), -1);
	buf_reset(&b);
	build_auth(&b, 11, "r=abc", 5);
	assert_int_equal(parse_auth_request(b.data + 5, b.len - 5, &ar), 0);
	assert_int_equal(ar.data_len, 5);
	assert_memory_equal(ar.data, "r=abc", 5);
	assert_int_equal(parse_auth_request(b.data + 5, 2, &ar), -1);
	buf_free(&b);
}

static void test_extended_parsers(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	const uint8_t tail[] = "SELECT $1\0\0\1\0\0\0\x17";
	build_parse_named(&b, "stmt_a", tail, sizeof(tail) - 1);
	const char *name;
	const uint8_t *t;
	size_t tl;
	assert_int_equal(parse_parse_msg(b.data + 5, b.len - 5, &name, &t, &tl), 0);
	assert_string_equal(name, "stmt_a");
	assert_int_equal(tl, sizeof(tail) - 1);
	assert_memory_equal(t, tail, tl);
	/* no NUL after the name, no query, no param count */
	assert_int_equal(parse_parse_msg((const uint8_t *)"abc", 3, &name, &t, &tl), -1);
	assert_int_equal(parse_parse_msg((const uint8_t *)"a\0q", 3, &name, &t, &tl), -1);
	assert_int_equal(parse_parse_msg((const uint8_t *)"a\0q\0\0", 5, &name, &t, &tl), -1);

	buf_reset(&b);
	const uint8_t btail[] = "\0\0\0\1\0\0\0\1x\0\0";
	build_bind_named(&b, "p1", "stmt_a", btail, sizeof(btail) - 1);
	const char *portal;
	assert_int_equal(parse_bind_msg(b.data + 5, b.len - 5, &portal, &name, &t, &tl), 0);
	assert_string_equal(portal, "p1");
	assert_string_equal(name, "stmt_a");
	assert_int_equal(tl, sizeof(btail) - 1);
	assert_int_equal(parse_bind_msg((const uint8_t *)"p\0s", 3, &portal, &name, &t, &tl), -1);
	/* the allocation-free form writes the same bytes */
	uint8_t direct[64];
	assert_int_equal(bind_named_size(2, 6, sizeof(btail) - 1), b.len);
	put_bind_named(direct, "p1", 2, "stmt_a", 6, btail, sizeof(btail) - 1);
	assert_memory_equal(direct, b.data, b.len);
	memset(direct, 0, sizeof(direct));
	size_t head = put_bind_named_head(direct, "p1", 2, "stmt_a", 6, sizeof(btail) - 1);
	assert_int_equal(head, bind_named_size(2, 6, 0));
	assert_memory_equal(direct, b.data, head); /* the tail follows from where it is */

	/* Bind parameters: one format code for all, then one per parameter */
	const uint8_t bt1[] = "\0\1\0\0\0\2\0\0\0\3abc\0\0\0\2xy";
	const uint8_t *val;
	int32_t vlen;
	int fmt;
	assert_int_equal(bind_param(bt1, sizeof(bt1) - 1, 2, &val, &vlen, &fmt), 0);
	assert_int_equal(vlen, 2);
	assert_memory_equal(val, "xy", 2);
	assert_int_equal(fmt, 0);
	assert_int_equal(bind_param(bt1, sizeof(bt1) - 1, 3, &val, &vlen, &fmt), -1);
	assert_int_equal(bind_param(bt1, sizeof(bt1) - 1, 0, &val, &vlen, &fmt), -1);
	const uint8_t bt2[] = "\0\2\0\0\0\1\0\2\xff\xff\xff\xff\0\0\0\4\0\1\0\0";
	assert_int_equal(bind_param(bt2, sizeof(bt2) - 1, 1, &val, &vlen, &fmt), 0);
	assert_int_equal(vlen, -1);
	assert_int_equal(bind_param(bt2, sizeof(bt2) - 1, 2, &val, &vlen, &fmt), 0);
	assert_int_equal(vlen, 4);
	assert_int_equal(fmt, 1);
	/* truncated value, format count that does not match */
	assert_int_equal(bind_param(bt2, sizeof(bt2) - 3, 2, &val, &vlen, &fmt), -1);
	const uint8_t bt3[] = "\0\2\0\0\0\0\0\3\0\0\0\0\0\0\0\0\0\0\0\0";
	assert_int_equal(bind_param(bt3, sizeof(bt3) - 1, 1, &val, &vlen, &fmt), -1);
	const uint8_t bt4[] = "\0\0\0\1\xff\xff\xff\xf0";
	assert_int_equal(bind_param(bt4, sizeof(bt4) - 1, 1, &val, &vlen, &fmt), -1); /* length below -1 */

	buf_reset(&b);
	build_describe_close(&b, 'D', 'S', "stmt_a");
	char kind;
	assert_int_equal(parse_describe_close(b.data + 5, b.len - 5, &kind, &name), 0);
	assert_int_equal(kind, 'S');
	assert_string_equal(name, "stmt_a");
	assert_int_equal(describe_close_size(6), b.len);
	put_describe_close(direct, 'D', 'S', "stmt_a", 6);
	assert_memory_equal(direct, b.data, b.len);
	assert_int_equal(parse_describe_close((const uint8_t *)"Xname\0", 6, &kind, &name), -1);
	assert_int_equal(parse_describe_close((const uint8_t *)"Sname", 5, &kind, &name), -1);
	assert_int_equal(parse_describe_close((const uint8_t *)"Sname\0x", 7, &kind, &name), -1);
	assert_int_equal(parse_describe_close((const uint8_t *)"", 0, &kind, &name), -1);

	const uint8_t *data;
	size_t dlen;
	const char *mech;
	buf_reset(&b);
	build_sasl_initial(&b, "SCRAM-SHA-256", "n,,n=,r=abc", 11);
	assert_int_equal(parse_sasl_initial(b.data + 5, b.len - 5, &mech, &data, &dlen), 0);
	assert_string_equal(mech, "SCRAM-SHA-256");
	assert_int_equal(dlen, 11);
	/* declared length longer than the body */
	b.data[5 + 14 + 3] = 200;
	assert_int_equal(parse_sasl_initial(b.data + 5, b.len - 5, &mech, &data, &dlen), -1);
	buf_free(&b);
}

static void test_parameter_status(void **state)
{
	(void)state;
	struct pg_buf b;
	buf_init(&b);
	build_parameter_status(&b, "client_encoding", "UTF8");
	const char *n, *v;
	assert_int_equal(parse_parameter_status(b.data + 5, b.len - 5, &n, &v), 0);
	assert_string_equal(n, "client_encoding");
	assert_string_equal(v, "UTF8");
	assert_int_equal(parse_parameter_status(b.data + 5, b.len - 6, &n, &v), -1);
	assert_int_equal(parse_parameter_status((const uint8_t *)"a\0b\0c", 5, &n, &v), -1);
	buf_free(&b);
}

static void test_reader_bounds(void **state)
{
	(void)state;
	struct pg_reader rd;
	const uint8_t d[] = {0, 1, 0, 0, 0, 2, 'x'};
	rd_init(&rd, d, sizeof(d));
	assert_int_equal(rd_int16(&rd), 1);
	assert_int_equal(rd_int32(&rd), 2);
	assert_false(rd.err);
	assert_string_equal(rd_str(&rd), "");
	assert_true(rd.err);
	assert_int_equal(rd_int32(&rd), 0);
	assert_int_equal(rd_remaining(&rd), 0);
}

static void test_response_completes(void **state)
{
	(void)state;
	assert_true(response_completes('P', '1'));
	assert_false(response_completes('P', '2'));
	assert_true(response_completes('D', 'T'));
	assert_true(response_completes('D', 'n'));
	assert_false(response_completes('D', 't'));
	assert_true(response_completes('E', 'C'));
	assert_true(response_completes('E', 's'));
	assert_true(response_completes('E', 'I'));
	assert_false(response_completes('Q', 'C'));
	assert_true(response_completes('Q', 'Z'));
	assert_true(response_completes('S', 'Z'));
	assert_false(response_completes('H', 'Z'));
}

/* A failover's errors (shutdown, lost connection, read-only) are told
 * apart from a statement's own failure. */
static void test_sqlstate_server_outage(void **state)
{
	(void)state;
	const char *outage[] = {"57P01", "57P02", "57P03", "08006", "08001", "25006", "53300"};
	const char *statement[] = {"42P01", "57014", "40001", "23505", "XX000", "53200", ""};
	for (size_t i = 0; i < sizeof(outage) / sizeof(*outage); i++)
		assert_true(pg_sqlstate_server_outage(outage[i]));
	for (size_t i = 0; i < sizeof(statement) / sizeof(*statement); i++)
		assert_false(pg_sqlstate_server_outage(statement[i]));
	assert_false(pg_sqlstate_server_outage(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing_chunked),
		cmocka_unit_test(test_framing_limits),
		cmocka_unit_test(test_framing_outputs_always_set),
		cmocka_unit_test(test_startup_parse),
		cmocka_unit_test(test_startup_too_many_params),
		cmocka_unit_test(test_error_roundtrip),
		cmocka_unit_test(test_auth_request_parse),
		cmocka_unit_test(test_extended_parsers),
		cmocka_unit_test(test_parameter_status),
		cmocka_unit_test(test_reader_bounds),
		cmocka_unit_test(test_response_completes),
		cmocka_unit_test(test_sqlstate_server_outage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
