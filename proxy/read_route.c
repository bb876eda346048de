/*
 * Decide, once per client request cycle, whether vecgate answers it itself
 * (a DDL guard or route refusal), sends it to the primary, or routes a
 * vector read to a replica or fallback; and replay a routed read on the
 * primary when its backend fails before answering.  Only statements that can
 * matter reach the lexer: cheap byte scans come first.
 */
#include "proxy/read_route.h"
#include "proxy/backend_table.h"
#include "proxy/pending.h"
#include "proxy/route_table.h"
#include "proxy/sampler.h"
#include "protocol/vecfmt.h"
#include "routing/classify.h"
#include "routing/ddl_guard.h"
#include "routing/pin_hint.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool ddl_guard_applies(uint8_t type)
{
	return (type == 'Q' || type == 'P') && vg.cfg->n_indexes && vg.cfg->ddl_guard != GUARD_MODE_ALLOW;
}

/* Only transaction pooling routes (a session's state lives on one server),
 * and only where a managed index lives in the client's database. */
bool route_cycle_applies(const struct client_conn *c, uint8_t type)
{
	return (type == 'Q' || type == 'P' || type == 'B') && c->pool->mode == VG_POOL_TRANSACTION &&
	       routes_for_database(c->pool->be_dbname);
}

/* Statements against managed tables and indexes go past the DDL guard.
 * Returns true when the statement was refused (and answered): a simple
 * Query gets ErrorResponse + ReadyForQuery; a Parse gets the ErrorResponse
 * and, as PostgreSQL does after an error, everything up to Sync is skipped. */
bool ddl_guard_refused(struct client_conn *c, const char *sql, size_t len, bool extended)
{
	/* every guarded statement names an INDEX (REINDEX, CREATE/DROP INDEX):
	 * a byte scan before the real lexer runs */
	if (!(sql_prescan(sql, len) & SQL_MAY_INDEX))
		return false;
	struct guard_target targets[32];
	int n = 0;
	for (size_t i = 0; i < vg.cfg->n_indexes && n < 32; i++) {
		const struct vg_managed_index *m = &vg.cfg->indexes[i];
		if (strcmp(m->database, c->pool->be_dbname))
			continue;
		targets[n++] = (struct guard_target){m->name, m->schema, m->table, m->index};
	}
	if (!n)
		return false;
	struct sql_class cls;
	sql_classify(sql, len, &cls);
	char why[512], hint[300];
	enum guard_verdict v = ddl_guard_check(&cls, targets, n, (enum guard_mode)vg.cfg->ddl_guard, why, sizeof(why),
	                                       hint, sizeof(hint));
	if (v == GUARD_PASS)
		return false;
	char addr[64];
	log_warn("C-%llu: %s DDL from %s@%s: %s", (unsigned long long)c->id, v == GUARD_BLOCKED ? "refused" : "allowed",
	         c->user, client_addr(c, addr, sizeof(addr)), why);
	if (v == GUARD_WARNED)
		return false;
	pending_refuse(c, VG_SQLSTATE_DDL_GUARD, why, hint, extended);
	return true;
}

/* Only text holding a distance operator can be a vector read: a scan that
 * keeps the classifier off every other statement. */
static bool maybe_vector_op(const char *sql, size_t len)
{
	return sql_prescan(sql, len) & SQL_MAY_VECTOR_OP;
}

/* The statement text of a Query or Parse message, or NULL. */
static const char *statement_text(uint8_t type, const uint8_t *msg, size_t total, size_t *len,
                                  const char **stmt_name, const uint8_t **tail, size_t *tail_len)
{
	const uint8_t *body = msg + PG_HDR_LEN;
	size_t blen = total - PG_HDR_LEN;
	*stmt_name = "";
	if (type == 'Q') {
		*len = strnlen((const char *)body, blen);
		return (const char *)body;
	}
	if (parse_parse_msg(body, blen, stmt_name, tail, tail_len) < 0)
		return NULL;
	*len = strnlen((const char *)*tail, *tail_len);
	return (const char *)*tail;
}

bool statement_prefix(uint8_t type, const uint8_t *msg, size_t len, const char **sql, size_t *sql_len)
{
	if (len < PG_HDR_LEN)
		return false;
	const uint8_t *body = msg + PG_HDR_LEN;
	size_t blen = len - PG_HDR_LEN;
	if (type == 'P') {
		const uint8_t *nul = memchr(body, 0, blen); /* after the statement name */
		if (!nul)
			return false;
		blen -= (size_t)(nul + 1 - body);
		body = nul + 1;
	} else if (type != 'Q') {
		return false;
	}
	*sql = (const char *)body;
	*sql_len = strnlen(*sql, blen);
	return true;
}

unsigned statement_scan(uint8_t type, const uint8_t *msg, size_t len)
{
	const char *sql;
	size_t sql_len;
	if (!statement_prefix(type, msg, len, &sql, &sql_len))
		return SQL_MAY_INDEX | SQL_MAY_VECTOR_OP; /* malformed: let the full path judge */
	return sql_prescan(sql, sql_len);
}

/* A routable vector read?  Text without a distance operator never reaches
 * the lexer. */
static bool classify_vector_read(const char *sql, size_t len, struct sql_class *out)
{
	if (!maybe_vector_op(sql, len))
		return false;
	sql_classify(sql, len, out);
	return route_is_vector_read(out);
}

/* Classify a named statement once; later Binds reuse the answer. */
static const struct sql_class *stmt_route_class(struct prep_stmt *st)
{
	if (!st->route_kind) {
		struct sql_class cls;
		st->route_kind = 1;
		if (classify_vector_read((const char *)st->tail, strnlen((const char *)st->tail, st->tail_len), &cls) &&
		    (st->cls = malloc(sizeof(*st->cls)))) {
			*st->cls = cls;
			st->route_kind = 2;
		}
	}
	return st->route_kind == 2 ? st->cls : NULL;
}

/* The classification routing needs for the message that starts a cycle, or
 * NULL when it cannot be a routable vector read. */
static const struct sql_class *routing_class(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total,
                                             struct sql_class *scratch)
{
	const char *name, *portal;
	const uint8_t *tail = NULL;
	size_t len, tail_len = 0;
	if (type == 'B') {
		if (parse_bind_msg(msg + PG_HDR_LEN, total - PG_HDR_LEN, &portal, &name, &tail, &tail_len) < 0 || !name[0])
			return NULL;
		struct prep_stmt *st = name_map_get(&c->stmts, name);
		return st ? stmt_route_class(st) : NULL;
	}
	const char *sql = statement_text(type, msg, total, &len, &name, &tail, &tail_len);
	if (!sql)
		return NULL;
	if (type == 'P' && name[0])
		return stmt_route_class(registry_intern(c->pool->reg, tail, tail_len, vg.cfg->pool.statement_cache));
	return classify_vector_read(sql, len, scratch) ? scratch : NULL;
}

/* Copy Bind parameter n into the slot, if it is a text value. */
static void sample_bind_param(struct traffic_sample *ts, int slot, const uint8_t *msg, size_t total, int n)
{
	const char *portal, *name;
	const uint8_t *tail, *val;
	size_t tail_len;
	int32_t vlen;
	int fmt;
	if (parse_bind_msg(msg + PG_HDR_LEN, total - PG_HDR_LEN, &portal, &name, &tail, &tail_len) < 0 ||
	    bind_param(tail, tail_len, n, &val, &vlen, &fmt) < 0 || vlen <= 0) {
		sample_missed(ts);
		return;
	}
	if (fmt == 0) {
		sample_store(ts, slot, (const char *)val, (size_t)vlen);
		return;
	}
	/* binary, as pgvector's client libraries send it: kept as the text
	 * literal the eval query takes */
	char *text = malloc(SAMPLE_MAX_TEXT);
	int len = text ? vecfmt_binary_to_text(val, (size_t)vlen, text, SAMPLE_MAX_TEXT) : -1;
	if (len > 0)
		sample_store(ts, slot, text, (size_t)len);
	else
		sample_missed(ts);
	free(text);
}

/* Offer a vector read to its index's traffic sample.  A read taken has its
 * vector copied from the statement's literal, from this Bind, or from the
 * Bind that follows this Parse in the cycle (route_sample_bind). */
static void sample_read(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total, struct route_state *r)
{
	c->sample_param = 0;
	struct traffic_sample *ts = r->sample;
	if (!ts)
		return;
	int slot = -1;
	if (type != 'P' && (slot = sample_offer(ts)) < 0)
		return;
	const char *sql, *name;
	const uint8_t *tail = NULL;
	size_t len, tail_len = 0;
	if (type == 'B') {
		const char *portal;
		struct prep_stmt *st = NULL;
		if (parse_bind_msg(msg + PG_HDR_LEN, total - PG_HDR_LEN, &portal, &name, &tail, &tail_len) == 0)
			st = name_map_get(&c->stmts, name);
		sql = st ? (const char *)st->tail : NULL;
		len = st ? strnlen(sql, st->tail_len) : 0;
	} else {
		sql = statement_text(type, msg, total, &len, &name, &tail, &tail_len);
	}
	struct vec_operand op = {.kind = VOP_NONE};
	if (sql)
		sql_vector_operand(sql, len, &op);
	if (type == 'P' && sql && op.kind == VOP_PARAM) {
		/* a Parse alone (a client preparing ahead) is no read: the
		 * offer waits for the Bind that follows it */
		c->sample_param = (uint16_t)op.param;
		c->sample_route = r->key;
		return;
	}
	if (slot < 0 && (slot = sample_offer(ts)) < 0)
		return;
	if (!sql || op.kind == VOP_NONE || op.kind == VOP_PARAM) {
		if (op.kind == VOP_PARAM && type == 'B')
			sample_bind_param(ts, slot, msg, total, op.param);
		else
			sample_missed(ts);
	} else {
		sample_store(ts, slot, sql + op.off, op.len);
	}
}

void route_sample_bind(struct client_conn *c, const uint8_t *msg, size_t total)
{
	struct route_state *r = c->sample_route ? route_find(c->sample_route) : NULL;
	int n = c->sample_param, slot;
	c->sample_param = 0;
	if (r && r->sample && (slot = sample_offer(r->sample)) >= 0)
		sample_bind_param(r->sample, slot, msg, total, n);
}

/* Decide where the cycle starting with this whole message goes.  For a
 * vector read that may leave the primary, `d` names the backend; the caller
 * finds its pool and reports with route_cycle_routed or _kept. */
enum cycle_route route_cycle(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total,
                             struct route_decision *d)
{
	c->sample_param = 0; /* a Parse's offer never outlives its cycle */
	if (c->force_primary) {
		c->force_primary = false; /* a replay: its latency keeps counting from the first try */
		return CYCLE_PRIMARY;
	}
	struct sql_class scratch;
	const struct sql_class *cls = routing_class(c, type, msg, total, &scratch);
	if (!cls)
		return CYCLE_PRIMARY;
	routes_decide(c->pool->be_dbname, c->pool->be_name, cls, d);
	if (!d->route)
		return CYCLE_PRIMARY;
	c->vread_route = d->route->key;
	c->vread_start = now_sec();
	if (d->target != ROUTE_TO_REFUSE)
		sample_read(c, type, msg, total, d->route);
	if (d->target == ROUTE_TO_REFUSE) {
		routes_count(d->route, RS_REFUSED);
		char m[300];
		snprintf(m, sizeof(m), "vector search on managed index \"%s\" is refused for now (route mode refuse)",
		         d->route->name);
		pending_refuse(c, VG_SQLSTATE_ROUTE_REFUSED, m,
		               "An operator or a rebuild step set this mode; retry later, or see GET /v1/routes.", type != 'Q');
		return CYCLE_REFUSED;
	}
	if (!d->backend) {
		routes_count(d->route, RS_PRIMARY);
		return CYCLE_PRIMARY;
	}
	return CYCLE_ROUTED;
}

void route_sample_mid(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total)
{
	/* named statements are known by text only where vecgate maps them
	 * (transaction pooling); a session's pass through untouched */
	if (c->pool->mode != VG_POOL_TRANSACTION &&
	    (type == 'B' || (type == 'P' && total > PG_HDR_LEN && msg[PG_HDR_LEN] != 0)))
		return;
	struct sql_class scratch;
	const struct sql_class *cls = routing_class(c, type, msg, total, &scratch);
	if (!cls)
		return;
	struct route_decision d;
	routes_decide(c->pool->be_dbname, c->pool->be_name, cls, &d);
	if (d.route)
		sample_read(c, type, msg, total, d.route);
}

bool route_stmt_needed(struct client_conn *c, struct prep_stmt *st)
{
	return !c->force_primary && st && stmt_route_class(st);
}

bool route_cycle_needed(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total, unsigned scan)
{
	if (c->force_primary)
		return false; /* a replay: the primary, whatever it reads */
	if (type == 'B') {
		struct sql_class scratch;
		return routing_class(c, type, msg, total, &scratch) != NULL; /* classified once, at its first use */
	}
	return scan & SQL_MAY_VECTOR_OP;
}

void route_cycle_plain(struct client_conn *c)
{
	/* what route_cycle does for a statement that is no vector read */
	c->sample_param = 0;
	c->force_primary = false;
}

void route_cycle_kept(struct client_conn *c, const struct route_decision *d)
{
	(void)c;
	routes_count(d->route, RS_PRIMARY);
}

void route_cycle_routed(struct client_conn *c, const struct route_decision *d)
{
	routes_count(d->route, d->mode == VG_ROUTE_FALLBACK ? RS_FALLBACK : RS_REPLICA);
	d->backend->routed_reads++;
	c->routed = true;
	c->cycle_sent = false;
	c->route_name = d->route->key;
	c->route_backend = d->backend->key;
	if (!c->replay)
		c->replay = evbuffer_new();
}

void route_cycle_done(struct client_conn *c)
{
	c->routed = c->cycle_sent = false;
	c->route_name = c->route_backend = NULL;
	if (c->replay)
		evbuffer_drain(c->replay, evbuffer_get_length(c->replay));
}

void route_cycle_failed(struct client_conn *c, const char *why)
{
	log_info("C-%llu: routed read on %s failed before answering (%s): running it on the primary",
	         (unsigned long long)c->id, c->route_backend ? c->route_backend : "?", why);
	if (c->route_name)
		routes_count(route_find(c->route_name), RS_REPLAYED);
	struct backend_state *be = c->route_backend ? backend_find(c->route_backend) : NULL;
	if (be)
		be->replayed_reads++;
}

/* The cycle a client's transaction ended: its latency counts for the
 * managed index it read, and a routed link is undone. */
void route_cycle_end(struct client_conn *c)
{
	if (c->vread_route) {
		routes_observe_latency(c->vread_route, now_sec() - c->vread_start);
		c->vread_route = NULL;
	}
	if (c->routed)
		route_cycle_done(c);
}

/* A routed read failed in a way the primary can answer (replica shutting
 * down or in conflict with recovery, a statement it cannot run read-only). */
bool route_error_replayable(const char *sqlstate)
{
	return pg_sqlstate_server_outage(sqlstate) || (sqlstate && !strcmp(sqlstate, "40001"));
}

bool route_pin_applies(const struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total, unsigned scan)
{
	if ((type != 'Q' && type != 'P') || total > VG_INSPECT_MAX || !(scan & SQL_MAY_VECTOR_OP) || !routes_pinning())
		return false;
	if (type == 'P' && total > PG_HDR_LEN && msg[PG_HDR_LEN] != 0)
		return false; /* named: the registry keeps its hint (prepared.c) */
	return routes_pinned_in(c->pool->be_dbname);
}

bool route_pin_forward(struct client_conn *c, struct server_conn *s, uint8_t type, const uint8_t *msg, size_t total,
                       struct evbuffer *out)
{
	const char *name, *why;
	const uint8_t *tail = NULL;
	size_t len, tail_len = 0, hint_len;
	const char *sql = statement_text(type, msg, total, &len, &name, &tail, &tail_len);
	if (!sql)
		return false;
	char hint[1400];
	int route, v = routes_pin_hint(c->pool->be_dbname, sql, len, hint, sizeof(hint), &hint_len, &route, &why);
	routes_pin_count(route, v, why, sql, len);
	if (v != PIN_HINTED)
		return false;
	struct pg_buf b;
	buf_init(&b);
	if (type == 'Q')
		build_query_prefixed(&b, hint, hint_len, msg + PG_HDR_LEN, total - PG_HDR_LEN);
	else
		build_parse_prefixed(&b, name, hint, hint_len, tail, tail_len);
	evbuffer_add(out, b.data, b.len);
	buf_free(&b);
	pending_push_request(s, PD_FORWARD, type, 0, 0);
	return true;
}
