/*
 * PostgreSQL md5 password authentication, pure functions.
 * The stored form is "md5" + hex(md5(password || user)); the wire response to
 * an AuthenticationMD5Password request with a 4-byte salt is
 * "md5" + hex(md5(hex_part_of_stored || salt)).
 */
#ifndef VG_PROTOCOL_MD5AUTH_H
#define VG_PROTOCOL_MD5AUTH_H

#include <stdbool.h>
#include <stdint.h>

#define MD5_PASSWD_LEN 35 /* "md5" + 32 hex, without NUL */

/* "md5" + hex(md5(password || user)) into out[36]. */
void md5_stored_from_password(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1]);
/* True if s looks like "md5" followed by 32 lowercase hex digits. */
bool md5_is_stored(const char *s);
/* Wire response from a stored hash and salt into out[36]. */
void md5_response_from_stored(const char *stored, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1]);
/* Constant-time check of a client's wire response against a stored hash. */
bool md5_verify_response(const char *stored, const uint8_t salt[4], const char *response);

#endif
