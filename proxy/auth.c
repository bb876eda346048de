/*
 * Client authentication at the proxy: trust, md5 and SCRAM-SHA-256 against
 * secrets from the config or from an auth_query run on the backend.  Unknown
 * users get the same exchange as known ones and fail at the end, so the
 * answer does not reveal which user names exist.
 */
#include "proxy/auth.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/runtime/pgconn_params.h"
#include "protocol/md5auth.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deriving a SCRAM secret from a plaintext password costs 4096 HMAC rounds;
 * remember the result per (user, password) for the life of the process. */
struct secret_cache_entry {
	struct secret_cache_entry *next;
	char *user, *password;
	struct scram_secret secret;
};
static struct secret_cache_entry *secret_cache;

static void secret_from_password(const char *user, const char *password, struct scram_secret *out)
{
	for (struct secret_cache_entry *e = secret_cache; e; e = e->next) {
		if (!strcmp(e->user, user) && !strcmp(e->password, password)) {
			*out = e->secret;
			return;
		}
	}
	uint8_t salt[16];
	random_bytes(salt, sizeof(salt));
	scram_make_secret(password, salt, sizeof(salt), 4096, out);
	struct secret_cache_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return;
	e->user = strdup(user);
	e->password = strdup(password);
	if (!e->user || !e->password) {
		free(e->user);
		free(e->password);
		free(e);
		return;
	}
	e->secret = *out;
	e->next = secret_cache;
	secret_cache = e;
}

static void send_buf(struct client_conn *c, struct pg_buf *b)
{
	io_write(&c->io, b->data, b->len);
	buf_free(b);
}

static void auth_failed(struct client_conn *c)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", c->user);
	char addr[64];
	log_info("C-%llu: %s from %s", (unsigned long long)c->id, msg, client_addr(c, addr, sizeof(addr)));
	client_fatal(c, "28P01", msg, NULL);
}

static void auth_ok(struct client_conn *c)
{
	struct pg_buf b;
	buf_init(&b);
	build_auth(&b, 0, NULL, 0);
	send_buf(c, &b);
	const struct vg_database *db = config_find_database(vg.cfg, c->database);
	if (!db) {
		client_fatal(c, "3D000", "database disappeared from the configuration", NULL);
		return;
	}
	struct pool *p = pool_find_or_create(db, c->database, c->user, c);
	if (!p) {
		client_fatal(c, "08006", "no backend for this database", NULL);
		return;
	}
	c->pool = p;
	p->n_clients++;
	if (c->login && c->login->have_scram_keys && !p->be_password && !p->have_scram_keys) {
		memcpy(p->scram_client_key, c->login->scram_client_key, SCRAM_KEY_LEN);
		memcpy(p->scram_server_key, c->login->scram_server_key, SCRAM_KEY_LEN);
		p->have_scram_keys = true;
	}
	auth_release(c); /* nothing of the login is needed past this point */
	pool_client_login(p, c);
}

static bool is_scram_secret(const char *s)
{
	return s && !strncmp(s, "SCRAM-SHA-256$", 14);
}

static void begin_scram(struct client_conn *c, const char *secret)
{
	c->login->scram = calloc(1, sizeof(*c->login->scram));
	if (!c->login->scram) {
		client_fatal(c, "53200", "out of memory", NULL);
		return;
	}
	if (is_scram_secret(secret)) {
		if (scram_parse_secret(secret, &c->login->scram->secret, NULL, 0) < 0)
			c->login->auth_mock = true;
	} else if (secret && !md5_is_stored(secret)) {
		secret_from_password(c->user, secret, &c->login->scram->secret);
	} else {
		/* unknown user, or an md5 hash that SCRAM cannot use */
		c->login->auth_mock = true;
	}
	if (c->login->auth_mock) {
		char junk[33];
		scram_random_nonce(junk, 32);
		uint8_t salt[16];
		random_bytes(salt, sizeof(salt));
		scram_make_secret(junk, salt, sizeof(salt), 4096, &c->login->scram->secret);
	}
	struct pg_buf b;
	buf_init(&b);
	build_auth_sasl(&b);
	send_buf(c, &b);
	c->state = CL_AUTH_SASL_INIT;
}

static void begin_md5(struct client_conn *c, const char *secret)
{
	if (!secret) {
		c->login->auth_mock = true;
		memset(c->login->md5_stored, 0, sizeof(c->login->md5_stored));
	} else if (md5_is_stored(secret)) {
		snprintf(c->login->md5_stored, sizeof(c->login->md5_stored), "%s", secret);
	} else {
		md5_stored_from_password(secret, c->user, c->login->md5_stored);
	}
	random_bytes(c->login->md5_salt, 4);
	struct pg_buf b;
	buf_init(&b);
	build_auth(&b, 5, c->login->md5_salt, 4);
	send_buf(c, &b);
	c->state = CL_AUTH_PASSWORD;
}

/* secret: plaintext, md5 or SCRAM form; NULL for an unknown user */
static void auth_with_secret(struct client_conn *c, const char *secret)
{
	if (vg.cfg->auth.type == VG_AUTH_MD5 && !is_scram_secret(secret))
		begin_md5(c, secret);
	else
		begin_scram(c, secret); /* as PostgreSQL: md5 method + SCRAM secret uses SCRAM */
}

static void authq_done(void *arg, PGresult *res, const char *error)
{
	struct client_conn *c = arg;
	c->login->authq = NULL;
	if (error) {
		log_error("C-%llu: auth_query failed: %s", (unsigned long long)c->id, error);
		client_fatal(c, "08006", "authentication lookup failed", error);
		return;
	}
	const char *secret = NULL;
	if (PQntuples(res) == 1 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1))
		secret = PQgetvalue(res, 0, 1);
	if (secret) {
		c->login->authq_secret = strdup(secret);
		secret = c->login->authq_secret;
	}
	auth_with_secret(c, secret);
}

static void begin_auth_query(struct client_conn *c)
{
	const struct vg_auth *a = &vg.cfg->auth;
	const struct vg_database *db = config_find_database(vg.cfg, c->database);
	const struct vg_backend *be = config_find_backend(vg.cfg, db && db->backend ? db->backend : "primary");
	if (!be) {
		client_fatal(c, "08006", "no backend configured for auth_query", NULL);
		return;
	}
	const char *dbname = a->auth_dbname;
	if (!dbname)
		dbname = db && db->dbname && strcmp(db->dbname, "*") ? db->dbname : c->database;
	char port[16];
	snprintf(port, sizeof(port), "%d", be->port);
	const char *kw[6 + PGCONN_TLS_MAX + 1] = {"host", "port", "dbname", "user", "password", "application_name"};
	const char *val[6 + PGCONN_TLS_MAX + 1] = {be->host, port, dbname, a->auth_user,
	                                           a->auth_password ? a->auth_password : "", "vecgate auth_query"};
	pgconn_add_tls(&vg.cfg->server_tls, be->host, kw, val, 6, sizeof(kw) / sizeof(*kw));
	const char *params[] = {c->user};
	c->state = CL_AUTH_LOOKUP;
	c->login->authq = pg_async_oneshot(vg.base, kw, val, a->auth_query, 1, params,
	                            vg.cfg->timeouts.server_connect, authq_done, c);
	if (!c->login->authq) /* e.g. the backend's name is known not to resolve */
		client_fatal(c, "08006", "cannot start authentication lookup", pg_session_connect_error());
}

void auth_begin(struct client_conn *c)
{
	if (vg.cfg->auth.type == VG_AUTH_TRUST) {
		auth_ok(c);
		return;
	}
	assert(!c->login);
	c->login = calloc(1, sizeof(*c->login));
	if (!c->login) {
		client_fatal(c, "53200", "out of memory", NULL);
		return;
	}
	const struct vg_user *u = config_find_user(vg.cfg, c->user);
	if (u) {
		auth_with_secret(c, u->password);
		return;
	}
	if (vg.cfg->auth.auth_query) {
		begin_auth_query(c);
		return;
	}
	auth_with_secret(c, NULL);
}

void auth_handle_message(struct client_conn *c, uint8_t type, const uint8_t *body, size_t len)
{
	(void)type;
	char err[128], out[SCRAM_MSG_MAX];
	struct pg_buf b;
	switch (c->state) {
	case CL_AUTH_PASSWORD: {
		struct pg_reader rd;
		rd_init(&rd, body, len);
		const char *resp = rd_str(&rd);
		if (rd.err || c->login->auth_mock || !md5_verify_response(c->login->md5_stored, c->login->md5_salt, resp)) {
			auth_failed(c);
			return;
		}
		auth_ok(c);
		return;
	}
	case CL_AUTH_SASL_INIT: {
		const char *mech;
		const uint8_t *data;
		size_t dlen;
		if (parse_sasl_initial(body, len, &mech, &data, &dlen) < 0 || !data) {
			client_fatal(c, "08P01", "malformed SASLInitialResponse message", NULL);
			return;
		}
		if (strcmp(mech, "SCRAM-SHA-256")) {
			client_fatal(c, "28000", "client selected an invalid SASL authentication mechanism", NULL);
			return;
		}
		char nonce[25];
		scram_random_nonce(nonce, 24);
		struct scram_secret secret = c->login->scram->secret;
		if (scram_server_first(c->login->scram, &secret, (const char *)data, dlen, nonce, out, sizeof(out),
		                       err, sizeof(err)) < 0) {
			client_fatal(c, "08P01", "malformed SCRAM message", err);
			return;
		}
		buf_init(&b);
		build_auth(&b, 11, out, strlen(out));
		send_buf(c, &b);
		c->state = CL_AUTH_SASL_CONT;
		return;
	}
	case CL_AUTH_SASL_CONT: {
		if (scram_server_final(c->login->scram, (const char *)body, len, out, sizeof(out), err, sizeof(err)) < 0 ||
		    c->login->auth_mock) {
			auth_failed(c);
			return;
		}
		memcpy(c->login->scram_client_key, c->login->scram->client_key, SCRAM_KEY_LEN);
		memcpy(c->login->scram_server_key, c->login->scram->secret.server_key, SCRAM_KEY_LEN);
		c->login->have_scram_keys = true;
		free(c->login->scram);
		c->login->scram = NULL;
		buf_init(&b);
		build_auth(&b, 12, out, strlen(out));
		send_buf(c, &b);
		auth_ok(c);
		return;
	}
	default:
		client_fatal(c, "08P01", "unexpected authentication message", NULL);
		return;
	}
}

void auth_release(struct client_conn *c)
{
	struct client_login *l = c->login;
	if (!l)
		return;
	if (l->authq)
		pg_async_cancel(l->authq);
	free(l->scram);
	free(l->authq_secret);
	free(l);
	c->login = NULL;
}
