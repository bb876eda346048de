/*
 * Load vecgate's YAML configuration into a vg_config, with every default
 * filled in and every error reported as "file:line:column: message" at the
 * node that is wrong.  Each section is a table of fields (name, type, where
 * it lands, limits), so adding a setting is one line, and unknown keys are
 * errors rather than silent typos.
 */
#include "conf/config.h"
#include "conf/sqlname.h"
#include "protocol/scram.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

struct load_ctx {
	const char *name;
	yaml_document_t *doc;
	char *err;
	size_t errlen;
	bool failed;
};

static bool fail_at(struct load_ctx *lc, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail_at(struct load_ctx *lc, const yaml_node_t *n, const char *fmt, ...)
{
	if (lc->failed)
		return false;
	lc->failed = true;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(lc->err, lc->errlen, "%s:%zu:%zu: %s", lc->name, n ? n->start_mark.line + 1 : 1,
	         n ? n->start_mark.column + 1 : 1, msg);
	return false;
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static const char *type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a scalar";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "empty";
	}
}

static bool expect(struct load_ctx *lc, const yaml_node_t *n, yaml_node_type_t t, const char *what)
{
	if (n->type == t)
		return true;
	const char *want = t == YAML_MAPPING_NODE ? "a mapping" : t == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
	return fail_at(lc, n, "%s must be %s, got %s", what, want, type_name(n));
}

/* ---- typed values ---- */

enum field_type { F_STR, F_INT, F_SECONDS, F_BOOL, F_SIZE, F_ENUM };

struct enum_name {
	const char *name;
	int value;
};

struct field {
	const char *key;
	enum field_type type;
	size_t offset;
	long min, max;                 /* F_INT / F_SIZE */
	const struct enum_name *names; /* F_ENUM, NULL-terminated */
};

static bool parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return true;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || s[0] == '-')
		return false;
	while (*end == ' ')
		end++;
	unsigned long long mult = 1;
	if (!*end || !strcasecmp(end, "B"))
		mult = 1;
	else if (!strcasecmp(end, "kB") || !strcasecmp(end, "K"))
		mult = 1024ull;
	else if (!strcasecmp(end, "MB") || !strcasecmp(end, "M"))
		mult = 1024ull * 1024;
	else if (!strcasecmp(end, "GB") || !strcasecmp(end, "G"))
		mult = 1024ull * 1024 * 1024;
	else
		return false;
	if (v > (unsigned long long)SIZE_MAX / mult)
		return false;
	*out = (size_t)(v * mult);
	return true;
}

static const struct enum_name *enum_lookup(const struct enum_name *names, const char *s)
{
	for (; names->name; names++)
		if (!strcmp(names->name, s))
			return names;
	return NULL;
}

static bool set_field(struct load_ctx *lc, const struct field *f, void *base, const yaml_node_t *val)
{
	char *dst = (char *)base + f->offset;
	const char *s = scalar(val);
	if (!s)
		return fail_at(lc, val, "%s must be a scalar value, got %s", f->key, type_name(val));
	switch (f->type) {
	case F_STR: {
		char **p = (char **)dst;
		free(*p);
		*p = strdup(s);
		return *p ? true : fail_at(lc, val, "out of memory");
	}
	case F_INT: {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (end == s || *end || errno)
			return fail_at(lc, val, "%s must be an integer, got '%s'", f->key, s);
		if (v < f->min || v > f->max)
			return fail_at(lc, val, "%s must be between %ld and %ld, got %ld", f->key, f->min, f->max, v);
		*(int *)dst = (int)v;
		return true;
	}
	case F_SECONDS: {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || *end || errno || !isfinite(v))
			return fail_at(lc, val, "%s must be a number of seconds, got '%s'", f->key, s);
		if (v < 0)
			return fail_at(lc, val, "%s must not be negative, got %s", f->key, s);
		*(double *)dst = v;
		return true;
	}
	case F_BOOL:
		if (!parse_bool(s, (bool *)dst))
			return fail_at(lc, val, "%s must be true or false, got '%s'", f->key, s);
		return true;
	case F_SIZE: {
		size_t v;
		if (!parse_size(s, &v))
			return fail_at(lc, val, "%s must be a size in bytes (e.g. 16MB, 512kB, 1048576), got '%s'", f->key, s);
		if ((long long)v < f->min || (f->max > 0 && (long long)v > f->max))
			return fail_at(lc, val, "%s must be between %ld and %ld bytes, got %zu", f->key, f->min, f->max, v);
		*(size_t *)dst = v;
		return true;
	}
	case F_ENUM: {
		const struct enum_name *e = enum_lookup(f->names, s);
		if (e) {
			*(int *)dst = e->value;
			return true;
		}
		char allowed[256] = "";
		for (e = f->names; e->name; e++) {
			size_t l = strlen(allowed);
			snprintf(allowed + l, sizeof(allowed) - l, "%s'%s'", l ? ", " : "", e->name);
		}
		return fail_at(lc, val, "%s must be one of %s, got '%s'", f->key, allowed, s);
	}
	}
	return false;
}

typedef bool (*section_fn)(struct load_ctx *lc, const yaml_node_t *val, void *base);

struct custom_key {
	const char *key;
	section_fn fn;
};

/* Walk a mapping: table fields first, then custom handlers; anything else
 * is an unknown key. */
static bool load_mapping(struct load_ctx *lc, const yaml_node_t *map, const char *what, const struct field *fields,
                         const struct custom_key *custom, void *base)
{
	if (!expect(lc, map, YAML_MAPPING_NODE, what))
		return false;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
		const char *key = scalar(k);
		if (!key)
			return fail_at(lc, k, "keys in %s must be scalars", what);
		/* a key given twice is almost always a mistake */
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			const char *prev = scalar(yaml_document_get_node(lc->doc, q->key));
			if (prev && !strcmp(prev, key))
				return fail_at(lc, k, "duplicate key '%s' in %s", key, what);
		}
		bool done = false;
		for (const struct field *f = fields; f && f->key; f++) {
			if (!strcmp(f->key, key)) {
				if (!set_field(lc, f, base, v))
					return false;
				done = true;
				break;
			}
		}
		for (const struct custom_key *c = custom; !done && c && c->key; c++) {
			if (!strcmp(c->key, key)) {
				if (!c->fn(lc, v, base))
					return false;
				done = true;
			}
		}
		if (!done)
			return fail_at(lc, k, "unknown key '%s' in %s", key, what);
	}
	return true;
}

#define OFF(type, member) offsetof(type, member)

/* A list section: check it is a list, allocate its array of elements. */
static void *seq_alloc(struct load_ctx *lc, const yaml_node_t *val, const char *what, size_t elem, bool nonempty,
                       size_t *n)
{
	if (!expect(lc, val, YAML_SEQUENCE_NODE, what))
		return NULL;
	*n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
	if (nonempty && *n == 0) {
		fail_at(lc, val, "%s must not be empty", what);
		return NULL;
	}
	void *arr = calloc(*n + 1, elem);
	if (!arr)
		fail_at(lc, val, "out of memory");
	return arr;
}

static yaml_node_t *seq_item(struct load_ctx *lc, const yaml_node_t *val, size_t i)
{
	return yaml_document_get_node(lc->doc, val->data.sequence.items.start[i]);
}

/* ---- sections ---- */

static bool load_listen(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct field fields[] = {
		{"host", F_STR, OFF(struct vg_listen, host), 0, 0, NULL},
		{"port", F_INT, OFF(struct vg_listen, port), 1, 65535, NULL},
		{"unix_socket_dir", F_STR, OFF(struct vg_listen, unix_socket_dir), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	size_t n;
	if (!(cfg->listen = seq_alloc(lc, val, "listen", sizeof(*cfg->listen), true, &n)))
		return false;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(lc, val, i);
		struct vg_listen *l = &cfg->listen[i];
		cfg->n_listen = i + 1;
		l->port = 6432;
		if (!load_mapping(lc, item, "a listen entry", fields, NULL, l))
			return false;
		if (l->host && l->unix_socket_dir)
			return fail_at(lc, item, "a listen entry has either host or unix_socket_dir, not both");
		if (!l->host && !l->unix_socket_dir)
			return fail_at(lc, item, "a listen entry needs host or unix_socket_dir");
		for (size_t j = 0; j < i; j++) {
			const struct vg_listen *o = &cfg->listen[j];
			bool same = o->port == l->port && ((o->host && l->host && !strcmp(o->host, l->host)) ||
			                                   (o->unix_socket_dir && l->unix_socket_dir &&
			                                    !strcmp(o->unix_socket_dir, l->unix_socket_dir)));
			if (same)
				return fail_at(lc, item, "duplicate listen entry (same address and port as entry %zu)", j + 1);
		}
	}
	return true;
}

static bool load_tls_client(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct enum_name modes[] = {
		{"disable", VG_CTLS_DISABLE}, {"allow", VG_CTLS_ALLOW}, {"require", VG_CTLS_REQUIRE}, {NULL, 0}};
	static const struct field fields[] = {
		{"mode", F_ENUM, OFF(struct vg_client_tls, mode), 0, 0, modes},
		{"cert", F_STR, OFF(struct vg_client_tls, cert_file), 0, 0, NULL},
		{"key", F_STR, OFF(struct vg_client_tls, key_file), 0, 0, NULL},
		{"ca", F_STR, OFF(struct vg_client_tls, ca_file), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	struct vg_client_tls *t = &((struct vg_config *)base)->client_tls;
	if (!load_mapping(lc, val, "tls.client", fields, NULL, t))
		return false;
	if (t->mode != VG_CTLS_DISABLE && (!t->cert_file || !t->key_file))
		return fail_at(lc, val, "tls.client needs cert and key when mode is not 'disable'");
	return true;
}

static bool load_tls_server(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct enum_name modes[] = {{"disable", VG_STLS_DISABLE},     {"prefer", VG_STLS_PREFER},
	                                         {"require", VG_STLS_REQUIRE},     {"verify-ca", VG_STLS_VERIFY_CA},
	                                         {"verify-full", VG_STLS_VERIFY_FULL}, {NULL, 0}};
	static const struct field fields[] = {
		{"mode", F_ENUM, OFF(struct vg_server_tls, mode), 0, 0, modes},
		{"ca", F_STR, OFF(struct vg_server_tls, ca_file), 0, 0, NULL},
		{"cert", F_STR, OFF(struct vg_server_tls, cert_file), 0, 0, NULL},
		{"key", F_STR, OFF(struct vg_server_tls, key_file), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	struct vg_server_tls *t = &((struct vg_config *)base)->server_tls;
	if (!load_mapping(lc, val, "tls.server", fields, NULL, t))
		return false;
	if (t->mode >= VG_STLS_VERIFY_CA && !t->ca_file)
		return fail_at(lc, val, "tls.server needs ca for mode verify-ca or verify-full");
	if (!t->cert_file != !t->key_file)
		return fail_at(lc, val, "tls.server needs both cert and key, or neither");
	return true;
}

static bool load_tls(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct custom_key custom[] = {{"client", load_tls_client}, {"server", load_tls_server}, {NULL, NULL}};
	return load_mapping(lc, val, "tls", NULL, custom, base);
}

static const struct enum_name role_names[] = {
	{"primary", VG_ROLE_PRIMARY}, {"replica", VG_ROLE_REPLICA}, {"fallback", VG_ROLE_FALLBACK}, {NULL, 0}};
static const struct enum_name session_attrs_names[] = {
	{"read-write", VG_TSA_READ_WRITE}, {"any", VG_TSA_ANY}, {NULL, 0}};
static const struct enum_name route_names[] = {{"primary", VG_ROUTE_PRIMARY},
                                               {"replica", VG_ROUTE_REPLICA},
                                               {"fallback", VG_ROUTE_FALLBACK},
                                               {"refuse", VG_ROUTE_REFUSE},
                                               {NULL, 0}};
const char *const config_policy_steps[VG_POLICY_STEPS] = {"preflight", "baseline", "build", "verify",
                                                          "swap",      "watch",    "retain"};

static bool load_backends(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct field fields[] = {
		{"host", F_STR, OFF(struct vg_backend, host), 0, 0, NULL},
		{"port", F_INT, OFF(struct vg_backend, port), 1, 65535, NULL},
		{"role", F_ENUM, OFF(struct vg_backend, role), 0, 0, role_names},
		{"serves", F_STR, OFF(struct vg_backend, serves), 0, 0, NULL},
		{"max_lag_bytes", F_SIZE, OFF(struct vg_backend, max_lag_bytes), 0, 0, NULL},
		{"max_lag_seconds", F_SECONDS, OFF(struct vg_backend, max_lag_seconds), 0, 0, NULL},
		{"target_session_attrs", F_ENUM, OFF(struct vg_backend, target_session_attrs), 0, 0, session_attrs_names},
		{NULL, 0, 0, 0, 0, NULL},
	};
	if (!expect(lc, val, YAML_MAPPING_NODE, "backends"))
		return false;
	size_t n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
	cfg->backends = calloc(n + 1, sizeof(*cfg->backends));
	if (!cfg->backends)
		return fail_at(lc, val, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &val->data.mapping.pairs.start[i];
		yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
		const char *name = scalar(k);
		if (!name || !name[0])
			return fail_at(lc, k, "backend names must be non-empty scalars");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->backends[j].name, name))
				return fail_at(lc, k, "duplicate backend '%s'", name);
		struct vg_backend *b = &cfg->backends[i];
		cfg->n_backends = i + 1;
		b->name = strdup(name);
		b->port = 5432;
		b->role = VG_ROLE_PRIMARY;
		b->max_lag_bytes = 16u << 20;
		b->max_lag_seconds = 10;
		char what[128];
		snprintf(what, sizeof(what), "backend '%s'", name);
		if (!load_mapping(lc, v, what, fields, NULL, b))
			return false;
		if (!b->host)
			return fail_at(lc, v, "backend '%s' needs host", name);
		if (b->role == VG_ROLE_PRIMARY && b->serves)
			return fail_at(lc, v, "backend '%s': serves is for role replica or fallback", name);
		if (b->role != VG_ROLE_PRIMARY && !b->serves)
			b->serves = strdup("primary");
		/* a replica or fallback only ever takes reads: asking it for
		 * writable sessions would refuse every one of them */
		if (b->role != VG_ROLE_PRIMARY && b->target_session_attrs == VG_TSA_READ_WRITE)
			return fail_at(lc, v, "backend '%s': target_session_attrs read-write is for role primary", name);
		if (b->target_session_attrs == VG_TSA_UNSET)
			b->target_session_attrs = b->role == VG_ROLE_PRIMARY ? VG_TSA_READ_WRITE : VG_TSA_ANY;
	}
	return true;
}

static bool load_databases(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct enum_name modes[] = {
		{"session", VG_POOL_SESSION}, {"transaction", VG_POOL_TRANSACTION}, {NULL, 0}};
	static const struct field fields[] = {
		{"name", F_STR, OFF(struct vg_database, name), 0, 0, NULL},
		{"dbname", F_STR, OFF(struct vg_database, dbname), 0, 0, NULL},
		{"backend", F_STR, OFF(struct vg_database, backend), 0, 0, NULL},
		{"user", F_STR, OFF(struct vg_database, user), 0, 0, NULL},
		{"password", F_STR, OFF(struct vg_database, password), 0, 0, NULL},
		{"pool_mode", F_ENUM, OFF(struct vg_database, pool_mode), 0, 0, modes},
		{"pool_size", F_INT, OFF(struct vg_database, pool_size), 1, 10000, NULL},
		{"min_pool_size", F_INT, OFF(struct vg_database, min_pool_size), 0, 10000, NULL},
		{"max_db_connections", F_INT, OFF(struct vg_database, max_db_connections), 0, 100000, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	size_t n;
	if (!(cfg->databases = seq_alloc(lc, val, "databases", sizeof(*cfg->databases), true, &n)))
		return false;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(lc, val, i);
		struct vg_database *d = &cfg->databases[i];
		cfg->n_databases = i + 1;
		d->pool_mode = VG_POOL_SESSION;
		d->pool_size = 20;
		if (!load_mapping(lc, item, "a database entry", fields, NULL, d))
			return false;
		if (!d->name || !d->name[0])
			return fail_at(lc, item, "a database entry needs name");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->databases[j].name, d->name))
				return fail_at(lc, item, "duplicate database '%s'", d->name);
		if (d->min_pool_size > d->pool_size)
			return fail_at(lc, item, "min_pool_size (%d) exceeds pool_size (%d)", d->min_pool_size, d->pool_size);
		if (d->password && !d->user)
			return fail_at(lc, item, "password is only used together with user (the forced backend user)");
		if (!d->dbname && strcmp(d->name, "*"))
			d->dbname = strdup(d->name);
		if (!d->backend)
			d->backend = strdup("primary");
		const struct vg_backend *be = config_find_backend(cfg, d->backend);
		if (!be)
			return fail_at(lc, item, "database '%s' names backend '%s', which is not in backends", d->name,
			               d->backend);
		if (be->role != VG_ROLE_PRIMARY)
			return fail_at(lc, item, "database '%s' names backend '%s', a %s: databases point at primaries", d->name,
			               d->backend, config_role_name(be->role));
	}
	return true;
}

static bool load_users(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct field fields[] = {
		{"name", F_STR, OFF(struct vg_user, name), 0, 0, NULL},
		{"password", F_STR, OFF(struct vg_user, password), 0, 0, NULL},
		{"server_password", F_STR, OFF(struct vg_user, server_password), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	size_t n;
	if (!(cfg->auth.users = seq_alloc(lc, val, "auth.users", sizeof(*cfg->auth.users), false, &n)))
		return false;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(lc, val, i);
		struct vg_user *u = &cfg->auth.users[i];
		cfg->auth.n_users = i + 1;
		if (!load_mapping(lc, item, "a user entry", fields, NULL, u))
			return false;
		if (!u->name || !u->name[0])
			return fail_at(lc, item, "a user entry needs name");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->auth.users[j].name, u->name))
				return fail_at(lc, item, "duplicate user '%s'", u->name);
		if (!u->password)
			return fail_at(lc, item, "user '%s' needs password", u->name);
		if (!strncmp(u->password, "SCRAM-SHA-256$", 14)) {
			struct scram_secret s;
			char why[128];
			if (scram_parse_secret(u->password, &s, why, sizeof(why)) < 0)
				return fail_at(lc, item, "user '%s': invalid SCRAM secret: %s", u->name, why);
		} else if (!strncmp(u->password, "md5", 3) && strlen(u->password) == 35) {
			for (const char *c = u->password + 3; *c; c++)
				if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
					return fail_at(lc, item, "user '%s': md5 secret must be 'md5' and 32 lowercase hex digits",
					               u->name);
		}
	}
	return true;
}

static bool load_auth(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct enum_name types[] = {
		{"trust", VG_AUTH_TRUST}, {"md5", VG_AUTH_MD5}, {"scram-sha-256", VG_AUTH_SCRAM}, {NULL, 0}};
	/* offsets are relative to the whole config: auth is nested in it */
	static const struct field fields[] = {
		{"type", F_ENUM, OFF(struct vg_config, auth.type), 0, 0, types},
		{"auth_query", F_STR, OFF(struct vg_config, auth.auth_query), 0, 0, NULL},
		{"auth_user", F_STR, OFF(struct vg_config, auth.auth_user), 0, 0, NULL},
		{"auth_password", F_STR, OFF(struct vg_config, auth.auth_password), 0, 0, NULL},
		{"auth_dbname", F_STR, OFF(struct vg_config, auth.auth_dbname), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	static const struct custom_key custom[] = {{"users", load_users}, {NULL, NULL}};
	if (!load_mapping(lc, val, "auth", fields, custom, cfg))
		return false;
	if (cfg->auth.auth_query && !cfg->auth.auth_user)
		return fail_at(lc, val, "auth.auth_query needs auth.auth_user");
	return true;
}

static bool load_simple_section(struct load_ctx *lc, const yaml_node_t *val, void *base, const char *what,
                                const struct field *fields)
{
	return load_mapping(lc, val, what, fields, NULL, base);
}

static bool load_timeouts(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"client_login", F_SECONDS, OFF(struct vg_config, timeouts.client_login), 0, 0, NULL},
		{"client_idle", F_SECONDS, OFF(struct vg_config, timeouts.client_idle), 0, 0, NULL},
		{"query_wait", F_SECONDS, OFF(struct vg_config, timeouts.query_wait), 0, 0, NULL},
		{"server_connect", F_SECONDS, OFF(struct vg_config, timeouts.server_connect), 0, 0, NULL},
		{"server_idle", F_SECONDS, OFF(struct vg_config, timeouts.server_idle), 0, 0, NULL},
		{"server_lifetime", F_SECONDS, OFF(struct vg_config, timeouts.server_lifetime), 0, 0, NULL},
		{"server_login_retry", F_SECONDS, OFF(struct vg_config, timeouts.server_login_retry), 0, 0, NULL},
		{"shutdown", F_SECONDS, OFF(struct vg_config, timeouts.shutdown), 0, 0, NULL},
		{"cancel_wait", F_SECONDS, OFF(struct vg_config, timeouts.cancel_wait), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	return load_simple_section(lc, val, base, "timeouts", fields);
}

static bool load_limits(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"max_client_conn", F_INT, OFF(struct vg_config, limits.max_client_conn), 1, 1000000, NULL},
		{"max_message_size", F_SIZE, OFF(struct vg_config, limits.max_message_size), 1024, 1073741824L, NULL},
		{"max_startup_size", F_SIZE, OFF(struct vg_config, limits.max_startup_size), 64, 1048576L, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	return load_simple_section(lc, val, base, "limits", fields);
}

static bool load_logging(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct enum_name levels[] = {{"debug", VG_LOG_DEBUG},
	                                          {"info", VG_LOG_INFO},
	                                          {"warning", VG_LOG_WARNING},
	                                          {"error", VG_LOG_ERROR},
	                                          {NULL, 0}};
	static const struct field fields[] = {
		{"level", F_ENUM, OFF(struct vg_config, logging.level), 0, 0, levels},
		{"file", F_STR, OFF(struct vg_config, logging.file), 0, 0, NULL},
		{"log_connections", F_BOOL, OFF(struct vg_config, logging.log_connections), 0, 0, NULL},
		{"log_disconnections", F_BOOL, OFF(struct vg_config, logging.log_disconnections), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	return load_simple_section(lc, val, base, "logging", fields);
}

static bool load_pool(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"server_reset_query", F_STR, OFF(struct vg_config, pool.server_reset_query), 0, 0, NULL},
		{"server_reset_query_always", F_BOOL, OFF(struct vg_config, pool.server_reset_query_always), 0, 0, NULL},
		{"max_prepared_statements", F_INT, OFF(struct vg_config, pool.max_prepared_statements), 0, 100000, NULL},
		{"statement_cache", F_SIZE, OFF(struct vg_config, pool.statement_cache), 0, 1073741824L, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	return load_simple_section(lc, val, base, "pool", fields);
}

static bool load_admin(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"host", F_STR, OFF(struct vg_config, admin.host), 0, 0, NULL},
		{"port", F_INT, OFF(struct vg_config, admin.port), 0, 65535, NULL},
		{"token", F_STR, OFF(struct vg_config, admin.token), 0, 0, NULL},
		{"metrics_without_token", F_BOOL, OFF(struct vg_config, admin.metrics_without_token), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	struct vg_config *cfg = base;
	if (!load_mapping(lc, val, "admin", fields, NULL, cfg))
		return false;
	if (cfg->admin.port && (!cfg->admin.token || strlen(cfg->admin.token) < 16))
		return fail_at(lc, val, "admin.token of at least 16 characters is required when admin.port is set");
	return true;
}

/* A mapping of scalar settings (name: value) into an array. */
static bool load_settings(struct load_ctx *lc, const yaml_node_t *val, const char *what, struct vg_setting **out,
                          size_t *n_out)
{
	if (!expect(lc, val, YAML_MAPPING_NODE, what))
		return false;
	size_t n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
	struct vg_setting *arr = calloc(n + 1, sizeof(*arr));
	if (!arr)
		return fail_at(lc, val, "out of memory");
	*out = arr;
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &val->data.mapping.pairs.start[i];
		yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
		const char *name = scalar(k), *value = scalar(v);
		if (!name || !value || !*value)
			return fail_at(lc, value ? k : v, "%s entries must be name: value scalars", what);
		for (const char *c = name; *c; c++)
			if (!(*c == '_' || *c == '.' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			      (*c >= '0' && *c <= '9')))
				return fail_at(lc, k, "%s: '%s' is not a valid setting name", what, name);
		arr[i].name = strdup(name);
		arr[i].value = strdup(value);
		*n_out = i + 1;
	}
	return true;
}

static bool load_idx_search(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_managed_index *m = base;
	return load_settings(lc, val, "search_settings", &m->search_settings, &m->n_search_settings);
}

static bool load_idx_with(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_managed_index *m = base;
	return load_settings(lc, val, "with", &m->with, &m->n_with);
}

static bool load_idx_maint(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_managed_index *m = base;
	return load_settings(lc, val, "maintenance_settings", &m->maintenance, &m->n_maintenance);
}

/* route_policy: {step: mode}; "keep" (or none) leaves the operator's mode. */
static bool load_idx_policy(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_managed_index *m = base;
	if (!expect(lc, val, YAML_MAPPING_NODE, "route_policy"))
		return false;
	for (int st = 0; st < VG_POLICY_STEPS; st++)
		m->route_policy[st] = -1;
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
		const char *step = scalar(k), *mode = scalar(v);
		int st = 0;
		while (st < VG_POLICY_STEPS && (!step || strcmp(step, config_policy_steps[st])))
			st++;
		if (st == VG_POLICY_STEPS)
			return fail_at(lc, k, "route_policy: unknown step '%s' (preflight, baseline, build, verify, swap, watch, retain)",
			               step ? step : "?");
		if (mode && !strcmp(mode, "keep"))
			continue;
		int rm = mode ? config_route_mode_parse(mode) : -1;
		if (rm < 0)
			return fail_at(lc, v, "route_policy: '%s' is not a route mode (primary, replica, fallback, refuse, keep)",
			               mode ? mode : "?");
		m->route_policy[st] = rm;
	}
	return true;
}

static bool load_health(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"user", F_STR, OFF(struct vg_config, health.user), 0, 0, NULL},
		{"password", F_STR, OFF(struct vg_config, health.password), 0, 0, NULL},
		{"dbname", F_STR, OFF(struct vg_config, health.dbname), 0, 0, NULL},
		{"interval", F_SECONDS, OFF(struct vg_config, health.interval), 0, 0, NULL},
		{"timeout", F_SECONDS, OFF(struct vg_config, health.timeout), 0, 0, NULL},
		{"quiet_interval", F_SECONDS, OFF(struct vg_config, health.quiet_interval), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	struct vg_config *cfg = base;
	if (!load_mapping(lc, val, "health_check", fields, NULL, cfg))
		return false;
	if (cfg->health.interval < 0.05)
		return fail_at(lc, val, "health_check.interval must be at least 0.05 seconds");
	if (cfg->health.timeout <= 0)
		return fail_at(lc, val, "health_check.timeout must be positive");
	return true;
}

static bool load_routing(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"refresh_seconds", F_SECONDS, OFF(struct vg_config, routing.refresh_seconds), 0, 0, NULL},
		{"hold_bytes", F_SIZE, OFF(struct vg_config, routing.hold_bytes), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	struct vg_config *cfg = base;
	if (!load_mapping(lc, val, "routing", fields, NULL, cfg))
		return false;
	if (cfg->routing.refresh_seconds < 0.1)
		return fail_at(lc, val, "routing.refresh_seconds must be at least 0.1");
	return true;
}

/* A nameserver as evdns takes it: "ip", "ip:port", "ipv6" or "[ipv6]:port".
 * Only addresses: a nameserver given by name would need a lookup first. */
static bool nameserver_valid(const char *s)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	unsigned char buf[sizeof(struct in6_addr)];
	int family = AF_INET;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || (size_t)(close - s - 1) >= sizeof(addr) || (close[1] && close[1] != ':'))
			return false;
		memcpy(addr, s + 1, (size_t)(close - s - 1));
		addr[close - s - 1] = 0;
		family = AF_INET6;
		port = close[1] ? close + 2 : NULL;
	} else if (strchr(s, ':') != strrchr(s, ':')) {
		if (strlen(s) >= sizeof(addr))
			return false;
		strcpy(addr, s); /* a bare IPv6 address: no port */
		family = AF_INET6;
	} else {
		const char *colon = strchr(s, ':');
		size_t n = colon ? (size_t)(colon - s) : strlen(s);
		if (n >= sizeof(addr))
			return false;
		memcpy(addr, s, n);
		addr[n] = 0;
		port = colon ? colon + 1 : NULL;
	}
	if (inet_pton(family, addr, buf) != 1)
		return false;
	if (port) {
		char *end;
		long v = strtol(port, &end, 10);
		if (end == port || *end || v < 1 || v > 65535)
			return false;
	}
	return true;
}

static bool load_nameservers(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	size_t n;
	if (!(cfg->dns.nameservers = seq_alloc(lc, val, "dns.nameservers", sizeof(char *), true, &n)))
		return false;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(lc, val, i);
		const char *s = scalar(item);
		if (!s || !nameserver_valid(s))
			return fail_at(lc, item, "dns.nameservers entries must be IP addresses, optionally with a port "
			               "(\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\"), got %s",
			               s ? s : type_name(item));
		cfg->dns.nameservers[i] = strdup(s);
		cfg->dns.n_nameservers = i + 1;
		if (!cfg->dns.nameservers[i])
			return fail_at(lc, item, "out of memory");
	}
	return true;
}

static bool load_dns(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct field fields[] = {
		{"max_ttl", F_SECONDS, OFF(struct vg_config, dns.max_ttl), 0, 0, NULL},
		{"min_ttl", F_SECONDS, OFF(struct vg_config, dns.min_ttl), 0, 0, NULL},
		{"nxdomain_ttl", F_SECONDS, OFF(struct vg_config, dns.nxdomain_ttl), 0, 0, NULL},
		{"timeout", F_SECONDS, OFF(struct vg_config, dns.timeout), 0, 0, NULL},
		{"attempts", F_INT, OFF(struct vg_config, dns.attempts), 1, 10, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
	static const struct custom_key custom[] = {{"nameservers", load_nameservers}, {NULL, NULL}};
	struct vg_config *cfg = base;
	if (!load_mapping(lc, val, "dns", fields, custom, cfg))
		return false;
	/* evdns takes at least 10 ms a try; a zero timeout would fail every lookup */
	if (cfg->dns.timeout < 0.01)
		return fail_at(lc, val, "dns.timeout must be at least 0.01 seconds");
	return true;
}

/* The highest $n in a query, outside '...' and "..." and comments: enough
 * to tell whether eval queries need values a traffic sample cannot give
 * (the eval runner counts again with the SQL lexer) */
static int highest_param(const char *sql)
{
	int max = 0;
	for (const char *p = sql; *p; p++) {
		if (*p == '\'' || *p == '"') {
			const char *q = strchr(p + 1, *p);
			if (!q)
				break;
			p = q;
		} else if (p[0] == '-' && p[1] == '-') {
			p += strcspn(p, "\n");
			if (!*p)
				break;
		} else if (*p == '$' && p[1] >= '0' && p[1] <= '9' && (p == sql || !(isalnum((unsigned char)p[-1]) ||
		                                                                      p[-1] == '_'))) {
			int n = atoi(p + 1);
			max = n > max ? n : max;
		}
	}
	return max;
}

/* The value node of key in a mapping, or the mapping itself (for an error's position). */
static const yaml_node_t *value_of(struct load_ctx *lc, const yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const char *k = scalar(yaml_document_get_node(lc->doc, p->key));
		if (k && !strcmp(k, key))
			return yaml_document_get_node(lc->doc, p->value);
	}
	return map;
}

/* One configured relation name (conf/sqlname.h), or an error at its value. */
static bool parse_name(struct load_ctx *lc, const yaml_node_t *item, const char *key, const char *text,
                       struct sqlname *out)
{
	size_t at = 0;
	enum sqlname_status st = sqlname_parse(text, out, &at);
	if (st != SQLNAME_OK)
		return fail_at(lc, value_of(lc, item, key), "%s '%s': %s (at character %zu); write it as SQL does "
		               "(\"Schema\".\"Name\") or raw (Schema.Name)", key, text, sqlname_strerror(st), at + 1);
	return true;
}

/* table: [schema.]table and index: [schema.]index, each as SQL writes it
 * or raw, into schema, table and index (unquoted, exactly as the catalog
 * spells them).  The index lives in its table's schema. */
static bool split_index_names(struct load_ctx *lc, const yaml_node_t *item, struct vg_managed_index *m)
{
	struct sqlname t, i;
	if (!parse_name(lc, item, "table", m->table, &t) || !parse_name(lc, item, "index", m->index, &i))
		return false;
	const char *schema = t.has_schema ? t.schema : "public";
	if (i.has_schema && strcmp(i.schema, schema))
		return fail_at(lc, value_of(lc, item, "index"), "index '%s' names schema \"%s\", but its table is in "
		               "schema \"%s\" (an index lives in its table's schema)", m->index, i.schema, schema);
	free(m->table);
	free(m->index);
	m->schema = strdup(schema);
	m->table = strdup(t.name);
	m->index = strdup(i.name);
	if (!m->schema || !m->table || !m->index)
		return fail_at(lc, item, "out of memory");
	return true;
}

/* method, opclass and expression: what can be judged without the catalog
 * (preflight checks the rest: the method and opclass exist, the opclass
 * orders by the live one's operator and accepts the key's type, the eval
 * query reads the expression) */
static bool check_shape(struct load_ctx *lc, const yaml_node_t *item, struct vg_managed_index *m)
{
	if (m->method) {
		bool ok = (m->method[0] >= 'a' && m->method[0] <= 'z') || m->method[0] == '_';
		for (const char *c = m->method; ok && *c; c++)
			ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
		if (!ok || strlen(m->method) > SQLNAME_MAX)
			return fail_at(lc, value_of(lc, item, "method"), "method '%s' is not an access method's name (e.g. hnsw, "
			               "ivfflat)", m->method);
	}
	if (m->opclass) {
		struct sqlname n;
		if (!parse_name(lc, item, "opclass", m->opclass, &n))
			return false;
		free(m->opclass);
		m->opclass = strdup(n.name);
		m->opclass_schema = n.has_schema ? strdup(n.schema) : NULL;
		if (!m->opclass || (n.has_schema && !m->opclass_schema))
			return fail_at(lc, item, "out of memory");
	}
	if (m->expression) {
		const char *c = m->expression;
		while (*c == ' ' || *c == '\t' || *c == '\n')
			c++;
		if (!*c)
			return fail_at(lc, value_of(lc, item, "expression"), "expression must not be empty (leave it out to "
			               "keep the live index's key)");
	}
	return true;
}

static bool load_indexes(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	struct vg_config *cfg = base;
	static const struct enum_name swap_modes[] = {
		{"auto", VG_SWAP_AUTO}, {"flip", VG_SWAP_FLIP}, {"rename", VG_SWAP_RENAME}, {"hint", VG_SWAP_HINT},
		{NULL, 0}};
	static const struct enum_name eval_sources[] = {
		{"file", VG_EVAL_FILE}, {"traffic", VG_EVAL_TRAFFIC}, {"both", VG_EVAL_BOTH}, {NULL, 0}};
	static const struct enum_name plan_modes[] = {{"auto", VG_PLAN_AUTO}, {"off", VG_PLAN_OFF}, {NULL, 0}};
	static const struct enum_name partitions_modes[] = {
		{"whole", VG_PARTITIONS_WHOLE}, {"rolling", VG_PARTITIONS_ROLLING}, {NULL, 0}};
	static const struct enum_name over_limit[] = {{"refuse", VG_OVER_REFUSE}, {"approve", VG_OVER_APPROVE}, {NULL, 0}};
	static const struct enum_name truth_modes[] = {{"auto", VG_TRUTH_AUTO},
	                                               {"exact_scan", VG_TRUTH_EXACT_SCAN},
	                                               {"per_query", VG_TRUTH_PER_QUERY},
	                                               {NULL, 0}};
#define MI(member) OFF(struct vg_managed_index, member)
	static const struct field fields[] = {
		{"name", F_STR, MI(name), 0, 0, NULL},
		{"database", F_STR, MI(database), 0, 0, NULL},
		{"backend", F_STR, MI(backend), 0, 0, NULL},
		{"table", F_STR, MI(table), 0, 0, NULL},
		{"index", F_STR, MI(index), 0, 0, NULL},
		{"user", F_STR, MI(user), 0, 0, NULL},
		{"password", F_STR, MI(password), 0, 0, NULL},
		{"k", F_INT, MI(k), 1, 10000, NULL},
		{"eval_file", F_STR, MI(eval_file), 0, 0, NULL},
		{"eval_query", F_STR, MI(eval_query), 0, 0, NULL},
		{"eval_source", F_ENUM, MI(eval_source), 0, 0, eval_sources},
		{"traffic_sample_size", F_INT, MI(traffic_sample_size), 0, 1000000, NULL},
		{"traffic_min_samples", F_INT, MI(traffic_min_samples), 1, 1000000, NULL},
		{"ground_truth", F_ENUM, MI(ground_truth), 0, 0, truth_modes},
		{"recall_tolerance", F_SECONDS, MI(recall_tolerance), 0, 0, NULL},
		{"latency_tolerance", F_SECONDS, MI(latency_tolerance), 0, 0, NULL},
		{"latency_budget_ms", F_SECONDS, MI(latency_budget_ms), 0, 0, NULL},
		{"max_attempts", F_INT, MI(max_attempts), 1, 100, NULL},
		{"backoff_seconds", F_SECONDS, MI(backoff_seconds), 0, 0, NULL},
		{"swap_mode", F_ENUM, MI(swap_mode), 0, 0, swap_modes},
		{"lock_timeout_ms", F_INT, MI(lock_timeout_ms), 1, 60000, NULL},
		{"swap_attempts", F_INT, MI(swap_attempts), 1, 1000, NULL},
		{"watch_seconds", F_SECONDS, MI(watch_seconds), 0, 0, NULL},
		{"watch_error_rate_increase", F_SECONDS, MI(watch_error_rate_increase), 0, 0, NULL},
		{"watch_proof_rollback", F_BOOL, MI(watch_proof_rollback), 0, 0, NULL},
		{"takeover_seconds", F_SECONDS, MI(takeover_seconds), 0, 0, NULL},
		{"retention_seconds", F_SECONDS, MI(retention_seconds), 0, 0, NULL},
		{"max_transaction_age", F_SECONDS, MI(max_transaction_age), 0, 0, NULL},
		{"free_space_query", F_STR, MI(free_space_query), 0, 0, NULL},
		{"free_space_bytes", F_SIZE, MI(free_space_bytes), 0, 0, NULL},
		{"drop_invalid", F_BOOL, MI(drop_invalid), 0, 0, NULL},
		{"max_build_seconds", F_SECONDS, MI(max_build_seconds), 0, 0, NULL},
		{"plan", F_ENUM, MI(plan), 0, 0, plan_modes},
		{"partitions", F_ENUM, MI(partitions), 0, 0, partitions_modes},
		{"plan_over_limit", F_ENUM, MI(plan_over_limit), 0, 0, over_limit},
		{"plan_sample_fraction", F_SECONDS, MI(plan_sample_fraction), 0, 0, NULL},
		{"plan_min_rows", F_INT, MI(plan_min_rows), 100, 100000000, NULL},
		{"approve_swap", F_BOOL, MI(approve_swap), 0, 0, NULL},
		{"route", F_ENUM, MI(route), 0, 0, route_names},
		{"drift_check_seconds", F_SECONDS, MI(drift_check_seconds), 0, 0, NULL},
		{"drift_tolerance", F_SECONDS, MI(drift_tolerance), 0, 0, NULL},
		{"drift_propose_rebuild", F_BOOL, MI(drift_propose_rebuild), 0, 0, NULL},
		{"method", F_STR, MI(method), 0, 0, NULL},
		{"opclass", F_STR, MI(opclass), 0, 0, NULL},
		{"expression", F_STR, MI(expression), 0, 0, NULL},
		{NULL, 0, 0, 0, 0, NULL},
	};
#undef MI
	static const struct custom_key custom[] = {{"search_settings", load_idx_search},
	                                           {"with", load_idx_with},
	                                           {"maintenance_settings", load_idx_maint},
	                                           {"route_policy", load_idx_policy},
	                                           {NULL, NULL}};
	size_t n;
	if (!(cfg->indexes = seq_alloc(lc, val, "managed_indexes", sizeof(*cfg->indexes), false, &n)))
		return false;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(lc, val, i);
		struct vg_managed_index *m = &cfg->indexes[i];
		cfg->n_indexes = i + 1;
		m->k = 10;
		m->recall_tolerance = 0.02;
		m->latency_tolerance = 0.5;
		m->max_attempts = 3;
		m->backoff_seconds = 2;
		m->lock_timeout_ms = 50;
		/* preflight plans unless told not to: the memory and disk
		 * verdicts are exact, and a duration is only held against a
		 * window the operator sets (max_build_seconds) */
		m->plan = VG_PLAN_AUTO;
		m->swap_attempts = 20;
		m->watch_seconds = 60;
		m->watch_error_rate_increase = 0.01;
		m->watch_proof_rollback = true;
		m->takeover_seconds = 10;
		m->retention_seconds = 86400;
		m->max_transaction_age = 300;
		m->plan_sample_fraction = 0.05;
		m->plan_min_rows = 2000;
		m->drift_tolerance = 0.05;
		m->drift_propose_rebuild = true;
		m->traffic_sample_size = -1; /* default depends on eval_source */
		m->traffic_min_samples = 100;
		/* vector reads move off the primary while it builds and verifies */
		for (int st = 0; st < VG_POLICY_STEPS; st++)
			m->route_policy[st] = -1;
		m->route_policy[2] = VG_ROUTE_REPLICA;
		m->route_policy[3] = VG_ROUTE_REPLICA;
		if (!load_mapping(lc, item, "a managed index", fields, custom, m))
			return false;
		if (!m->table || !m->index || !m->database)
			return fail_at(lc, item, "a managed index needs database, table and index");
		if (!m->eval_query)
			return fail_at(lc, item, "managed index '%s' needs eval_query (the recall gate)", m->index);
		if (!m->eval_file && m->eval_source != VG_EVAL_TRAFFIC)
			return fail_at(lc, item, "managed index '%s' needs eval_file, or eval_source: traffic (the recall gate)",
			               m->index);
		if (m->eval_file && m->eval_source == VG_EVAL_TRAFFIC)
			return fail_at(lc, item, "managed index '%s': eval_file is set but eval_source is traffic (use both)",
			               m->index);
		if (m->eval_source != VG_EVAL_FILE && highest_param(m->eval_query) > 2)
			return fail_at(lc, value_of(lc, item, "eval_query"), "managed index '%s': eval_query uses parameters "
			               "after $2, which only eval_file lines give (\"VECTOR ; v3 ; ...\"); a traffic sample is "
			               "the query vector alone: use eval_source: file", m->index);
		if (!(m->plan_sample_fraction > 0 && m->plan_sample_fraction <= 0.5))
			return fail_at(lc, item, "managed index '%s': plan_sample_fraction must be above 0 and at most 0.5 (the "
			               "largest trial build's share of the table)", m->index);
		if (m->max_build_seconds > 0 && m->plan == VG_PLAN_OFF)
			return fail_at(lc, value_of(lc, item, "max_build_seconds"), "managed index '%s': max_build_seconds "
			               "needs plan: auto (the window is checked against the build plan's prediction)", m->index);
		/* refused here, not half-way through a job: a partition swapped
		 * alone goes back alone only by a validity flip (preflight refuses
		 * rolling when auto picks another mode) */
		if (m->partitions == VG_PARTITIONS_ROLLING && (m->swap_mode == VG_SWAP_RENAME || m->swap_mode == VG_SWAP_HINT))
			return fail_at(lc, value_of(lc, item, "partitions"), "managed index '%s': partitions: rolling needs swap "
			               "mode flip (swap_mode: flip or auto with a superuser role), not swap_mode: %s; use "
			               "partitions: whole", m->index, m->swap_mode == VG_SWAP_RENAME ? "rename" : "hint");
		if (m->plan_over_limit == VG_OVER_APPROVE && m->plan == VG_PLAN_OFF)
			return fail_at(lc, value_of(lc, item, "plan_over_limit"), "managed index '%s': plan_over_limit needs "
			               "plan: auto (without a plan there is no limit to be over)", m->index);
		if (m->traffic_sample_size < 0)
			m->traffic_sample_size = m->eval_source == VG_EVAL_FILE ? 0 : 1000;
		if (m->eval_source != VG_EVAL_FILE && m->traffic_sample_size == 0)
			return fail_at(lc, item, "managed index '%s': eval_source takes traffic, so traffic_sample_size must be "
			               "above 0", m->index);
		if (!split_index_names(lc, item, m) || !check_shape(lc, item, m))
			return false;
		if (!m->name)
			m->name = strdup(m->index);
		if (!m->backend)
			m->backend = strdup("primary");
		if (!config_find_backend(cfg, m->backend))
			return fail_at(lc, item, "managed index '%s' names backend '%s', which is not in backends", m->name,
			               m->backend);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->indexes[j].name, m->name))
				return fail_at(lc, item, "duplicate managed index '%s'", m->name);
	}
	return true;
}

static bool load_ddl_guard(struct load_ctx *lc, const yaml_node_t *val, void *base)
{
	static const struct enum_name modes[] = {{"block", 0}, {"warn", 1}, {"allow", 2}, {NULL, 0}};
	static const struct field f = {"ddl_guard", F_ENUM, OFF(struct vg_config, ddl_guard), 0, 0, modes};
	return set_field(lc, &f, base, val);
}

static void set_defaults(struct vg_config *cfg)
{
	cfg->timeouts = (struct vg_timeouts){
		.client_login = 15,
		.client_idle = 0,
		.query_wait = 120,
		.server_connect = 15,
		.server_idle = 600,
		.server_lifetime = 3600,
		.server_login_retry = 1,
		.shutdown = 30,
		.cancel_wait = 10,
	};
	cfg->limits.max_client_conn = 1000;
	cfg->limits.max_message_size = 16u << 20;
	cfg->limits.max_startup_size = 10000;
	cfg->logging.level = VG_LOG_INFO;
	cfg->logging.log_connections = true;
	cfg->logging.log_disconnections = true;
	cfg->auth.type = VG_AUTH_SCRAM;
	cfg->pool.max_prepared_statements = 200; /* as PgBouncer 1.22 */
	cfg->pool.statement_cache = 4u << 20;
	cfg->health.interval = 1;
	cfg->health.timeout = 3;
	cfg->health.quiet_interval = 10;
	cfg->routing.refresh_seconds = 5;
	cfg->routing.hold_bytes = 1u << 20;
	/* PgBouncer's dns_max_ttl and dns_nxdomain_ttl; glibc's timeout and attempts */
	cfg->dns = (struct vg_dns){.max_ttl = 15, .min_ttl = 1, .nxdomain_ttl = 15, .timeout = 5, .attempts = 2};
}

static struct vg_config *load_document(const char *name, yaml_parser_t *parser, char *errbuf, size_t errlen)
{
	struct load_ctx lc = {.name = name, .err = errbuf, .errlen = errlen};
	yaml_document_t doc;
	struct vg_config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		snprintf(errbuf, errlen, "%s: out of memory", name);
		return NULL;
	}
	set_defaults(cfg);
	cfg->path = strdup(name);
	if (!yaml_parser_load(parser, &doc)) {
		snprintf(errbuf, errlen, "%s:%zu:%zu: YAML syntax error: %s%s%s", name, parser->problem_mark.line + 1,
		         parser->problem_mark.column + 1, parser->problem ? parser->problem : "unknown problem",
		         parser->context ? " " : "", parser->context ? parser->context : "");
		config_free(cfg);
		return NULL;
	}
	lc.doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		fail_at(&lc, NULL, "the configuration is empty: it needs at least backends and databases");
		goto failed;
	}
	static const struct custom_key sections[] = {
		{"listen", load_listen},     {"tls", load_tls},           {"backends", load_backends},
		{"databases", NULL},         {"auth", load_auth},         {"timeouts", load_timeouts},
		{"limits", load_limits},     {"logging", load_logging},   {"pool", load_pool},
		{"admin", load_admin},       {"managed_indexes", load_indexes}, {"ddl_guard", load_ddl_guard},
		{"health_check", load_health}, {"routing", load_routing},   {"dns", load_dns},
		{NULL, NULL},
	};
	/* backends first: databases refer to them */
	if (!expect(&lc, root, YAML_MAPPING_NODE, "the top level"))
		goto failed;
	yaml_node_t *dbnode = NULL, *benode = NULL;
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		const char *key = scalar(yaml_document_get_node(&doc, p->key));
		if (key && !strcmp(key, "databases"))
			dbnode = yaml_document_get_node(&doc, p->value);
		if (key && !strcmp(key, "backends"))
			benode = yaml_document_get_node(&doc, p->value);
	}
	if (!benode) {
		fail_at(&lc, root, "missing required key 'backends' (at least a 'primary' backend)");
		goto failed;
	}
	if (!load_backends(&lc, benode, cfg))
		goto failed;
	if (!config_find_backend(cfg, "primary")) {
		fail_at(&lc, benode, "backends must contain 'primary'");
		goto failed;
	}
	if (!dbnode) {
		fail_at(&lc, root, "missing required key 'databases'");
		goto failed;
	}
	if (!load_databases(&lc, dbnode, cfg))
		goto failed;
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		yaml_node_t *v = yaml_document_get_node(&doc, p->value);
		const char *key = scalar(k);
		const struct custom_key *sec = sections;
		while (sec->key && (!key || strcmp(sec->key, key)))
			sec++;
		if (!sec->key) {
			fail_at(&lc, k, "unknown top-level key '%s'", key ? key : "?");
			goto failed;
		}
		for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p; q++) {
			const char *prev = scalar(yaml_document_get_node(&doc, q->key));
			if (prev && key && !strcmp(prev, key)) {
				fail_at(&lc, k, "duplicate top-level key '%s'", key);
				goto failed;
			}
		}
		if (!strcmp(key, "backends") || !strcmp(key, "databases"))
			continue;
		if (!sec->fn(&lc, v, cfg))
			goto failed;
	}
	if (!cfg->listen) {
		cfg->listen = calloc(1, sizeof(*cfg->listen));
		if (!cfg->listen) {
			fail_at(&lc, root, "out of memory");
			goto failed;
		}
		cfg->listen[0].host = strdup("127.0.0.1");
		cfg->listen[0].port = 6432;
		cfg->n_listen = 1;
	}
	if (!cfg->pool.server_reset_query)
		cfg->pool.server_reset_query = strdup("DISCARD ALL");
	if (!cfg->admin.host)
		cfg->admin.host = strdup("127.0.0.1");
	if (!cfg->health.dbname)
		cfg->health.dbname = strdup("postgres");
	for (size_t i = 0; i < cfg->n_backends; i++) {
		const struct vg_backend *b = &cfg->backends[i], *of = b->serves ? config_find_backend(cfg, b->serves) : NULL;
		if (b->serves && (!of || of->role != VG_ROLE_PRIMARY)) {
			fail_at(&lc, benode, "backend '%s' serves '%s', which is not a backend with role primary", b->name,
			        b->serves);
			goto failed;
		}
		if (cfg->backends[i].role != VG_ROLE_PRIMARY && !cfg->health.user) {
			fail_at(&lc, benode, "backend '%s' is a %s: health_check.user is needed to watch it",
			        cfg->backends[i].name, config_role_name(cfg->backends[i].role));
			goto failed;
		}
	}
	yaml_document_delete(&doc);
	return cfg;
failed:
	yaml_document_delete(&doc);
	config_free(cfg);
	return NULL;
}

struct vg_config *config_load_string(const char *name, const char *yaml, size_t len, char *errbuf, size_t errlen)
{
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(errbuf, errlen, "%s: cannot initialise the YAML parser", name);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	struct vg_config *cfg = load_document(name, &parser, errbuf, errlen);
	yaml_parser_delete(&parser);
	return cfg;
}

struct vg_config *config_load(const char *path, char *errbuf, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		snprintf(errbuf, errlen, "%s:1:1: cannot open configuration file: %s", path, strerror(errno));
		return NULL;
	}
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		fclose(fp);
		snprintf(errbuf, errlen, "%s: cannot initialise the YAML parser", path);
		return NULL;
	}
	yaml_parser_set_input_file(&parser, fp);
	struct vg_config *cfg = load_document(path, &parser, errbuf, errlen);
	yaml_parser_delete(&parser);
	fclose(fp);
	return cfg;
}

void config_free(struct vg_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	for (size_t i = 0; i < cfg->n_listen; i++) {
		free(cfg->listen[i].host);
		free(cfg->listen[i].unix_socket_dir);
	}
	free(cfg->listen);
	free(cfg->client_tls.cert_file);
	free(cfg->client_tls.key_file);
	free(cfg->client_tls.ca_file);
	free(cfg->server_tls.ca_file);
	free(cfg->server_tls.cert_file);
	free(cfg->server_tls.key_file);
	for (size_t i = 0; i < cfg->n_backends; i++) {
		free(cfg->backends[i].name);
		free(cfg->backends[i].host);
		free(cfg->backends[i].serves);
	}
	free(cfg->backends);
	for (size_t i = 0; i < cfg->n_databases; i++) {
		struct vg_database *d = &cfg->databases[i];
		free(d->name);
		free(d->dbname);
		free(d->backend);
		free(d->user);
		free(d->password);
	}
	free(cfg->databases);
	for (size_t i = 0; i < cfg->auth.n_users; i++) {
		free(cfg->auth.users[i].name);
		free(cfg->auth.users[i].password);
		free(cfg->auth.users[i].server_password);
	}
	free(cfg->auth.users);
	free(cfg->auth.auth_query);
	free(cfg->auth.auth_user);
	free(cfg->auth.auth_password);
	free(cfg->auth.auth_dbname);
	free(cfg->logging.file);
	free(cfg->pool.server_reset_query);
	free(cfg->admin.host);
	free(cfg->admin.token);
	free(cfg->health.user);
	free(cfg->health.password);
	free(cfg->health.dbname);
	for (size_t i = 0; i < cfg->dns.n_nameservers; i++)
		free(cfg->dns.nameservers[i]);
	free(cfg->dns.nameservers);
	for (size_t i = 0; i < cfg->n_indexes; i++) {
		struct vg_managed_index *m = &cfg->indexes[i];
		char **strs[] = {&m->name,       &m->database,   &m->backend,          &m->schema,         &m->table,
		                 &m->index,      &m->user,       &m->password,         &m->eval_file,      &m->eval_query,
		                 &m->free_space_query, &m->method, &m->opclass_schema, &m->opclass, &m->expression};
		for (size_t j = 0; j < sizeof(strs) / sizeof(*strs); j++)
			free(*strs[j]);
		struct vg_setting *lists[] = {m->search_settings, m->with, m->maintenance};
		size_t counts[] = {m->n_search_settings, m->n_with, m->n_maintenance};
		for (size_t l = 0; l < 3; l++) {
			for (size_t j = 0; j < counts[l]; j++) {
				free(lists[l][j].name);
				free(lists[l][j].value);
			}
			free(lists[l]);
		}
	}
	free(cfg->indexes);
	free(cfg->pool.application_name_add_host);
	free(cfg);
}

const struct vg_backend *config_find_backend(const struct vg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_backends; i++)
		if (cfg->backends[i].name && !strcmp(cfg->backends[i].name, name))
			return &cfg->backends[i];
	return NULL;
}

const struct vg_database *config_find_database(const struct vg_config *cfg, const char *name)
{
	const struct vg_database *wild = NULL;
	for (size_t i = 0; i < cfg->n_databases; i++) {
		if (!strcmp(cfg->databases[i].name, name))
			return &cfg->databases[i];
		if (!strcmp(cfg->databases[i].name, "*"))
			wild = &cfg->databases[i];
	}
	return wild;
}

const struct vg_user *config_find_user(const struct vg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->auth.n_users; i++)
		if (!strcmp(cfg->auth.users[i].name, name))
			return &cfg->auth.users[i];
	return NULL;
}

const struct vg_managed_index *config_find_index(const struct vg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_indexes; i++)
		if (!strcmp(cfg->indexes[i].name, name))
			return &cfg->indexes[i];
	return NULL;
}

const char *config_pool_mode_name(enum vg_pool_mode m)
{
	return m == VG_POOL_TRANSACTION ? "transaction" : "session";
}

static const char *enum_label(const struct enum_name *names, int v)
{
	for (; names->name; names++)
		if (names->value == v)
			return names->name;
	return "?";
}

const char *config_route_mode_name(enum vg_route_mode m)
{
	return enum_label(route_names, (int)m);
}

int config_route_mode_parse(const char *s)
{
	const struct enum_name *e = enum_lookup(route_names, s);
	return e ? e->value : -1;
}

const char *config_role_name(enum vg_backend_role r)
{
	return enum_label(role_names, (int)r);
}

const char *config_session_attrs_name(enum vg_session_attrs a)
{
	return enum_label(session_attrs_names, (int)a);
}
