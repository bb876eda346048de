/*
 * Fuzz the DDL guard: classify a statement and check it against managed
 * objects, with message and hint buffers of fuzzer-chosen (often tiny) sizes.
 * The guard runs on every DDL statement a client sends, and the text it
 * writes goes back to the client in an ErrorResponse, so it must never write
 * past the buffers and its verdict must follow the configured mode.
 * Input: mode byte, buffer-size byte, then the SQL text.
 */
#include "routing/classify.h"
#include "routing/ddl_guard.h"
#include "tests/fuzz/fuzz_util.h"

#define CANARY 0x5a

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	enum guard_mode mode = (enum guard_mode)(fin_byte(&in) % 3);
	size_t buflen = 1 + fin_byte(&in) % 200;
	char *sql = (char *)fuzz_memdup(in.p, in.len);
	struct sql_class c;
	sql_classify(sql, in.len, &c);

	/* managed objects, including one named like whatever the statement targets */
	char tname[SQL_NAME_MAX];
	snprintf(tname, sizeof(tname), "%s", strrchr(c.ddl_target, '.') ? strrchr(c.ddl_target, '.') + 1 : c.ddl_target);
	const struct guard_target targets[] = {
		{"items", "public", "items", "items_embedding_idx"},
		{"docs", "app", "docs", "docs_ivf"},
		{"fuzzed", "public", tname, tname},
	};
	char *msg = malloc(buflen + 8), *hint = malloc(buflen + 8);
	FUZZ_CHECK(msg && hint);
	memset(msg, CANARY, buflen + 8);
	memset(hint, CANARY, buflen + 8);
	enum guard_verdict v = ddl_guard_check(&c, targets, 3, mode, msg, buflen, hint, buflen);
	for (size_t i = buflen; i < buflen + 8; i++)
		FUZZ_CHECK(msg[i] == CANARY && hint[i] == CANARY);
	FUZZ_CHECK(memchr(msg, 0, buflen) && memchr(hint, 0, buflen));

	FUZZ_CHECK(v == GUARD_PASS || v == GUARD_WARNED || v == GUARD_BLOCKED);
	if (mode == GUARD_MODE_ALLOW || !c.ddl)
		FUZZ_CHECK(v == GUARD_PASS);
	if (v == GUARD_BLOCKED)
		FUZZ_CHECK(mode == GUARD_MODE_BLOCK);
	if (v == GUARD_WARNED)
		FUZZ_CHECK(mode == GUARD_MODE_WARN);
	if (v != GUARD_PASS) {
		FUZZ_CHECK(c.ddl_kind == DDL_REINDEX || c.ddl_kind == DDL_DROP_INDEX ||
		           c.ddl_kind == DDL_DROP_INDEX_CONCURRENTLY || c.ddl_kind == DDL_CREATE_INDEX);
		if (buflen > 1)
			FUZZ_CHECK(msg[0] && hint[0]); /* the client is told why */
	}
	/* concurrent forms of REINDEX and CREATE INDEX are never refused */
	if (c.ddl_kind == DDL_REINDEX_CONCURRENTLY || c.ddl_kind == DDL_CREATE_INDEX_CONCURRENTLY)
		FUZZ_CHECK(v == GUARD_PASS);
	free(msg);
	free(hint);
	free(sql);
	return 0;
}
