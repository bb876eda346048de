/*
 * PostgreSQL's md5 password scheme: the stored hash is md5(password||user),
 * the wire answer is md5(stored_hex||salt).  Knowing the stored hash is
 * enough to answer a challenge, which is what lets vecgate log into a backend
 * with only the hash from its config or from pg_shadow.
 */
#include "protocol/md5auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

static void md5_hex(const void *a, size_t alen, const void *b, size_t blen, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, a, alen);
	EVP_DigestUpdate(ctx, b, blen);
	EVP_DigestFinal_ex(ctx, digest, &dlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 16; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[32] = 0;
}

void md5_stored_from_password(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1])
{
	memcpy(out, "md5", 3);
	md5_hex(password, strlen(password), user, strlen(user), out + 3);
}

bool md5_is_stored(const char *s)
{
	if (!s || strncmp(s, "md5", 3) != 0 || strlen(s) != MD5_PASSWD_LEN)
		return false;
	for (int i = 3; i < MD5_PASSWD_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

void md5_response_from_stored(const char *stored, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1])
{
	memcpy(out, "md5", 3);
	md5_hex(stored + 3, 32, salt, 4, out + 3);
}

bool md5_verify_response(const char *stored, const uint8_t salt[4], const char *response)
{
	if (!md5_is_stored(stored) || strlen(response) != MD5_PASSWD_LEN)
		return false;
	char expect[MD5_PASSWD_LEN + 1];
	md5_response_from_stored(stored, salt, expect);
	return CRYPTO_memcmp(expect, response, MD5_PASSWD_LEN) == 0;
}
