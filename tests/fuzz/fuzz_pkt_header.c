/*
 * Fuzz the framing of the PostgreSQL wire protocol.  Every byte a client or
 * server sends passes pkt_peek_header / pkt_peek_startup before anything else
 * looks at it, so a wrong length here desynchronises or overreads the whole
 * connection.  The input is a limit followed by a byte stream: the stream is
 * split into messages the way the proxy does it, and each message body is
 * walked with the pg_reader primitives in an order chosen by the body itself.
 */
#include "protocol/pgproto.h"
#include "tests/fuzz/fuzz_util.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_header(const uint8_t *buf, size_t avail, size_t max_len)
{
	uint8_t type = 0xa5;
	uint32_t total = 0xdeadbeef;
	enum pkt_status st = pkt_peek_header(buf, avail, max_len, &type, &total);
	/* outputs are always written (callers print them in error messages) */
	FUZZ_CHECK(type == (avail ? buf[0] : 0));
	if (st == PKT_NEED_MORE) {
		FUZZ_CHECK(avail < PG_HDR_LEN);
		FUZZ_CHECK(total == 0);
		return;
	}
	FUZZ_CHECK(avail >= PG_HDR_LEN);
	uint32_t len = be32(buf + 1);
	FUZZ_CHECK(total == (len == UINT32_MAX ? UINT32_MAX : len + 1));
	switch (st) {
	case PKT_OK:
		FUZZ_CHECK(len >= 4 && len <= max_len && len < 0x7fffffffu);
		FUZZ_CHECK(total >= PG_HDR_LEN);
		break;
	case PKT_BAD_LENGTH:
		FUZZ_CHECK(len < 4);
		break;
	case PKT_TOO_LARGE:
		FUZZ_CHECK(len >= 4 && (len > max_len || len >= 0x7fffffffu));
		break;
	default:
		FUZZ_CHECK(0);
	}
}

static void check_startup(const uint8_t *buf, size_t avail, size_t max_len)
{
	uint32_t total = 0xdeadbeef;
	enum pkt_status st = pkt_peek_startup(buf, avail, max_len, &total);
	if (st == PKT_NEED_MORE) {
		FUZZ_CHECK(avail < 4 && total == 0);
		return;
	}
	FUZZ_CHECK(avail >= 4);
	uint32_t len = be32(buf);
	FUZZ_CHECK(total == len);
	FUZZ_CHECK(st == PKT_OK ? len >= 8 && len <= max_len
	                        : st == PKT_BAD_LENGTH ? len < 8 : st == PKT_TOO_LARGE && len >= 8 && len > max_len);
}

/* Read a body with the reader primitives, ops taken from the body bytes. */
static void walk_body(const uint8_t *body, size_t len)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	for (size_t step = 0; step < 64; step++) {
		size_t before = rd.pos;
		bool was_err = rd.err;
		uint8_t op = step < len ? body[step] % 6 : (uint8_t)(step % 6);
		switch (op) {
		case 0: (void)rd_byte(&rd); break;
		case 1: (void)rd_int16(&rd); break;
		case 2: (void)rd_int32(&rd); break;
		case 3: {
			const char *s = rd_str(&rd);
			if (!rd.err) {
				FUZZ_CHECK(fuzz_str_inside(s, body, len));
				FUZZ_CHECK(rd.pos == before + strlen(s) + 1);
			} else {
				FUZZ_CHECK(s[0] == 0);
			}
			break;
		}
		case 4: {
			size_t n = step < len ? body[step] % 9 : 3;
			const uint8_t *b = rd_bytes(&rd, n);
			if (b) {
				FUZZ_CHECK(!rd.err && b == body + before && before + n <= len);
			}
			break;
		}
		default: {
			size_t r = rd_remaining(&rd);
			FUZZ_CHECK(rd.err ? r == 0 : r == len - rd.pos);
			break;
		}
		}
		FUZZ_CHECK(rd.pos <= len);
		if (was_err)
			FUZZ_CHECK(rd.err && rd.pos == before); /* errors are sticky */
		if (rd.err && rd.pos != before)
			FUZZ_CHECK(0); /* a failed read never moves */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	/* the limit the caller configured (limits.max_message_size) */
	size_t max_len = be32(data);
	data += 4;
	size -= 4;
	uint8_t *buf = fuzz_memdup(data, size);
	for (size_t avail = 0; avail <= size && avail <= 8; avail++) {
		check_header(buf, avail, max_len);
		check_startup(buf, avail, max_len);
	}
	/* a stream of regular messages, as the proxy frames it */
	size_t off = 0;
	while (off < size) {
		uint8_t type;
		uint32_t total;
		check_header(buf + off, size - off, max_len);
		if (pkt_peek_header(buf + off, size - off, max_len, &type, &total) != PKT_OK)
			break;
		if (total > size - off)
			break; /* the proxy waits for more */
		walk_body(buf + off + PG_HDR_LEN, total - PG_HDR_LEN);
		off += total;
	}
	free(buf);
	return 0;
}
