/*
 * SCRAM-SHA-256 and md5 against published vectors and independently
 * computed values, both ends of the exchange, and malformed input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "protocol/md5auth.h"
#include "protocol/scram.h"

#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                            \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void rfc_secret(struct scram_secret *s)
{
	uint8_t salt[32];
	int n = vg_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof(salt));
	assert_int_equal(n, 16);
	assert_int_equal(scram_make_secret("pencil", salt, (size_t)n, 4096, s), 0);
}

static void test_rfc7677_client(void **state)
{
	(void)state;
	struct scram_client_state c;
	assert_int_equal(scram_client_init_password(&c, "pencil", "rOprNGfwEbeRWgbNEkqO"), 0);
	strcpy(c.user, "user");
	char out[SCRAM_MSG_MAX], err[128];
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), 0);
	assert_string_equal(out, RFC_CLIENT_FIRST);
	assert_int_equal(scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out), err,
	                                    sizeof(err)),
	                 0);
	assert_string_equal(out, RFC_CLIENT_FINAL);
	assert_int_equal(scram_client_verify_server(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err, sizeof(err)), 0);
	assert_int_equal(scram_client_verify_server(&c, "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", 46, err,
	                                            sizeof(err)),
	                 -1);
}

static void test_rfc7677_server(void **state)
{
	(void)state;
	struct scram_secret secret;
	rfc_secret(&secret);
	struct scram_server_state s;
	char out[SCRAM_MSG_MAX], err[128];
	assert_int_equal(scram_server_first(&s, &secret, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), RFC_SERVER_NONCE,
	                                    out, sizeof(out), err, sizeof(err)),
	                 0);
	assert_string_equal(out, RFC_SERVER_FIRST);
	assert_int_equal(scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof(out), err,
	                                    sizeof(err)),
	                 0);
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_true(s.verified);
	/* the exposed ClientKey hashes to the StoredKey */
	struct scram_client_state c;
	assert_int_equal(scram_client_init_keys(&c, s.client_key, secret.server_key, "abc"), 0);
}

static void test_secret_format_roundtrip(void **state)
{
	(void)state;
	struct scram_secret a, b;
	rfc_secret(&a);
	char text[256];
	assert_int_equal(scram_format_secret(&a, text, sizeof(text)), 0);
	assert_int_equal(scram_parse_secret(text, &b, NULL, 0), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	/* computed independently with Python hashlib (pbkdf2_hmac, hmac) */
	assert_string_equal(text, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
}

/* full exchange between our two ends, with password, passthrough keys, and a wrong password */
static int exchange(const struct scram_secret *secret, struct scram_client_state *c)
{
	struct scram_server_state s;
	char m1[SCRAM_MSG_MAX], m2[SCRAM_MSG_MAX], m3[SCRAM_MSG_MAX], m4[SCRAM_MSG_MAX], err[128];
	if (scram_client_first(c, m1, sizeof(m1)) < 0)
		return -1;
	if (scram_server_first(&s, secret, m1, strlen(m1), "servernonce", m2, sizeof(m2), err, sizeof(err)) < 0)
		return -2;
	if (scram_client_final(c, m2, strlen(m2), m3, sizeof(m3), err, sizeof(err)) < 0)
		return -3;
	if (scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4), err, sizeof(err)) < 0)
		return -4;
	if (scram_client_verify_server(c, m4, strlen(m4), err, sizeof(err)) < 0)
		return -5;
	return 0;
}

static void test_roundtrips(void **state)
{
	(void)state;
	struct scram_secret secret;
	const uint8_t salt[] = "0123456789abcdef";
	assert_int_equal(scram_make_secret("s3cret pw", salt, 16, 4096, &secret), 0);
	struct scram_client_state c;
	scram_client_init_password(&c, "s3cret pw", "clientnonce");
	assert_int_equal(exchange(&secret, &c), 0);
	scram_client_init_password(&c, "wrong", "clientnonce");
	assert_int_equal(exchange(&secret, &c), -4);
	/* passthrough: ClientKey recovered by a server end logs in elsewhere */
	struct scram_server_state s;
	char m1[SCRAM_MSG_MAX], m2[SCRAM_MSG_MAX], m3[SCRAM_MSG_MAX], m4[SCRAM_MSG_MAX];
	scram_client_init_password(&c, "s3cret pw", "n1");
	scram_client_first(&c, m1, sizeof(m1));
	scram_server_first(&s, &secret, m1, strlen(m1), "n2", m2, sizeof(m2), NULL, 0);
	scram_client_final(&c, m2, strlen(m2), m3, sizeof(m3), NULL, 0);
	assert_int_equal(scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4), NULL, 0), 0);
	struct scram_client_state pass;
	scram_client_init_keys(&pass, s.client_key, secret.server_key, "n3");
	assert_int_equal(exchange(&secret, &pass), 0);
}

static void test_malformed(void **state)
{
	(void)state;
	struct scram_secret secret;
	rfc_secret(&secret);
	char out[SCRAM_MSG_MAX], err[128];
	struct scram_server_state s;
	const char *bad_first[] = {"", "n", "n,", "n,,", "p=tls-server-end-point,,n=,r=abc", "x,,n=,r=abc",
	                           "n,a=bob,n=,r=abc", "n,,m=ext,n=,r=abc", "n,,n=,r=", "n,,n=,x=abc", "n,,r=abc",
	                           "n,,n=,r=a,b"};
	for (size_t i = 0; i < sizeof(bad_first) / sizeof(*bad_first); i++) {
		int rc = scram_server_first(&s, &secret, bad_first[i], strlen(bad_first[i]), "srv", out, sizeof(out), err,
		                            sizeof(err));
		if (i == 11) /* "r=a,b": b is an extension attribute, allowed */
			assert_int_equal(rc, 0);
		else
			assert_int_equal(rc, -1);
	}
	assert_int_equal(scram_server_first(&s, &secret, "n,,n=,r=a\0b", 11, "srv", out, sizeof(out), err, sizeof(err)), -1);
	assert_int_equal(scram_server_first(&s, &secret, "n,,n=,r=abc", 11, "srv", out, sizeof(out), err, sizeof(err)), 0);
	const char *bad_final[] = {"", "c=biws", "c=biws,r=abcsrv", "c=xxxx,r=abcsrv,p=AAAA", "c=biws,r=abcXXX,p=AAAA",
	                           "c=biws,r=abcsrv,p=!!!!", "c=biws,r=abcsrv,p=AAAA",
	                           "c=biws,r=abcsrv,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
	                           "r=abcsrv,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	                           "c=biws,r=abcsrv,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="};
	for (size_t i = 0; i < sizeof(bad_final) / sizeof(*bad_final); i++) {
		assert_int_equal(scram_server_final(&s, bad_final[i], strlen(bad_final[i]), out, sizeof(out), err, sizeof(err)),
		                 -1);
		assert_false(s.verified);
	}
	struct scram_client_state c;
	scram_client_init_password(&c, "pencil", "abc");
	scram_client_first(&c, out, sizeof(out));
	const char *bad_sfirst[] = {"", "r=abc,s=AAAA,i=1", "r=xyzdef,s=AAAA,i=1", "r=abcdef,s=!!,i=1",
	                            "r=abcdef,s=AAAA,i=0", "r=abcdef,s=AAAA,i=x", "r=abcdef,i=1", "m=1,r=abcdef,s=AAAA,i=1"};
	for (size_t i = 0; i < sizeof(bad_sfirst) / sizeof(*bad_sfirst); i++)
		assert_int_equal(scram_client_final(&c, bad_sfirst[i], strlen(bad_sfirst[i]), out, sizeof(out), err,
		                                    sizeof(err)),
		                 -1);
	assert_int_equal(scram_client_verify_server(&c, "e=invalid-proof", 15, err, sizeof(err)), -1);
	assert_string_equal(err, "invalid-proof");
	assert_int_equal(scram_client_verify_server(&c, "x=1", 3, err, sizeof(err)), -1);
	const char *bad_secret[] = {"", "md5abc", "SCRAM-SHA-256$", "SCRAM-SHA-256$0:AAAA$AAAA:AAAA",
	                            "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA", "SCRAM-SHA-256$4096:!!$x:y",
	                            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="};
	struct scram_secret out_secret;
	for (size_t i = 0; i < sizeof(bad_secret) / sizeof(*bad_secret); i++)
		assert_int_equal(scram_parse_secret(bad_secret[i], &out_secret, err, sizeof(err)), -1);
	uint8_t b[8];
	assert_int_equal(vg_b64_decode("AAA", 3, b, sizeof(b)), -1);
	assert_int_equal(vg_b64_decode("A=AA", 4, b, sizeof(b)), -1);
	assert_int_equal(vg_b64_decode("AAAAAAAAAAAAAAAA", 16, b, sizeof(b)), -1);
}

static void test_md5(void **state)
{
	(void)state;
	char stored[MD5_PASSWD_LEN + 1], resp[MD5_PASSWD_LEN + 1];
	md5_stored_from_password("secret", "postgres", stored);
	/* printf secretpostgres | md5sum */
	assert_string_equal(stored, "md553f48b7c4b76a86ce72276c5755f217d");
	assert_true(md5_is_stored(stored));
	const uint8_t salt[4] = {1, 2, 3, 4};
	md5_response_from_stored(stored, salt, resp);
	/* python3 hashlib: 'md5' + md5(hex || salt) */
	assert_string_equal(resp, "md5bb41a296aab6baccb36ff243a562abff");
	assert_true(md5_verify_response(stored, salt, resp));
	resp[10] ^= 1;
	assert_false(md5_verify_response(stored, salt, resp));
	assert_false(md5_is_stored("md5abc"));
	assert_false(md5_is_stored("md553F48B7C4B76A86CE72276C5755F217D"));
	assert_false(md5_verify_response("plain", salt, resp));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_client),  cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_secret_format_roundtrip), cmocka_unit_test(test_roundtrips),
		cmocka_unit_test(test_malformed),       cmocka_unit_test(test_md5),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
