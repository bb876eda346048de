/*
 * SCRAM-SHA-256 message handling for both sides of a PostgreSQL login
 * (RFC 5802, RFC 7677), without channel binding.  Inputs are (pointer,
 * length) pairs straight from the wire and are validated before use; nonces
 * come from the caller so that exchanges can be replayed in tests.
 */
#include "protocol/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return -1;
}

/* ---- base64 ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int vg_b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstlen)
{
	size_t need = ((len + 2) / 3) * 4;
	if (dstlen < need + 1)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)src[i + 1] << 8;
		if (i + 2 < len)
			v |= src[i + 2];
		dst[o++] = b64chars[(v >> 18) & 63];
		dst[o++] = b64chars[(v >> 12) & 63];
		dst[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		dst[o++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	dst[o] = 0;
	return (int)o;
}

static int b64val(char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;
	return p ? (int)(p - b64chars) : -1;
}

int vg_b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstlen)
{
	if (len % 4 != 0)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			char c = src[i + k];
			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad) {
				return -1; /* data after padding */
			} else if ((v[k] = b64val(c)) < 0) {
				return -1;
			}
		}
		uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
		uint8_t bytes[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
		for (int k = 0; k < 3 - pad; k++) {
			if (o >= dstlen)
				return -1;
			dst[o++] = bytes[k];
		}
	}
	return (int)o;
}

/* ---- primitives ---- */

static void hmac(const uint8_t *key, size_t klen, const void *msg, size_t mlen, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = SCRAM_KEY_LEN;
	HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen);
}

static void sha256(const uint8_t *in, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = SCRAM_KEY_LEN;
	EVP_Digest(in, len, out, &olen, EVP_sha256(), NULL);
}

static void keys_from_password(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                               uint8_t client_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iterations, EVP_sha256(),
	                  SCRAM_KEY_LEN, salted);
	hmac(salted, sizeof(salted), "Client Key", 10, client_key);
	hmac(salted, sizeof(salted), "Server Key", 10, server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
}

/* Copy a wire message into a NUL-terminated buffer, refusing embedded NULs. */
static int take_msg(const char *in, size_t len, char *out, size_t outlen)
{
	if (len == 0 || len >= outlen || memchr(in, 0, len))
		return -1;
	memcpy(out, in, len);
	out[len] = 0;
	return 0;
}

static bool printable_nonce(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* "k=value" at *p; advances *p past the value and a following ','. */
static const char *attr(const char **p, char key, size_t *vlen)
{
	const char *s = *p;
	if (s[0] != key || s[1] != '=')
		return NULL;
	const char *v = s + 2;
	const char *end = strchr(v, ',');
	*vlen = end ? (size_t)(end - v) : strlen(v);
	*p = end ? end + 1 : v + *vlen;
	return v;
}

/* ---- secrets ---- */

int scram_parse_secret(const char *text, struct scram_secret *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!text || strncmp(text, "SCRAM-SHA-256$", 14) != 0)
		return fail(err, errlen, "secret does not start with SCRAM-SHA-256$");
	const char *p = text + 14;
	char *end;
	long iter = strtol(p, &end, 10);
	if (end == p || *end != ':' || iter <= 0 || iter > 100000000)
		return fail(err, errlen, "invalid iteration count in SCRAM secret");
	p = end + 1;
	const char *dollar = strchr(p, '$');
	if (!dollar)
		return fail(err, errlen, "missing '$' in SCRAM secret");
	int n = vg_b64_decode(p, (size_t)(dollar - p), out->salt, sizeof(out->salt));
	if (n <= 0)
		return fail(err, errlen, "invalid salt in SCRAM secret");
	out->salt_len = (size_t)n;
	p = dollar + 1;
	const char *colon = strchr(p, ':');
	if (!colon)
		return fail(err, errlen, "missing ':' between keys in SCRAM secret");
	uint8_t tmp[SCRAM_KEY_LEN + 4];
	if (vg_b64_decode(p, (size_t)(colon - p), tmp, sizeof(tmp)) != SCRAM_KEY_LEN)
		return fail(err, errlen, "invalid StoredKey in SCRAM secret");
	memcpy(out->stored_key, tmp, SCRAM_KEY_LEN);
	p = colon + 1;
	if (vg_b64_decode(p, strlen(p), tmp, sizeof(tmp)) != SCRAM_KEY_LEN)
		return fail(err, errlen, "invalid ServerKey in SCRAM secret");
	memcpy(out->server_key, tmp, SCRAM_KEY_LEN);
	out->iterations = (int)iter;
	return 0;
}

int scram_make_secret(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                      struct scram_secret *out)
{
	memset(out, 0, sizeof(*out));
	if (!password || salt_len == 0 || salt_len > SCRAM_MAX_SALT || iterations <= 0)
		return -1;
	uint8_t client_key[SCRAM_KEY_LEN];
	keys_from_password(password, salt, salt_len, iterations, client_key, out->server_key);
	sha256(client_key, SCRAM_KEY_LEN, out->stored_key);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	out->iterations = iterations;
	return 0;
}

int scram_format_secret(const struct scram_secret *s, char *buf, size_t buflen)
{
	char salt[SCRAM_MAX_SALT * 2], sk[64], svk[64];
	if (vg_b64_encode(s->salt, s->salt_len, salt, sizeof(salt)) < 0 ||
	    vg_b64_encode(s->stored_key, SCRAM_KEY_LEN, sk, sizeof(sk)) < 0 ||
	    vg_b64_encode(s->server_key, SCRAM_KEY_LEN, svk, sizeof(svk)) < 0)
		return -1;
	int n = snprintf(buf, buflen, "SCRAM-SHA-256$%d:%s$%s:%s", s->iterations, salt, sk, svk);
	return n < 0 || (size_t)n >= buflen ? -1 : 0;
}

/* ---- server side ---- */

int scram_server_first(struct scram_server_state *st, const struct scram_secret *secret,
                       const char *client_first, size_t client_first_len,
                       const char *server_nonce, char *out, size_t outlen,
                       char *err, size_t errlen)
{
	struct scram_secret copy = *secret;
	memset(st, 0, sizeof(*st));
	st->secret = copy;
	char msg[SCRAM_MSG_MAX];
	if (take_msg(client_first, client_first_len, msg, sizeof(msg)) < 0)
		return fail(err, errlen, "malformed client-first-message");
	const char *p = msg;
	if (p[0] == 'p')
		return fail(err, errlen, "channel binding is not supported");
	if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return fail(err, errlen, "malformed GS2 header");
	p += 2;
	if (p[0] != ',')
		return fail(err, errlen, "authorization identity is not supported");
	p++;
	const char *bare = p;
	if (p[0] == 'm')
		return fail(err, errlen, "mandatory SCRAM extensions are not supported");
	size_t ulen, nlen;
	if (!attr(&p, 'n', &ulen))
		return fail(err, errlen, "client-first-message lacks n=");
	const char *nonce = attr(&p, 'r', &nlen);
	if (!nonce || !printable_nonce(nonce, nlen) || nlen > SCRAM_NONCE_MAX)
		return fail(err, errlen, "client-first-message lacks a valid nonce");
	size_t snlen = strlen(server_nonce);
	if (!printable_nonce(server_nonce, snlen) || snlen > SCRAM_NONCE_MAX)
		return fail(err, errlen, "invalid server nonce");
	snprintf(st->client_first_bare, sizeof(st->client_first_bare), "%s", bare);
	memcpy(st->nonce, nonce, nlen);
	memcpy(st->nonce + nlen, server_nonce, snlen);
	st->nonce[nlen + snlen] = 0;
	char salt[SCRAM_MAX_SALT * 2];
	vg_b64_encode(st->secret.salt, st->secret.salt_len, salt, sizeof(salt));
	int n = snprintf(st->server_first, sizeof(st->server_first), "r=%s,s=%s,i=%d", st->nonce, salt,
	                 st->secret.iterations);
	if (n < 0 || (size_t)n >= sizeof(st->server_first) || (size_t)n >= outlen)
		return fail(err, errlen, "server-first-message too long");
	memcpy(out, st->server_first, (size_t)n + 1);
	return 0;
}

static int auth_message(char *buf, size_t buflen, const char *first_bare, const char *server_first,
                        const char *final_wo_proof, size_t final_len)
{
	int n = snprintf(buf, buflen, "%s,%s,%.*s", first_bare, server_first, (int)final_len, final_wo_proof);
	return n < 0 || (size_t)n >= buflen ? -1 : n;
}

int scram_server_final(struct scram_server_state *st, const char *client_final,
                       size_t client_final_len, char *out, size_t outlen,
                       char *err, size_t errlen)
{
	char msg[SCRAM_MSG_MAX];
	st->verified = false;
	if (!st->server_first[0])
		return fail(err, errlen, "no server-first-message was sent");
	if (take_msg(client_final, client_final_len, msg, sizeof(msg)) < 0)
		return fail(err, errlen, "malformed client-final-message");
	const char *p = msg;
	size_t clen, nlen;
	const char *cb = attr(&p, 'c', &clen);
	if (!cb || !((clen == 4 && !memcmp(cb, "biws", 4)) || (clen == 4 && !memcmp(cb, "eSws", 4))))
		return fail(err, errlen, "unexpected channel binding data");
	const char *nonce = attr(&p, 'r', &nlen);
	if (!nonce || nlen != strlen(st->nonce) || memcmp(nonce, st->nonce, nlen) != 0)
		return fail(err, errlen, "nonce mismatch");
	const char *proof_attr = strstr(msg, ",p=");
	if (!proof_attr || proof_attr < nonce + nlen)
		return fail(err, errlen, "client-final-message lacks a proof");
	const char *proof_b64 = proof_attr + 3;
	if (strchr(proof_b64, ','))
		return fail(err, errlen, "proof must be the last attribute");
	uint8_t proof[SCRAM_KEY_LEN + 4];
	if (vg_b64_decode(proof_b64, strlen(proof_b64), proof, sizeof(proof)) != SCRAM_KEY_LEN)
		return fail(err, errlen, "invalid proof encoding");
	char am[3 * SCRAM_MSG_MAX];
	int amlen = auth_message(am, sizeof(am), st->client_first_bare, st->server_first, msg,
	                         (size_t)(proof_attr - msg));
	if (amlen < 0)
		return fail(err, errlen, "auth message too long");
	uint8_t client_sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
	hmac(st->secret.stored_key, SCRAM_KEY_LEN, am, (size_t)amlen, client_sig);
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ client_sig[i];
	sha256(client_key, SCRAM_KEY_LEN, check);
	if (CRYPTO_memcmp(check, st->secret.stored_key, SCRAM_KEY_LEN) != 0)
		return fail(err, errlen, "password does not match");
	uint8_t server_sig[SCRAM_KEY_LEN];
	hmac(st->secret.server_key, SCRAM_KEY_LEN, am, (size_t)amlen, server_sig);
	char sig[64];
	vg_b64_encode(server_sig, SCRAM_KEY_LEN, sig, sizeof(sig));
	int n = snprintf(out, outlen, "v=%s", sig);
	if (n < 0 || (size_t)n >= outlen)
		return fail(err, errlen, "output buffer too small");
	memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
	st->verified = true;
	return 0;
}

/* ---- client side ---- */

static int client_init(struct scram_client_state *st, const char *client_nonce)
{
	size_t n = strlen(client_nonce);
	if (!printable_nonce(client_nonce, n) || n > SCRAM_NONCE_MAX)
		return -1;
	memcpy(st->client_nonce, client_nonce, n + 1);
	return 0;
}

int scram_client_init_password(struct scram_client_state *st, const char *password,
                               const char *client_nonce)
{
	memset(st, 0, sizeof(*st));
	if (strlen(password) >= sizeof(st->password))
		return -1;
	snprintf(st->password, sizeof(st->password), "%s", password);
	st->have_password = true;
	return client_init(st, client_nonce);
}

int scram_client_init_keys(struct scram_client_state *st, const uint8_t client_key[SCRAM_KEY_LEN],
                           const uint8_t server_key[SCRAM_KEY_LEN], const char *client_nonce)
{
	memset(st, 0, sizeof(*st));
	memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(st->server_key, server_key, SCRAM_KEY_LEN);
	return client_init(st, client_nonce);
}

int scram_client_first(struct scram_client_state *st, char *out, size_t outlen)
{
	int n = snprintf(st->client_first_bare, sizeof(st->client_first_bare), "n=%s,r=%s", st->user,
	                 st->client_nonce);
	if (n < 0 || (size_t)n >= sizeof(st->client_first_bare))
		return -1;
	n = snprintf(out, outlen, "n,,%s", st->client_first_bare);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int scram_client_final(struct scram_client_state *st, const char *server_first,
                       size_t server_first_len, char *out, size_t outlen, char *err, size_t errlen)
{
	if (take_msg(server_first, server_first_len, st->server_first, sizeof(st->server_first)) < 0)
		return fail(err, errlen, "malformed server-first-message");
	const char *p = st->server_first;
	size_t nlen, slen, ilen;
	if (p[0] == 'm')
		return fail(err, errlen, "mandatory SCRAM extensions are not supported");
	const char *nonce = attr(&p, 'r', &nlen);
	const char *salt = nonce ? attr(&p, 's', &slen) : NULL;
	const char *iter = salt ? attr(&p, 'i', &ilen) : NULL;
	if (!nonce || !salt || !iter)
		return fail(err, errlen, "server-first-message lacks r=, s= or i=");
	size_t cn = strlen(st->client_nonce);
	if (nlen <= cn || memcmp(nonce, st->client_nonce, cn) != 0 || !printable_nonce(nonce, nlen))
		return fail(err, errlen, "server nonce does not extend the client nonce");
	char ibuf[16];
	if (ilen == 0 || ilen >= sizeof(ibuf))
		return fail(err, errlen, "invalid iteration count");
	memcpy(ibuf, iter, ilen);
	ibuf[ilen] = 0;
	char *end;
	long iterations = strtol(ibuf, &end, 10);
	if (*end || iterations <= 0 || iterations > 100000000)
		return fail(err, errlen, "invalid iteration count");
	uint8_t saltbin[SCRAM_MAX_SALT];
	int saltn = vg_b64_decode(salt, slen, saltbin, sizeof(saltbin));
	if (saltn <= 0)
		return fail(err, errlen, "invalid salt");
	if (st->have_password)
		keys_from_password(st->password, saltbin, (size_t)saltn, (int)iterations, st->client_key, st->server_key);

	char wo_proof[SCRAM_MSG_MAX];
	int wn = snprintf(wo_proof, sizeof(wo_proof), "c=biws,r=%.*s", (int)nlen, nonce);
	if (wn < 0 || (size_t)wn >= sizeof(wo_proof))
		return fail(err, errlen, "nonce too long");
	char am[3 * SCRAM_MSG_MAX];
	int amlen = auth_message(am, sizeof(am), st->client_first_bare, st->server_first, wo_proof, (size_t)wn);
	if (amlen < 0)
		return fail(err, errlen, "auth message too long");
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	sha256(st->client_key, SCRAM_KEY_LEN, stored);
	hmac(stored, SCRAM_KEY_LEN, am, (size_t)amlen, sig);
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = st->client_key[i] ^ sig[i];
	hmac(st->server_key, SCRAM_KEY_LEN, am, (size_t)amlen, st->expected_server_sig);
	char proof_b64[64];
	vg_b64_encode(proof, SCRAM_KEY_LEN, proof_b64, sizeof(proof_b64));
	int n = snprintf(out, outlen, "%s,p=%s", wo_proof, proof_b64);
	if (n < 0 || (size_t)n >= outlen)
		return fail(err, errlen, "output buffer too small");
	return 0;
}

int scram_client_verify_server(struct scram_client_state *st, const char *server_final,
                               size_t server_final_len, char *err, size_t errlen)
{
	char msg[SCRAM_MSG_MAX];
	if (take_msg(server_final, server_final_len, msg, sizeof(msg)) < 0)
		return fail(err, errlen, "malformed server-final-message");
	if (msg[0] == 'e' && msg[1] == '=') /* the server's reason, never an empty one */
		return fail(err, errlen, msg[2] ? msg + 2 : "server-final-message reports an unnamed error");
	if (msg[0] != 'v' || msg[1] != '=')
		return fail(err, errlen, "server-final-message lacks v=");
	const char *v = msg + 2;
	size_t vlen = strcspn(v, ",");
	uint8_t sig[SCRAM_KEY_LEN + 4];
	if (vg_b64_decode(v, vlen, sig, sizeof(sig)) != SCRAM_KEY_LEN)
		return fail(err, errlen, "invalid server signature encoding");
	if (CRYPTO_memcmp(sig, st->expected_server_sig, SCRAM_KEY_LEN) != 0)
		return fail(err, errlen, "server signature does not match");
	return 0;
}

int scram_random_nonce(char *buf, size_t len)
{
	uint8_t raw[SCRAM_NONCE_MAX];
	char enc[SCRAM_NONCE_MAX * 2];
	if (len > SCRAM_NONCE_MAX || RAND_bytes(raw, (int)len) != 1)
		return -1;
	vg_b64_encode(raw, len, enc, sizeof(enc));
	memcpy(buf, enc, len);
	buf[len] = 0;
	return 0;
}
