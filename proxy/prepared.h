/*
 * Named prepared statements under transaction pooling (prepared.c), the
 * rewrite half of the data plane.  A pool's registry interns statement texts
 * that servers prepare as "vg_<id>"; each client maps its own names onto
 * them, and each server remembers which ids it has (closing the least
 * recently used beyond max_prepared_statements).  rewrite_extended turns a
 * client's Parse/Bind/Describe/Close into requests about those statements.
 */
#ifndef VG_PROXY_PREPARED_H
#define VG_PROXY_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/hashtab.h"

struct client_conn;
struct server_conn;
struct evbuffer;
struct sql_class;

/* A statement text known to a pool; servers prepare it as "vg_<id>". */
struct prep_stmt {
	uint32_t id;
	uint8_t sname_len;
	char sname[15]; /* "vg_<id>": made once, written into every rewritten Bind */
	struct hash_link link; /* in the registry's texts, keyed by tail */
	uint8_t *tail; /* Parse body after the name: query, param types */
	size_t tail_len;
	uint8_t route_kind;     /* 0 not classified yet, 1 stays on the primary, 2 vector read */
	struct sql_class *cls;  /* route_kind 2: the classification, for route decisions per Bind */
	uint32_t refs;          /* client names pointing here; 0 = on the unused list */
	/* swap_mode hint: the plan hint servers prepare in front of the text,
	 * as of pin generation pin_gen (a new generation may change it, and
	 * then the statement gets a new id: servers prepare the new text) */
	uint8_t *hint;
	uint16_t hint_len;
	int8_t pin_verdict;     /* PIN_*, for the count per Bind */
	int16_t pin_route;
	unsigned pin_gen;
	struct prep_stmt *lru_prev, *lru_next;
	struct stmt_registry *reg;
};
/* Statement texts of a pool.  Texts no client holds stay for reuse (a
 * server may still have them prepared) until they exceed `cache` bytes,
 * least recently released first; ids are never reused. */
struct stmt_registry {
	struct hashtab texts; /* of prep_stmt */
	const char *dbname;   /* the pool's backend database: its pinned routes */
	uint32_t next_id;
	size_t bytes, unused_bytes;
	struct prep_stmt *unused_head, *unused_tail;
};
struct prep_stmt *registry_intern(struct stmt_registry *r, const uint8_t *tail, size_t len, size_t cache);
/* Bring the statement's plan hint up to the pins in force (stmt_repin):
 * a changed hint gives it a new server-side id. */
void stmt_repin(struct prep_stmt *st);
void stmt_hold(struct prep_stmt *st);                  /* a client name points at it */
void stmt_release(struct prep_stmt *st, size_t cache); /* ... no more */
void registry_free(struct stmt_registry *r);
void stmt_server_name(uint32_t id, char out[24]);

/* client statement name -> prep_stmt */
struct name_map_entry {
	struct hash_link link; /* in the map's names, keyed by name */
	char *name;
	struct prep_stmt *stmt;
	uint32_t session_id; /* session pooling: the text (id) the server prepared under this name */
};
struct name_map {
	struct hashtab names; /* of name_map_entry */
};
struct prep_stmt *name_map_get(struct name_map *m, const char *name);
/* The map holds a reference on each statement it names. */
void name_map_put(struct name_map *m, const char *name, struct prep_stmt *st, size_t cache);
void name_map_del(struct name_map *m, const char *name, size_t cache);
void name_map_free(struct name_map *m, size_t cache);

/* which statement ids a server has prepared, and in which order they were
 * last used (for closing the least recently used at max_prepared_statements) */
struct id_set {
	uint8_t *bits;
	size_t nbytes;
	uint32_t *order; /* least recently used first */
	size_t count, cap;
};
bool id_set_has(const struct id_set *s, uint32_t id);
void id_set_add(struct id_set *s, uint32_t id);
void id_set_del(struct id_set *s, uint32_t id);
void id_set_clear(struct id_set *s);
void id_set_touch(struct id_set *s, uint32_t id); /* mark as just used */
void id_set_free(struct id_set *s);


/* The hot case of prepared_rewrite, without copying the parameters: a
 * whole Bind of a statement server s has prepared.  Writes the new head
 * (type, length, portal, "vg_<id>") to head (cap bytes), sets *tail_off to
 * where in msg the rest follows as it is, and queues what the server owes.
 * Returns the head's length, or 0 when the Bind needs prepared_rewrite.
 * `b` is msg as prepared_bind_ref read it. */
struct bind_ref {
	const char *portal, *name;
	const uint8_t *tail; /* parameter formats and values, result formats */
	size_t tail_len;
	struct prep_stmt *st; /* what name means to the client, or NULL */
};
/* Read a whole Bind message; false when it is malformed or unnamed. */
bool prepared_bind_ref(struct client_conn *c, const uint8_t *msg, size_t total, struct bind_ref *out);
size_t prepared_bind_head(struct server_conn *s, const struct bind_ref *b, const uint8_t *msg, uint8_t *head,
                          size_t cap, size_t *tail_off);
/* Transaction mode: write the client's Parse/Bind/Describe/Close `msg` to
 * the server's output `out`, mapped onto the pool's shared statements, and
 * queue what the server will owe for it. */
/* Session pooling, swap_mode hint: a named vector read is prepared under
 * the client's own name with the pin's hint, and prepared again (Close +
 * Parse, answers swallowed) before its next Bind or Describe when the pin
 * changed.  prepared_session_applies: must this whole message go through
 * prepared_session_rewrite (scan: statement_scan of a Parse)? */
bool prepared_session_applies(const struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total,
                              unsigned scan);
void prepared_session_rewrite(struct client_conn *c, struct server_conn *s, uint8_t type, const uint8_t *msg,
                              size_t total, struct evbuffer *out);
void prepared_rewrite(struct client_conn *c, struct server_conn *s, uint8_t type, const uint8_t *msg, size_t total,
                      struct evbuffer *out);

#endif
