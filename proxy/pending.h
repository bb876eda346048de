/*
 * What a server owes its client, in order (pending.c).  Every request that
 * gets an answer is queued: forwarded ones are answered by the server,
 * vecgate's own answers (refusals, locally known ParseComplete) are emitted
 * when they reach the head, and answers to requests vecgate injected are
 * swallowed.  This keeps protocol order whatever is rewritten or refused.
 */
#ifndef VG_PROXY_PENDING_H
#define VG_PROXY_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client_conn;
struct server_conn;

enum pending_kind {
	PD_FORWARD,  /* client request; its response goes to the client */
	PD_SYNTH,    /* answered by us: emit `synth` when it reaches the head */
	PD_DROP,     /* request vecgate injected; swallow its response */
	PD_INTERNAL, /* query vecgate injected; swallow everything up to 'Z' */
	PD_ROLE_CHECK, /* vecgate's query whether the server takes writes: its row is read, the rest swallowed */
};
struct pending {
	uint8_t kind;
	uint8_t req;    /* client message type the entry stands for */
	uint8_t synth;  /* PD_SYNTH: message type to emit ('Z': ReadyForQuery with the current status) */
	uint32_t stmt;  /* statement id this request prepares on the server, or 0 */
	uint8_t *msg;   /* PD_SYNTH: whole messages to emit first (owned), or NULL */
	uint32_t msg_len;
};
struct pending_queue {
	struct pending *items;
	size_t head, count, cap;
};
void pq_push(struct pending_queue *q, struct pending p);
struct pending *pq_head(struct pending_queue *q);
void pq_pop(struct pending_queue *q);
void pq_free(struct pending_queue *q);


/* Queue a request the server will answer (or vecgate will, PD_SYNTH);
 * after a server error everything up to Sync is ignored, as the server does. */
void pending_push_request(struct server_conn *s, uint8_t kind, uint8_t req, uint8_t synth, uint32_t stmt);
/* Does a client message of this type get an answer that must be tracked? */
bool pending_tracked(uint8_t type);
/* Send vecgate's own answer after whatever the server still owes the client:
 * messages (may be NULL, owned from here on) and, if `ready`, ReadyForQuery. */
void pending_answer(struct client_conn *c, uint8_t *msgs, size_t len, bool ready);
/* Emit vecgate's own answers that reached the head of s's queue. */
void pending_emit(struct server_conn *s);
/* Refuse a statement in protocol order: an ERROR; a simple Query also gets
 * ReadyForQuery, an extended-protocol message skips to Sync. */
void pending_refuse(struct client_conn *c, const char *sqlstate, const char *msg, const char *hint, bool extended);

#endif
