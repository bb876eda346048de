/*
 * SCRAM-SHA-256 (RFC 5802 / RFC 7677) for both ends of a PostgreSQL login,
 * as pure functions over strings: the caller supplies nonces, so exchanges are
 * deterministic in tests.  No channel binding ("n,," / "biws").
 *
 * Server side (vecgate authenticating its clients): parse a stored secret,
 * build server-first from client-first, verify client-final and build
 * server-final.  On success the verified ClientKey is exposed so the proxy can
 * log into a backend that stores the same secret without knowing the password
 * (PgBouncer's SCRAM passthrough).
 *
 * Client side (vecgate logging into a backend): from a password, or from a
 * ClientKey+ServerKey pair, build client-first, client-final and check the
 * server signature.
 *
 * All functions return 0 on success and -1 on malformed input or failed
 * verification, writing a short reason into `err` (may be NULL).
 */
#ifndef VG_PROTOCOL_SCRAM_H
#define VG_PROTOCOL_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT 64
#define SCRAM_NONCE_MAX 128
#define SCRAM_MSG_MAX 1024

struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Parse "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>". */
int scram_parse_secret(const char *text, struct scram_secret *out, char *err, size_t errlen);
/* Derive a secret from a plaintext password (SASLprep not applied: ASCII only
 * passwords are exact; others are used as raw UTF-8, as libpq does on failure). */
int scram_make_secret(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
                      struct scram_secret *out);
/* Format a secret as the text form above into buf. */
int scram_format_secret(const struct scram_secret *s, char *buf, size_t buflen);

struct scram_server_state {
	struct scram_secret secret;
	char client_first_bare[SCRAM_MSG_MAX];
	char server_first[SCRAM_MSG_MAX];
	char nonce[2 * SCRAM_NONCE_MAX + 1]; /* client nonce + server nonce */
	uint8_t client_key[SCRAM_KEY_LEN]; /* valid after scram_server_verify_final succeeds */
	bool verified;
};

/* client_first: the SASLInitialResponse data, e.g. "n,,n=,r=<nonce>".
 * server_nonce: printable random chars supplied by the caller.
 * Writes server-first ("r=...,s=...,i=...") into out (NUL-terminated). */
int scram_server_first(struct scram_server_state *st, const struct scram_secret *secret,
                       const char *client_first, size_t client_first_len,
                       const char *server_nonce, char *out, size_t outlen,
                       char *err, size_t errlen);
/* client_final: "c=biws,r=<nonce>,p=<proof b64>".  On success writes
 * server-final ("v=<sig b64>") into out and fills st->client_key. */
int scram_server_final(struct scram_server_state *st, const char *client_final,
                       size_t client_final_len, char *out, size_t outlen,
                       char *err, size_t errlen);

struct scram_client_state {
	char user[64]; /* sent as n=; PostgreSQL ignores it, so normally empty */
	bool have_password;
	char password[256];
	uint8_t client_key[SCRAM_KEY_LEN]; /* used when !have_password */
	uint8_t server_key[SCRAM_KEY_LEN];
	char client_nonce[SCRAM_NONCE_MAX + 1];
	char client_first_bare[SCRAM_MSG_MAX];
	char server_first[SCRAM_MSG_MAX];
	uint8_t expected_server_sig[SCRAM_KEY_LEN];
};

int scram_client_init_password(struct scram_client_state *st, const char *password,
                               const char *client_nonce);
int scram_client_init_keys(struct scram_client_state *st, const uint8_t client_key[SCRAM_KEY_LEN],
                           const uint8_t server_key[SCRAM_KEY_LEN], const char *client_nonce);
/* Writes "n,,n=<user>,r=<nonce>" into out. */
int scram_client_first(struct scram_client_state *st, char *out, size_t outlen);
/* server_first from AuthenticationSASLContinue; writes client-final into out. */
int scram_client_final(struct scram_client_state *st, const char *server_first,
                       size_t server_first_len, char *out, size_t outlen, char *err, size_t errlen);
/* server_final from AuthenticationSASLFinal: checks "v=<sig>". */
int scram_client_verify_server(struct scram_client_state *st, const char *server_final,
                               size_t server_final_len, char *err, size_t errlen);

/* Base64 helpers (standard alphabet, with padding).  Return output length or -1. */
int vg_b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstlen);
int vg_b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstlen);

/* Fill buf with `len` printable nonce characters (base64 of RAND_bytes) + NUL.
 * The one non-pure helper: callers that need determinism pass their own nonce. */
int scram_random_nonce(char *buf, size_t len);

#endif
