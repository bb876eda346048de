/*
 * Let named prepared statements survive transaction pooling: a per-pool
 * registry of statement texts (each prepared on servers under a stable name
 * "vg_<id>"), each client's own names for them, the set of statements each
 * server has prepared, and the rewrite of a client's Parse/Bind/Describe/
 * Close into requests about the registry's statements.
 */
#include "proxy/prepared.h"
#include "proxy/conn.h"
#include "proxy/pending.h"
#include "proxy/route_table.h"
#include "protocol/pgproto.h"
#include "routing/pin_hint.h"

#include <event2/buffer.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing ---- */

static uint64_t fnv1a(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* ---- statement registry; unused statements are an LRU list, oldest first ---- */

static void unused_remove(struct stmt_registry *r, struct prep_stmt *st)
{
	if (st->lru_prev)
		st->lru_prev->lru_next = st->lru_next;
	else if (r->unused_head == st)
		r->unused_head = st->lru_next;
	else
		return; /* not on the list */
	if (st->lru_next)
		st->lru_next->lru_prev = st->lru_prev;
	else
		r->unused_tail = st->lru_prev;
	st->lru_prev = st->lru_next = NULL;
}

static void unused_append(struct stmt_registry *r, struct prep_stmt *st)
{
	st->lru_next = NULL;
	st->lru_prev = r->unused_tail;
	if (r->unused_tail)
		r->unused_tail->lru_next = st;
	else
		r->unused_head = st;
	r->unused_tail = st;
}

static void stmt_free(struct prep_stmt *st)
{
	free(st->hint);
	free(st->tail);
	free(st->cls);
	free(st);
}

/* Forget unused statements, oldest first, while the texts no client holds
 * exceed the cache (`keep` is spared: it is being handed out right now). */
static void registry_trim(struct stmt_registry *r, size_t cache, const struct prep_stmt *keep)
{
	while (r->unused_bytes > cache && r->unused_head && r->unused_head != keep) {
		struct prep_stmt *st = r->unused_head;
		unused_remove(r, st);
		hashtab_remove(&r->texts, &st->link);
		r->unused_bytes -= st->tail_len;
		r->bytes -= st->tail_len;
		stmt_free(st); /* its id is never reused: servers that prepared it just keep a stale name */
	}
}

static void stmt_set_id(struct prep_stmt *st, uint32_t id)
{
	char sname[24];
	st->id = id;
	stmt_server_name(id, sname);
	st->sname_len = (uint8_t)strlen(sname);
	assert(st->sname_len < sizeof(st->sname));
	memcpy(st->sname, sname, st->sname_len + 1);
}

struct prep_stmt *registry_intern(struct stmt_registry *r, const uint8_t *tail, size_t len, size_t cache)
{
	uint64_t h = fnv1a(tail, len);
	for (struct hash_link *l = hashtab_first(&r->texts, h); l; l = hashtab_next(l)) {
		struct prep_stmt *st = hashtab_entry(l, struct prep_stmt, link);
		if (st->tail_len == len && memcmp(st->tail, tail, len) == 0)
			return st;
	}
	struct prep_stmt *st = calloc(1, sizeof(*st));
	if (!st)
		abort();
	st->tail = malloc(len ? len : 1);
	if (!st->tail)
		abort();
	memcpy(st->tail, tail, len);
	st->tail_len = len;
	stmt_set_id(st, ++r->next_id);
	st->reg = r;
	st->pin_gen = routes_pin_gen - 1; /* the hint is found at its first use */
	if (!hashtab_insert(&r->texts, &st->link, h))
		abort();
	r->bytes += len;
	/* unused until a client name points at it */
	unused_append(r, st);
	r->unused_bytes += len;
	registry_trim(r, cache, st);
	return st;
}

void stmt_hold(struct prep_stmt *st)
{
	if (st->refs++ == 0) {
		unused_remove(st->reg, st);
		st->reg->unused_bytes -= st->tail_len;
	}
}

void stmt_release(struct prep_stmt *st, size_t cache)
{
	assert(st->refs > 0);
	if (--st->refs == 0) {
		unused_append(st->reg, st);
		st->reg->unused_bytes += st->tail_len;
		registry_trim(st->reg, cache, NULL);
	}
}

void registry_free(struct stmt_registry *r)
{
	struct hashtab_walk w = {0};
	for (struct hash_link *l; (l = hashtab_walk(&r->texts, &w));)
		stmt_free(hashtab_entry(l, struct prep_stmt, link));
	hashtab_free(&r->texts);
	memset(r, 0, sizeof(*r));
}

void stmt_server_name(uint32_t id, char out[24])
{
	snprintf(out, 24, "vg_%u", id);
}

/* The statement's hint under the pins in force.  A changed hint is a new
 * text for the servers: a new id, so each server prepares it on its next
 * use (the old name stays on servers that had it, unused, as after a trim). */
void stmt_repin(struct prep_stmt *st)
{
	if (st->pin_gen == routes_pin_gen)
		return;
	st->pin_gen = routes_pin_gen;
	char hint[1400];
	size_t hl = 0;
	int route = -1, v = PIN_NOT_READ;
	const char *why;
	if (routes_pinning() && st->reg->dbname)
		v = routes_pin_hint(st->reg->dbname, (const char *)st->tail, strnlen((const char *)st->tail, st->tail_len),
		                    hint, sizeof(hint), &hl, &route, &why);
	st->pin_verdict = (int8_t)v;
	st->pin_route = (int16_t)route;
	if (hl == st->hint_len && (!hl || !memcmp(hint, st->hint, hl)))
		return;
	free(st->hint);
	st->hint = NULL;
	if (hl && !(st->hint = malloc(hl)))
		abort();
	if (hl)
		memcpy(st->hint, hint, hl);
	st->hint_len = (uint16_t)hl;
	stmt_set_id(st, ++st->reg->next_id);
}

/* A Bind of the statement is one read of its pinned route. */
static void stmt_count_read(const struct prep_stmt *st)
{
	if (st->pin_verdict == PIN_NOT_READ)
		return;
	/* the text's length is needed only for the log of an unpinned read:
	 * a pinned Bind (the hot case) does not measure it */
	size_t len = st->pin_verdict == PIN_UNSAFE ? strnlen((const char *)st->tail, st->tail_len) : 0;
	routes_pin_count(st->pin_route, st->pin_verdict, "the statement cannot be pinned", (const char *)st->tail, len);
}

/* ---- client name map ---- */

static struct name_map_entry *name_map_find(const struct name_map *m, const char *name, uint64_t h)
{
	for (struct hash_link *l = hashtab_first(&m->names, h); l; l = hashtab_next(l)) {
		struct name_map_entry *e = hashtab_entry(l, struct name_map_entry, link);
		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static struct name_map_entry *name_map_entry_of(struct name_map *m, const char *name)
{
	return m->names.count ? name_map_find(m, name, fnv1a(name, strlen(name))) : NULL;
}

struct prep_stmt *name_map_get(struct name_map *m, const char *name)
{
	struct name_map_entry *e = name_map_entry_of(m, name);
	return e ? e->stmt : NULL;
}

void name_map_put(struct name_map *m, const char *name, struct prep_stmt *st, size_t cache)
{
	uint64_t h = fnv1a(name, strlen(name));
	stmt_hold(st);
	struct name_map_entry *e = name_map_find(m, name, h);
	if (e) {
		stmt_release(e->stmt, cache);
		e->stmt = st;
		return;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name)) || !hashtab_insert(&m->names, &e->link, h))
		abort();
	e->stmt = st;
}

void name_map_del(struct name_map *m, const char *name, size_t cache)
{
	if (!m->names.count)
		return;
	struct name_map_entry *e = name_map_find(m, name, fnv1a(name, strlen(name)));
	if (!e)
		return;
	hashtab_remove(&m->names, &e->link);
	stmt_release(e->stmt, cache);
	free(e->name);
	free(e);
}

void name_map_free(struct name_map *m, size_t cache)
{
	struct hashtab_walk w = {0};
	for (struct hash_link *l; (l = hashtab_walk(&m->names, &w));) {
		struct name_map_entry *e = hashtab_entry(l, struct name_map_entry, link);
		stmt_release(e->stmt, cache);
		free(e->name);
		free(e);
	}
	hashtab_free(&m->names);
	memset(m, 0, sizeof(*m));
}

/* ---- id set: a bitmap, ids are small and dense per pool ---- */

bool id_set_has(const struct id_set *s, uint32_t id)
{
	size_t byte = id / 8;
	return byte < s->nbytes && (s->bits[byte] & (1u << (id % 8)));
}

static void order_remove(struct id_set *s, uint32_t id)
{
	/* recently used ids sit at the end: search from there */
	for (size_t i = s->count; i-- > 0;) {
		if (s->order[i] == id) {
			memmove(s->order + i, s->order + i + 1, (s->count - i - 1) * sizeof(*s->order));
			s->count--;
			return;
		}
	}
}

void id_set_add(struct id_set *s, uint32_t id)
{
	if (id_set_has(s, id)) {
		id_set_touch(s, id);
		return;
	}
	size_t byte = id / 8;
	if (byte >= s->nbytes) {
		size_t nb = s->nbytes ? s->nbytes : 64;
		while (nb <= byte)
			nb *= 2;
		uint8_t *n = realloc(s->bits, nb);
		if (!n)
			abort();
		memset(n + s->nbytes, 0, nb - s->nbytes);
		s->bits = n;
		s->nbytes = nb;
	}
	if (s->count == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		uint32_t *o = realloc(s->order, cap * sizeof(*o));
		if (!o)
			abort();
		s->order = o;
		s->cap = cap;
	}
	s->bits[byte] |= (uint8_t)(1u << (id % 8));
	s->order[s->count++] = id;
}

void id_set_touch(struct id_set *s, uint32_t id)
{
	if (!id_set_has(s, id) || (s->count && s->order[s->count - 1] == id))
		return;
	order_remove(s, id);
	s->order[s->count++] = id;
}

void id_set_del(struct id_set *s, uint32_t id)
{
	if (!id_set_has(s, id))
		return;
	s->bits[id / 8] &= (uint8_t)~(1u << (id % 8));
	order_remove(s, id);
}

void id_set_clear(struct id_set *s)
{
	if (s->bits)
		memset(s->bits, 0, s->nbytes);
	s->count = 0;
}

void id_set_free(struct id_set *s)
{
	free(s->bits);
	free(s->order);
	memset(s, 0, sizeof(*s));
}

/* ---- rewriting a client's extended-protocol messages ---- */

/* max_prepared_statements: before a server prepares one more statement,
 * close its least recently used ones (the registry keeps their texts, so a
 * later Bind simply prepares them again). */
static void make_room(struct server_conn *s, struct evbuffer *out)
{
	int max = vg.cfg->pool.max_prepared_statements;
	while (max > 0 && s->prepared.count >= (size_t)max && !s->err_skip) {
		uint32_t victim = s->prepared.order[0];
		char name[24];
		stmt_server_name(victim, name);
		struct pg_buf b;
		buf_init(&b);
		build_describe_close(&b, 'C', 'S', name);
		evbuffer_add(out, b.data, b.len);
		buf_free(&b);
		pending_push_request(s, PD_DROP, 'C', 0, 0);
		id_set_del(&s->prepared, victim);
	}
}

static void put_parse(struct evbuffer *out, const struct prep_stmt *st)
{
	struct pg_buf b;
	buf_init(&b);
	build_parse_prefixed(&b, st->sname, st->hint, st->hint_len, st->tail, st->tail_len);
	evbuffer_add(out, b.data, b.len);
	buf_free(&b);
}

static void ensure_prepared(struct server_conn *s, struct prep_stmt *st, struct evbuffer *out)
{
	if (s->err_skip)
		return;
	stmt_repin(st);
	if (id_set_has(&s->prepared, st->id)) {
		id_set_touch(&s->prepared, st->id);
		return;
	}
	make_room(s, out);
	put_parse(out, st);
	id_set_add(&s->prepared, st->id);
	pending_push_request(s, PD_DROP, 'P', 0, st->id);
}

/* Room for an n-byte message at the end of `out`, written in place: the
 * hot path (a named Bind per transaction) allocates and copies nothing else. */
static uint8_t *out_reserve(struct evbuffer *out, size_t n, struct evbuffer_iovec *v)
{
	if (evbuffer_reserve_space(out, (ev_ssize_t)n, v, 1) < 1 || v->iov_len < n)
		abort();
	return v->iov_base;
}

static void out_commit(struct evbuffer *out, struct evbuffer_iovec *v, size_t n)
{
	v->iov_len = n;
	if (evbuffer_commit_space(out, v, 1) < 0)
		abort();
}

bool prepared_bind_ref(struct client_conn *c, const uint8_t *msg, size_t total, struct bind_ref *out)
{
	assert(total >= PG_HDR_LEN && msg[0] == 'B');
	if (parse_bind_msg(msg + PG_HDR_LEN, total - PG_HDR_LEN, &out->portal, &out->name, &out->tail, &out->tail_len) <
	        0 ||
	    !out->name[0])
		return false;
	out->st = name_map_get(&c->stmts, out->name);
	return true;
}

size_t prepared_bind_head(struct server_conn *s, const struct bind_ref *b, const uint8_t *msg, uint8_t *head,
                          size_t cap, size_t *tail_off)
{
	struct prep_stmt *st = b->st;
	if (s->err_skip || !st || st->pin_gen != routes_pin_gen || !id_set_has(&s->prepared, st->id))
		return 0; /* (a pin changed: prepared_rewrite prepares the statement's new text) */
	/* the portal name ends where parse_bind_msg found the statement name */
	size_t plen = (size_t)(b->name - b->portal) - 1;
	size_t hlen = bind_named_size(plen, st->sname_len, 0);
	if (hlen > cap)
		return 0;
	id_set_touch(&s->prepared, st->id);
	stmt_count_read(st);
	put_bind_named_head(head, b->portal, plen, st->sname, st->sname_len, b->tail_len);
	pending_push_request(s, PD_FORWARD, 'B', 0, 0);
	*tail_off = (size_t)(b->tail - msg);
	return hlen;
}

/* Transaction mode: Parse/Bind/Describe/Close with client statement names
 * become requests about the pool's shared statements. */
void prepared_rewrite(struct client_conn *c, struct server_conn *s, uint8_t type,
                             const uint8_t *msg, size_t total, struct evbuffer *out)
{
	const uint8_t *body = msg + PG_HDR_LEN;
	size_t len = total - PG_HDR_LEN;
	struct pg_buf b;
	buf_init(&b);
	const char *name, *portal;
	const uint8_t *tail;
	size_t tail_len;
	char kind;
	struct prep_stmt *st;
	struct evbuffer_iovec v;
	size_t n;

	switch (type) {
	case 'P':
		if (parse_parse_msg(body, len, &name, &tail, &tail_len) < 0 || !name[0])
			goto passthrough;
		if (!s->err_skip && name_map_get(&c->stmts, name)) {
			/* as PostgreSQL: names must be closed before reuse */
			char m[200];
			snprintf(m, sizeof(m), "prepared statement \"%.100s\" already exists", name);
			pending_refuse(c, "42P05", m, NULL, true);
			break;
		}
		st = registry_intern(c->pool->reg, tail, tail_len, vg.cfg->pool.statement_cache);
		name_map_put(&c->stmts, name, st, vg.cfg->pool.statement_cache);
		if (s->err_skip)
			break;
		stmt_repin(st);
		if (id_set_has(&s->prepared, st->id)) {
			id_set_touch(&s->prepared, st->id);
			pending_push_request(s, PD_SYNTH, 'P', '1', 0);
			break;
		}
		make_room(s, out);
		put_parse(out, st);
		id_set_add(&s->prepared, st->id);
		pending_push_request(s, PD_FORWARD, 'P', 0, st->id);
		break;
	case 'B':
		if (parse_bind_msg(body, len, &portal, &name, &tail, &tail_len) < 0 || !name[0] ||
		    !(st = name_map_get(&c->stmts, name)))
			goto passthrough;
		ensure_prepared(s, st, out);
		stmt_count_read(st);
		/* the portal name ends where parse_bind_msg found the statement name */
		size_t plen = (size_t)(name - portal) - 1;
		n = bind_named_size(plen, st->sname_len, tail_len);
		put_bind_named(out_reserve(out, n, &v), portal, plen, st->sname, st->sname_len, tail, tail_len);
		out_commit(out, &v, n);
		pending_push_request(s, PD_FORWARD, 'B', 0, 0);
		break;
	case 'D':
	case 'C':
		if (parse_describe_close(body, len, &kind, &name) < 0 || kind != 'S' || !name[0])
			goto passthrough;
		st = name_map_get(&c->stmts, name);
		if (type == 'C') {
			/* servers keep the statement for other clients; closing an
			 * unknown name is not an error in PostgreSQL either */
			name_map_del(&c->stmts, name, vg.cfg->pool.statement_cache);
			pending_push_request(s, PD_SYNTH, 'C', '3', 0);
			break;
		}
		if (!st)
			goto passthrough;
		ensure_prepared(s, st, out);
		n = describe_close_size(st->sname_len);
		put_describe_close(out_reserve(out, n, &v), 'D', 'S', st->sname, st->sname_len);
		out_commit(out, &v, n);
		pending_push_request(s, PD_FORWARD, 'D', 0, 0);
		break;
	default:
		goto passthrough;
	}
	buf_free(&b);
	return;
passthrough:
	buf_free(&b);
	evbuffer_add(out, msg, total);
	pending_push_request(s, PD_FORWARD, type, 0, 0);
}

/* ---- session pooling: named vector reads keep their pin ---- */

bool prepared_session_applies(const struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total,
                              unsigned scan)
{
	if (c->pool->mode == VG_POOL_TRANSACTION || total <= PG_HDR_LEN)
		return false;
	const uint8_t *body = msg + PG_HDR_LEN;
	switch (type) {
	case 'P':
		/* a named statement that may read a managed table by distance */
		return body[0] != 0 && total <= VG_INSPECT_MAX && (scan & SQL_MAY_VECTOR_OP) &&
		       routes_for_database(c->pool->be_dbname);
	case 'B':
	case 'D':
	case 'C':
		return c->stmts.names.count > 0;
	default:
		return false;
	}
}

static void session_prepare(struct server_conn *s, struct name_map_entry *e, struct evbuffer *out, bool close_first)
{
	struct pg_buf b;
	buf_init(&b);
	if (close_first) {
		build_describe_close(&b, 'C', 'S', e->name);
		pending_push_request(s, PD_DROP, 'C', 0, 0);
	}
	build_parse_prefixed(&b, e->name, e->stmt->hint, e->stmt->hint_len, e->stmt->tail, e->stmt->tail_len);
	evbuffer_add(out, b.data, b.len);
	buf_free(&b);
	e->session_id = e->stmt->id;
}

void prepared_session_rewrite(struct client_conn *c, struct server_conn *s, uint8_t type, const uint8_t *msg,
                              size_t total, struct evbuffer *out)
{
	const uint8_t *body = msg + PG_HDR_LEN, *tail;
	size_t len = total - PG_HDR_LEN, tail_len, cache = vg.cfg->pool.statement_cache;
	const char *name, *portal;
	char kind;
	struct name_map_entry *e;
	switch (type) {
	case 'P':
		if (parse_parse_msg(body, len, &name, &tail, &tail_len) < 0 || s->err_skip)
			break;
		/* (a name in use gets the server's own error; the map keeps the
		 * newest text, which a later re-prepare sends) */
		name_map_put(&c->stmts, name, registry_intern(c->pool->reg, tail, tail_len, cache), cache);
		e = name_map_entry_of(&c->stmts, name);
		stmt_repin(e->stmt);
		session_prepare(s, e, out, false);
		pending_push_request(s, PD_FORWARD, 'P', 0, 0);
		return;
	case 'B':
	case 'D':
		if (type == 'B' ? parse_bind_msg(body, len, &portal, &name, &tail, &tail_len) < 0
		                : parse_describe_close(body, len, &kind, &name) < 0 || kind != 'S')
			break;
		if (!(e = name_map_entry_of(&c->stmts, name)) || s->err_skip)
			break;
		stmt_repin(e->stmt);
		if (e->session_id != e->stmt->id) {
			/* the pin changed since the server prepared it: again, with
			 * the new hint, under the same name */
			session_prepare(s, e, out, true);
			pending_push_request(s, PD_DROP, 'P', 0, 0);
		}
		if (type == 'B')
			stmt_count_read(e->stmt);
		break;
	case 'C':
		if (parse_describe_close(body, len, &kind, &name) == 0 && kind == 'S')
			name_map_del(&c->stmts, name, cache);
		break;
	default:
		break;
	}
	evbuffer_add(out, msg, total);
	pending_push_request(s, PD_FORWARD, type, 0, 0);
}
