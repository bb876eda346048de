/*
 * Fuzz the parsers for the server messages vecgate looks inside:
 * ErrorResponse/NoticeResponse fields, ParameterStatus and Authentication
 * requests.  These bytes come from backends (or from anything pretending to
 * be one when TLS is off) and their fields end up in logs, client errors and
 * the SCRAM exchange, so every returned pointer must stay inside the body and
 * what parses must rebuild into the same bytes with the builders.
 * Input: one selector byte, then the message body.
 */
#include "protocol/pgproto.h"
#include "tests/fuzz/fuzz_util.h"

/* The body of the single message in b (after type byte and length word). */
static const uint8_t *built_body(const struct pg_buf *b, size_t *len)
{
	FUZZ_CHECK(!b->oom && b->len >= PG_HDR_LEN);
	uint8_t type;
	uint32_t total;
	FUZZ_CHECK(pkt_peek_header(b->data, b->len, 0x7ffffff0u, &type, &total) == PKT_OK);
	FUZZ_CHECK(total == b->len);
	*len = b->len - PG_HDR_LEN;
	return b->data + PG_HDR_LEN;
}

static void error_fields(const uint8_t *body, size_t len)
{
	struct pg_error_fields f;
	if (parse_error_fields(body, len, &f) < 0)
		return;
	const char *all[] = {f.severity, f.sqlstate, f.message, f.detail, f.hint};
	for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
		if (all[i])
			FUZZ_CHECK(fuzz_str_inside(all[i], body, len));
	if (!f.severity || !f.sqlstate || !f.message)
		return;
	/* what vecgate relays: the same fields rebuilt must parse the same */
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, f.severity, f.sqlstate, f.message, f.detail, f.hint);
	size_t blen;
	const uint8_t *bb = built_body(&b, &blen);
	struct pg_error_fields g;
	FUZZ_CHECK(parse_error_fields(bb, blen, &g) == 0);
	FUZZ_CHECK(!strcmp(g.severity, f.severity) && !strcmp(g.sqlstate, f.sqlstate) && !strcmp(g.message, f.message));
	FUZZ_CHECK(!f.detail == !g.detail && (!f.detail || !strcmp(f.detail, g.detail)));
	FUZZ_CHECK(!f.hint == !g.hint && (!f.hint || !strcmp(f.hint, g.hint)));
	buf_free(&b);
}

static void parameter_status(const uint8_t *body, size_t len)
{
	const char *name, *value;
	if (parse_parameter_status(body, len, &name, &value) < 0)
		return;
	FUZZ_CHECK(fuzz_str_inside(name, body, len) && fuzz_str_inside(value, body, len));
	struct pg_buf b;
	buf_init(&b);
	build_parameter_status(&b, name, value);
	size_t blen;
	const uint8_t *bb = built_body(&b, &blen);
	FUZZ_CHECK(blen == len && !memcmp(bb, body, len));
	buf_free(&b);
}

static void auth_request(const uint8_t *body, size_t len)
{
	struct pg_auth_request r;
	if (parse_auth_request(body, len, &r) < 0)
		return;
	FUZZ_CHECK(len >= 4);
	if (r.code == 11 || r.code == 12) {
		FUZZ_CHECK(r.data == body + 4 && r.data_len == len - 4);
		struct pg_buf b;
		buf_init(&b);
		build_auth(&b, r.code, r.data, r.data_len);
		size_t blen;
		const uint8_t *bb = built_body(&b, &blen);
		FUZZ_CHECK(blen == len && !memcmp(bb, body, len));
		buf_free(&b);
	} else {
		FUZZ_CHECK(r.data == NULL && r.data_len == 0);
	}
	if (r.code == 5)
		FUZZ_CHECK(len >= 8 && !memcmp(r.md5_salt, body + 4, 4));
	if (r.offers_scram)
		FUZZ_CHECK(r.code == 10);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	uint8_t *body = fuzz_memdup(data + 1, size - 1);
	size_t len = size - 1;
	switch (sel) {
	case 'E':
	case 'N': error_fields(body, len); break;
	case 'S': parameter_status(body, len); break;
	case 'R': auth_request(body, len); break;
	default:
		error_fields(body, len);
		parameter_status(body, len);
		auth_request(body, len);
		break;
	}
	free(body);
	return 0;
}
