/*
 * TLS contexts: one for terminating client TLS (vecgate as the server), one
 * for TLS to backends (vecgate as the client, with libpq's sslmode meanings).
 */
#include "proxy/tls.h"
#include "proxy/runtime/runtime.h"

#include <openssl/err.h>
#include <stdio.h>

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(err, errlen, "%s %s: %s", what, file ? file : "", reason);
}

static bool load_cert_key(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_err(err, errlen, "cannot load certificate", cert);
		return false;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, "cannot load key", key);
		return false;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "key does not match certificate", key);
		return false;
	}
	return true;
}

SSL_CTX *tls_client_ctx_new(const struct vg_client_tls *cfg, char *err, size_t errlen)
{
	if (cfg->mode == VG_CTLS_DISABLE)
		return NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (!load_cert_key(ctx, cfg->cert_file, cfg->key_file, err, errlen))
		goto failed;
	if (cfg->ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
			ssl_err(err, errlen, "cannot load CA", cfg->ca_file);
			goto failed;
		}
		/* like PostgreSQL's clientcert=verify-ca only when a cert is sent */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	return ctx;
failed:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_ctx_new(const struct vg_server_tls *cfg, char *err, size_t errlen)
{
	if (cfg->mode == VG_STLS_DISABLE)
		return NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (cfg->ca_file && SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
		ssl_err(err, errlen, "cannot load CA", cfg->ca_file);
		goto failed;
	}
	if (cfg->cert_file && !load_cert_key(ctx, cfg->cert_file, cfg->key_file, err, errlen))
		goto failed;
	if (cfg->mode >= VG_STLS_VERIFY_CA)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
failed:
	SSL_CTX_free(ctx);
	return NULL;
}
