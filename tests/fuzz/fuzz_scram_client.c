/*
 * Fuzz the client side of SCRAM-SHA-256: parsing server-first and
 * server-final, which come from backends vecgate logs into.  A malicious or
 * broken server must not make the proxy overflow its message buffers, and a
 * server-final is accepted only if it carries exactly the signature the
 * client expects.  The client runs from stored keys (as in SCRAM
 * passthrough) so that a fuzzed iteration count never triggers PBKDF2.
 * Input: u16 length + server-first, then the server-final.
 */
#include "protocol/scram.h"
#include "tests/fuzz/fuzz_util.h"

#define CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t ck[SCRAM_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	                                          17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	static const uint8_t sk[SCRAM_KEY_LEN] = {32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
	                                          16, 15, 14, 13, 12, 11, 10, 9,  8,  7,  6,  5,  4,  3,  2,  1};
	struct fuzz_in in = {data, size};
	size_t sf_len, sfin_len;
	const uint8_t *sfp = fin_take(&in, fin_u16(&in), &sf_len);
	const uint8_t *sfinp = fin_take(&in, in.len, &sfin_len);
	char *sf = (char *)fuzz_memdup(sfp, sf_len), *sfin = (char *)fuzz_memdup(sfinp, sfin_len);

	struct scram_client_state cl;
	FUZZ_CHECK(scram_client_init_keys(&cl, ck, sk, CLIENT_NONCE) == 0);
	char first[SCRAM_MSG_MAX], out[SCRAM_MSG_MAX], err[128];
	FUZZ_CHECK(scram_client_first(&cl, first, sizeof(first)) == 0);
	FUZZ_CHECK(!strcmp(first, "n,,n=,r=" CLIENT_NONCE));
	size_t outlen = 1 + (sf_len ? (uint8_t)sf[sf_len - 1] : 0) * 4;
	if (outlen > sizeof(out))
		outlen = sizeof(out);
	int rc = scram_client_final(&cl, sf, sf_len, out, outlen, err, sizeof(err));
	if (rc == 0) {
		FUZZ_CHECK(strnlen(out, outlen) < outlen);
		FUZZ_CHECK(!strncmp(out, "c=biws,r=" CLIENT_NONCE, 9 + strlen(CLIENT_NONCE)));
		const char *p = strstr(out, ",p=");
		FUZZ_CHECK(p && strlen(p + 3) == 44 && !strchr(p + 3, ','));
		/* the nonce echoed is the server's, which extends ours */
		FUZZ_CHECK(memmem(sf, sf_len, out + 7, (size_t)(p - out - 7)) != NULL);
		FUZZ_CHECK(strlen(cl.server_first) == sf_len && !memcmp(cl.server_first, sf, sf_len));

		rc = scram_client_verify_server(&cl, sfin, sfin_len, err, sizeof(err));
		if (rc == 0) {
			/* accepted: "v=" and 44 base64 characters that decode to exactly
			 * the expected signature (non-canonical padding bits decode the same) */
			uint8_t sig[SCRAM_KEY_LEN + 4];
			FUZZ_CHECK(sfin_len >= 46 && !memcmp(sfin, "v=", 2));
			FUZZ_CHECK(vg_b64_decode(sfin + 2, 44, sig, sizeof(sig)) == SCRAM_KEY_LEN);
			FUZZ_CHECK(!memcmp(sig, cl.expected_server_sig, SCRAM_KEY_LEN));
			FUZZ_CHECK(sfin_len == 46 || sfin[46] == ',');
		} else {
			FUZZ_CHECK(err[0]);
		}
		/* and the right signature is always accepted */
		char good[64] = "v=";
		vg_b64_encode(cl.expected_server_sig, SCRAM_KEY_LEN, good + 2, sizeof(good) - 2);
		FUZZ_CHECK(scram_client_verify_server(&cl, good, strlen(good), err, sizeof(err)) == 0);
	} else {
		FUZZ_CHECK(err[0]);
	}
	free(sf);
	free(sfin);
	return 0;
}
