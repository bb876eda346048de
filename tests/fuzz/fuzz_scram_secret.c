/*
 * Fuzz the SCRAM secret parser and the base64 codec under it.  Secrets come
 * from the config file and, with auth_query, from pg_authid rows of the
 * backend; a secret that parses must format back to a secret that parses to
 * the same keys, or logins would silently break after a reload.
 * Input: the secret text (also used raw as base64 and as bytes to encode).
 */
#include "protocol/scram.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct scram_secret s;
	char err[128] = "";
	if (scram_parse_secret(text, &s, err, sizeof(err)) == 0) {
		FUZZ_CHECK(s.iterations > 0 && s.salt_len > 0 && s.salt_len <= SCRAM_MAX_SALT);
		char buf[512];
		FUZZ_CHECK(scram_format_secret(&s, buf, sizeof(buf)) == 0);
		struct scram_secret t;
		FUZZ_CHECK(scram_parse_secret(buf, &t, err, sizeof(err)) == 0);
		FUZZ_CHECK(t.iterations == s.iterations && t.salt_len == s.salt_len &&
		           !memcmp(t.salt, s.salt, s.salt_len) && !memcmp(t.stored_key, s.stored_key, SCRAM_KEY_LEN) &&
		           !memcmp(t.server_key, s.server_key, SCRAM_KEY_LEN));
		/* a buffer one byte short is refused, not overrun */
		size_t need = strlen(buf) + 1;
		char *small = malloc(need - 1);
		FUZZ_CHECK(small && scram_format_secret(&s, small, need - 1) == -1);
		free(small);
	} else {
		FUZZ_CHECK(err[0]);
	}

	/* decode: output length bounded by the input and the buffer */
	size_t dstlen = size % 97;
	uint8_t *dst = malloc(dstlen + 1);
	FUZZ_CHECK(dst);
	int n = vg_b64_decode(text, size, dst, dstlen);
	FUZZ_CHECK(n == -1 || ((size_t)n <= dstlen && (size_t)n <= size / 4 * 3));
	if (n >= 0) {
		/* re-encoding decodes to the same bytes */
		char enc[200];
		int m = vg_b64_encode(dst, (size_t)n, enc, sizeof(enc));
		FUZZ_CHECK(m >= 0 && (size_t)m == size); /* padding is exact, so the length is too */
		uint8_t back[150];
		FUZZ_CHECK(vg_b64_decode(enc, (size_t)m, back, sizeof(back)) == n && !memcmp(back, dst, (size_t)n));
	}
	free(dst);

	/* encode the raw bytes: exact length, round trip */
	size_t take = size < 300 ? size : 300;
	size_t need = (take + 2) / 3 * 4;
	char *enc = malloc(need + 1);
	FUZZ_CHECK(enc);
	FUZZ_CHECK(vg_b64_encode(data, take, enc, need) == -1); /* no room for the NUL */
	FUZZ_CHECK(vg_b64_encode(data, take, enc, need + 1) == (int)need && strlen(enc) == need);
	uint8_t *back = malloc(take + 1);
	FUZZ_CHECK(back && vg_b64_decode(enc, need, back, take) == (int)take && !memcmp(back, data, take));
	free(back);
	free(enc);
	free(text);
	return 0;
}
