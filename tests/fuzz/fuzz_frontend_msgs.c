/*
 * Fuzz the parsers for the client messages vecgate rewrites: SASL initial
 * response, Parse, Bind, Describe and Close.  In transaction pooling the proxy
 * renames prepared statements by re-building these messages from the parsed
 * pieces, so besides staying in bounds a parse followed by a build with the
 * same name must give back the original bytes; anything else would corrupt
 * the client's extended-protocol traffic.
 * Input: one selector byte, then the message body.
 */
#include "protocol/pgproto.h"
#include "tests/fuzz/fuzz_util.h"

static void expect_same(struct pg_buf *b, uint8_t type, const uint8_t *body, size_t len)
{
	FUZZ_CHECK(!b->oom && b->len == len + PG_HDR_LEN);
	uint8_t t;
	uint32_t total;
	FUZZ_CHECK(pkt_peek_header(b->data, b->len, 0x7ffffff0u, &t, &total) == PKT_OK);
	FUZZ_CHECK(t == type && total == b->len);
	FUZZ_CHECK(!memcmp(b->data + PG_HDR_LEN, body, len));
	buf_free(b);
}

static void sasl_initial(const uint8_t *body, size_t len)
{
	const char *mech;
	const uint8_t *d;
	size_t dlen;
	if (parse_sasl_initial(body, len, &mech, &d, &dlen) < 0)
		return;
	FUZZ_CHECK(fuzz_str_inside(mech, body, len));
	struct pg_buf b;
	buf_init(&b);
	if (d) {
		FUZZ_CHECK(d >= body && d + dlen == body + len);
		build_sasl_initial(&b, mech, (const char *)d, dlen);
		expect_same(&b, 'p', body, len);
	} else {
		FUZZ_CHECK(dlen == 0 && len == strlen(mech) + 1 + 4);
	}
}

static void parse_msg(const uint8_t *body, size_t len)
{
	const char *stmt;
	const uint8_t *tail;
	size_t tail_len;
	if (parse_parse_msg(body, len, &stmt, &tail, &tail_len) < 0)
		return;
	FUZZ_CHECK(fuzz_str_inside(stmt, body, len));
	FUZZ_CHECK(tail == body + strlen(stmt) + 1 && tail + tail_len == body + len);
	FUZZ_CHECK(tail_len >= 3 && memchr(tail, 0, tail_len)); /* query string + parameter count */
	struct pg_buf b;
	buf_init(&b);
	build_parse_named(&b, stmt, tail, tail_len);
	expect_same(&b, 'P', body, len);
}

static void bind_msg(const uint8_t *body, size_t len)
{
	const char *portal, *stmt;
	const uint8_t *tail;
	size_t tail_len;
	if (parse_bind_msg(body, len, &portal, &stmt, &tail, &tail_len) < 0)
		return;
	FUZZ_CHECK(fuzz_str_inside(portal, body, len) && fuzz_str_inside(stmt, body, len));
	FUZZ_CHECK(tail + tail_len == body + len && tail >= body);
	/* the traffic sampler reads one parameter: inside the message, or refused */
	for (int n = 1; n <= 3; n++) {
		const uint8_t *val;
		int32_t vlen;
		int fmt;
		if (bind_param(tail, tail_len, n, &val, &vlen, &fmt) < 0)
			continue;
		FUZZ_CHECK(vlen >= -1);
		if (vlen > 0)
			FUZZ_CHECK(val >= tail && val + vlen <= tail + tail_len);
	}
	struct pg_buf b;
	buf_init(&b);
	build_bind_named(&b, portal, stmt, tail, tail_len);
	expect_same(&b, 'B', body, len);
}

static void describe_close(const uint8_t *body, size_t len, uint8_t type)
{
	char kind;
	const char *name;
	if (parse_describe_close(body, len, &kind, &name) < 0)
		return;
	FUZZ_CHECK(kind == 'S' || kind == 'P');
	FUZZ_CHECK(fuzz_str_inside(name, body, len));
	struct pg_buf b;
	buf_init(&b);
	build_describe_close(&b, type, kind, name);
	expect_same(&b, type, body, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	uint8_t *body = fuzz_memdup(data + 1, size - 1);
	size_t len = size - 1;
	switch (sel) {
	case 'p': sasl_initial(body, len); break;
	case 'P': parse_msg(body, len); break;
	case 'B': bind_msg(body, len); break;
	case 'D':
	case 'C': describe_close(body, len, sel); break;
	default:
		sasl_initial(body, len);
		parse_msg(body, len);
		bind_msg(body, len);
		describe_close(body, len, 'D');
		break;
	}
	/* which backend message ends a request: a pure table, any pair is fine */
	(void)response_completes(sel, len ? body[0] : 0);
	free(body);
	return 0;
}
