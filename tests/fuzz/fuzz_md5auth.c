/*
 * Fuzz md5 authentication: recognising a stored "md5<hex>" secret and
 * checking a client's response against it.  The stored form comes from
 * configuration or pg_shadow, the response from an unauthenticated client;
 * a response must verify exactly when it equals the one computed from the
 * stored hash and the salt.  Input: stored secret, '\n', 4-byte salt, then
 * the client's response.
 */
#include "protocol/md5auth.h"
#include "tests/fuzz/fuzz_util.h"

static bool looks_stored(const char *s)
{
	if (strlen(s) != MD5_PASSWD_LEN || strncmp(s, "md5", 3))
		return false;
	for (int i = 3; i < MD5_PASSWD_LEN; i++)
		if (!strchr("0123456789abcdef", s[i]) || !s[i])
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	size_t sl, saltn, rl;
	const uint8_t *sp = fin_until(&in, '\n', &sl);
	const uint8_t *saltp = fin_take(&in, 4, &saltn);
	uint8_t salt[4] = {0};
	memcpy(salt, saltp, saltn);
	const uint8_t *rp = fin_take(&in, in.len, &rl);
	char *stored = fuzz_strndup(sp, sl), *resp = fuzz_strndup(rp, rl);

	bool is = md5_is_stored(stored);
	FUZZ_CHECK(is == looks_stored(stored));
	bool ok = md5_verify_response(stored, salt, resp);
	if (ok)
		FUZZ_CHECK(is);
	if (is) {
		char want[MD5_PASSWD_LEN + 1];
		md5_response_from_stored(stored, salt, want);
		FUZZ_CHECK(strlen(want) == MD5_PASSWD_LEN && looks_stored(want));
		FUZZ_CHECK(ok == !strcmp(want, resp));
		FUZZ_CHECK(md5_verify_response(stored, salt, want));
	}
	/* hashing a password (the stored form's origin) always gives a stored form */
	char h[MD5_PASSWD_LEN + 1];
	md5_stored_from_password(resp, stored, h);
	FUZZ_CHECK(md5_is_stored(h));
	free(stored);
	free(resp);
	return 0;
}
