/*
 * Fuzz the server side of SCRAM-SHA-256: parsing client-first and
 * client-final messages, which arrive from unauthenticated clients.  Besides
 * memory safety, two properties matter: a forged exchange is never verified
 * (a success implies the recovered ClientKey hashes to the stored key), and
 * an honest exchange with any acceptable client nonce always is.
 * Input: u16 length + client-first, u16 length + client-final, then a client
 * nonce for the honest round trip.  The secret and server nonce are fixed so
 * that seed files can carry complete, valid exchanges.
 */
#include "protocol/scram.h"
#include "tests/fuzz/fuzz_util.h"

#include <openssl/evp.h>

#define SERVER_NONCE "3rfcNHYJY1ZVvWVs7j"
#define PASSWORD "pencil"
#define SALT "QSXCR+Q6sek8bf92" /* base64, as in RFC 7677 */
#define ITERATIONS 4096

static struct scram_secret secret;
static uint8_t client_key[SCRAM_KEY_LEN];

static void sha256(const uint8_t *in, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = SCRAM_KEY_LEN;
	FUZZ_CHECK(EVP_Digest(in, len, out, &olen, EVP_sha256(), NULL) == 1);
}

/* A full exchange between vecgate's own client and server code. */
static int honest_exchange(struct scram_client_state *cl, const char *client_nonce, uint8_t key_out[SCRAM_KEY_LEN])
{
	(void)client_nonce;
	char cf[SCRAM_MSG_MAX], sf[SCRAM_MSG_MAX], cfin[SCRAM_MSG_MAX], sfin[SCRAM_MSG_MAX], err[128];
	struct scram_server_state st;
	FUZZ_CHECK(scram_client_first(cl, cf, sizeof(cf)) == 0);
	if (scram_server_first(&st, &secret, cf, strlen(cf), SERVER_NONCE, sf, sizeof(sf), err, sizeof(err)) < 0)
		return -1;
	if (scram_client_final(cl, sf, strlen(sf), cfin, sizeof(cfin), err, sizeof(err)) < 0)
		return -2;
	if (scram_server_final(&st, cfin, strlen(cfin), sfin, sizeof(sfin), err, sizeof(err)) < 0)
		return -3;
	FUZZ_CHECK(st.verified);
	if (scram_client_verify_server(cl, sfin, strlen(sfin), err, sizeof(err)) < 0)
		return -4;
	memcpy(key_out, st.client_key, SCRAM_KEY_LEN);
	return 0;
}

static void init_once(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	uint8_t salt[32];
	int n = vg_b64_decode(SALT, strlen(SALT), salt, sizeof(salt));
	FUZZ_CHECK(n > 0);
	FUZZ_CHECK(scram_make_secret(PASSWORD, salt, (size_t)n, ITERATIONS, &secret) == 0);
	/* learn the ClientKey once with a password login (PBKDF2 is slow) */
	struct scram_client_state cl;
	FUZZ_CHECK(scram_client_init_password(&cl, PASSWORD, "rOprNGfwEbeRWgbNEkqO") == 0);
	FUZZ_CHECK(honest_exchange(&cl, "rOprNGfwEbeRWgbNEkqO", client_key) == 0);
	uint8_t stored[SCRAM_KEY_LEN];
	sha256(client_key, SCRAM_KEY_LEN, stored);
	FUZZ_CHECK(!memcmp(stored, secret.stored_key, SCRAM_KEY_LEN));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	struct fuzz_in in = {data, size};
	size_t cf_len, fin_len, nonce_len;
	const uint8_t *cfp = fin_take(&in, fin_u16(&in), &cf_len);
	const uint8_t *finp = fin_take(&in, fin_u16(&in), &fin_len);
	const uint8_t *noncep = fin_take(&in, in.len, &nonce_len);
	char *cf = (char *)fuzz_memdup(cfp, cf_len), *fin = (char *)fuzz_memdup(finp, fin_len);

	struct scram_server_state st;
	char out[SCRAM_MSG_MAX], err[128];
	size_t outlen = 1 + (cf_len ? (uint8_t)cf[0] : 0) * 8; /* sometimes too small */
	if (outlen > sizeof(out))
		outlen = sizeof(out);
	memset(out, 0x5a, sizeof(out));
	if (scram_server_first(&st, &secret, cf, cf_len, SERVER_NONCE, out, outlen, err, sizeof(err)) == 0) {
		size_t ol = strnlen(out, outlen);
		FUZZ_CHECK(ol < outlen);
		FUZZ_CHECK(!strncmp(out, "r=", 2) && !strcmp(out, st.server_first));
		size_t nl = strlen(st.nonce);
		FUZZ_CHECK(nl > strlen(SERVER_NONCE) && !strcmp(st.nonce + nl - strlen(SERVER_NONCE), SERVER_NONCE));
		FUZZ_CHECK(!strncmp(out + 2, st.nonce, nl) && out[2 + nl] == ',');
		FUZZ_CHECK(memmem(cf, cf_len, st.client_first_bare, strlen(st.client_first_bare)) != NULL);
		FUZZ_CHECK(!memchr(st.nonce, ',', nl));

		char sfin[SCRAM_MSG_MAX];
		int rc = scram_server_final(&st, fin, fin_len, sfin, sizeof(sfin), err, sizeof(err));
		FUZZ_CHECK(st.verified == (rc == 0));
		if (rc == 0) {
			/* only the holder of the ClientKey gets here */
			uint8_t stored[SCRAM_KEY_LEN];
			sha256(st.client_key, SCRAM_KEY_LEN, stored);
			FUZZ_CHECK(!memcmp(stored, secret.stored_key, SCRAM_KEY_LEN));
			FUZZ_CHECK(!memcmp(st.client_key, client_key, SCRAM_KEY_LEN));
			FUZZ_CHECK(!strncmp(sfin, "v=", 2) && strlen(sfin) == 2 + 44);
		}
	} else {
		FUZZ_CHECK(err[0]);
	}

	/* honest round trip with the fuzzed client nonce */
	char nonce[SCRAM_NONCE_MAX + 2];
	size_t nn = nonce_len < sizeof(nonce) - 1 ? nonce_len : sizeof(nonce) - 1;
	memcpy(nonce, noncep, nn);
	nonce[nn] = 0;
	struct scram_client_state cl;
	if (scram_client_init_keys(&cl, client_key, secret.server_key, nonce) == 0) {
		size_t nl = strlen(nonce); /* the input may hold a NUL */
		bool acceptable = nl > 0 && nl <= SCRAM_NONCE_MAX;
		for (size_t i = 0; i < nl; i++)
			if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',')
				acceptable = false;
		FUZZ_CHECK(acceptable);
		uint8_t got[SCRAM_KEY_LEN];
		int rc = honest_exchange(&cl, nonce, got);
		if (rc != 0)
			fprintf(stderr, "honest exchange with nonce '%s' failed at step %d\n", nonce, -rc);
		FUZZ_CHECK(rc == 0 && !memcmp(got, client_key, SCRAM_KEY_LEN));
	}
	free(cf);
	free(fin);
	return 0;
}
