/*
 * Fuzz the startup packet parser.  It runs before authentication, on bytes
 * from anyone who can reach the listen port, and its parameter pointers are
 * used for pool lookup and logging: they must stay inside the packet and be
 * terminated there.  A packet accepted as a normal startup must also be
 * exactly what build_startup produces from the parsed parameters, so parse
 * and build agree about the format.
 */
#include "protocol/pgproto.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *pkt = fuzz_memdup(data, size);
	struct startup_packet sp;
	startup_parse(pkt, size, &sp);
	FUZZ_CHECK(sp.kind >= STARTUP_NORMAL && sp.kind <= STARTUP_MALFORMED);
	FUZZ_CHECK(sp.n_params >= 0 && sp.n_params <= STARTUP_MAX_PARAMS);
	if (sp.kind == STARTUP_MALFORMED)
		FUZZ_CHECK(sp.error && sp.error[0]);

	uint32_t total;
	enum pkt_status ps = pkt_peek_startup(pkt, size, 0xffffffffu, &total);
	if (sp.kind != STARTUP_MALFORMED)
		FUZZ_CHECK(ps == PKT_OK && total == size); /* the framing agrees on the length */

	struct pg_buf b;
	buf_init(&b);
	switch (sp.kind) {
	case STARTUP_NORMAL: {
		FUZZ_CHECK(sp.n_params >= 1);
		FUZZ_CHECK(sp.user && sp.user[0] && sp.database && sp.database[0]);
		FUZZ_CHECK(fuzz_str_inside(sp.user, pkt, size) && fuzz_str_inside(sp.database, pkt, size));
		const char *names[STARTUP_MAX_PARAMS], *values[STARTUP_MAX_PARAMS];
		for (int i = 0; i < sp.n_params; i++) {
			FUZZ_CHECK(fuzz_str_inside(sp.params[i].name, pkt, size));
			FUZZ_CHECK(fuzz_str_inside(sp.params[i].value, pkt, size));
			FUZZ_CHECK(sp.params[i].name[0]);
			/* lookup returns the first parameter of that name */
			const char *v = startup_get(&sp, sp.params[i].name);
			int first = 0;
			while (strcmp(sp.params[first].name, sp.params[i].name))
				first++;
			FUZZ_CHECK(v == sp.params[first].value);
			names[i] = sp.params[i].name;
			values[i] = sp.params[i].value;
		}
		if (sp.version == PG_PROTO_V3) {
			build_startup(&b, names, values, sp.n_params);
			FUZZ_CHECK(!b.oom && b.len == size && !memcmp(b.data, pkt, size));
		}
		break;
	}
	case STARTUP_CANCEL:
		FUZZ_CHECK(size == 16);
		build_cancel(&b, sp.cancel_pid, sp.cancel_key);
		FUZZ_CHECK(!b.oom && b.len == size && !memcmp(b.data, pkt, size));
		break;
	case STARTUP_SSL:
		FUZZ_CHECK(size == 8 && sp.version == PG_SSL_REQUEST);
		build_ssl_request(&b);
		FUZZ_CHECK(!b.oom && b.len == size && !memcmp(b.data, pkt, size));
		break;
	case STARTUP_GSSENC:
		FUZZ_CHECK(size == 8 && sp.version == PG_GSSENC_REQUEST);
		break;
	case STARTUP_BAD_VERSION:
		FUZZ_CHECK((sp.version >> 16) != 3);
		break;
	case STARTUP_MALFORMED:
		break;
	}
	buf_free(&b);
	free(pkt);
	return 0;
}
