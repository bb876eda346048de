/*
 * Routing decisions for one client request cycle (read_route.c): whether
 * the DDL guard refuses its statement, and where a vector read goes (the
 * primary, a replica or fallback through a sibling pool, or a refusal).  A
 * routed read keeps its messages until answered, so that a failure on the
 * replica can be replayed on the primary.
 */
#ifndef VG_PROXY_READ_ROUTE_H
#define VG_PROXY_READ_ROUTE_H

#include "proxy/conn.h"
#include "proxy/route_table.h"

/* The statement text of a Query or Parse message, or of its first `len`
 * bytes (large statements are inspected by their beginning only). */
bool statement_prefix(uint8_t type, const uint8_t *msg, size_t len, const char **sql, size_t *sql_len);
/* sql_prescan over the statement of a Query or Parse (or its first `len`
 * bytes): SQL_MAY_INDEX when the DDL guard must read it, SQL_MAY_VECTOR_OP
 * when it may be a vector read; both when the message is malformed. */
unsigned statement_scan(uint8_t type, const uint8_t *msg, size_t len);
/* Must the DDL guard see this message (Query or Parse)? */
bool ddl_guard_applies(uint8_t type);
/* Does the cycle this message starts need a routing decision (read whole)? */
bool route_cycle_applies(const struct client_conn *c, uint8_t type);
/* True when the DDL guard refused the statement (and it was answered). */
bool ddl_guard_refused(struct client_conn *c, const char *sql, size_t len, bool extended);
enum cycle_route {
	CYCLE_PRIMARY, /* the client's own pool */
	CYCLE_ROUTED,  /* a vector read for d->backend, if its pool can take it */
	CYCLE_REFUSED, /* answered with an error already */
};
/* Where the cycle starting with this whole message goes. */
enum cycle_route route_cycle(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total,
                             struct route_decision *d);
/* Would route_cycle do more for the cycle this whole message starts than
 * route_cycle_plain?  (`scan`: statement_scan of a Query or Parse.) */
bool route_cycle_needed(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total, unsigned scan);
/* The same for a Bind of named statement st (NULL: unknown to the client,
 * the server answers it). */
bool route_stmt_needed(struct client_conn *c, struct prep_stmt *st);
/* A cycle that statement_scan showed to be no vector read starts on the
 * primary: the same outcome as route_cycle, without reading the text. */
void route_cycle_plain(struct client_conn *c);
/* The caller's verdict on a CYCLE_ROUTED: linked through the backend's
 * pool (the cycle's messages are then kept for a replay), or kept on the
 * primary because that pool cannot take it now. */
void route_cycle_routed(struct client_conn *c, const struct route_decision *d);
void route_cycle_kept(struct client_conn *c, const struct route_decision *d);
void route_cycle_done(struct client_conn *c); /* the routed cycle is answered */
void route_cycle_end(struct client_conn *c);  /* the cycle's transaction ended: count its latency */
/* The cycle is a vector read whose query vector is a parameter of this
 * (whole) Bind: offer it to the index's traffic sample. */
void route_sample_bind(struct client_conn *c, const uint8_t *msg, size_t total);
/* A whole Query, Parse or Bind that starts no cycle (inside a transaction
 * block, or in session pooling) and may be a vector read: never routed,
 * but offered to its index's traffic sample like the reads that start one.
 * Named statements count only in transaction pooling, where vecgate knows
 * their text. */
void route_sample_mid(struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total);
/* swap_mode hint: must this Query or Parse (statement_scan `scan`) be read
 * whole for the pin check?  Transaction-mode named Parses are pinned by
 * the statement registry instead (prepared.c). */
bool route_pin_applies(const struct client_conn *c, uint8_t type, const uint8_t *msg, size_t total, unsigned scan);
/* A whole Query or Parse that reads a pinned index goes to `out` with the
 * pin's plan hint in front of its text (true), counted per route; false:
 * forward it as it is. */
bool route_pin_forward(struct client_conn *c, struct server_conn *s, uint8_t type, const uint8_t *msg, size_t total,
                       struct evbuffer *out);
/* Can the primary answer a routed read that failed with this SQLSTATE? */
bool route_error_replayable(const char *sqlstate);
/* A routed read's backend failed before answering: counted and logged
 * here; the client replays the kept messages on the primary. */
void route_cycle_failed(struct client_conn *c, const char *why);

#endif
