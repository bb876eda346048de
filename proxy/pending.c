/*
 * Keep a server's answers in the order its client asked for them: every
 * request that gets an answer is queued, vecgate's own answers wait their
 * turn in the same queue, and answers to requests vecgate injected are
 * swallowed when they arrive.
 */
#include "proxy/pending.h"
#include "proxy/conn.h"
#include "proxy/runtime/stats.h"
#include "protocol/pgproto.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- pending queue: a growable ring ---- */

void pq_push(struct pending_queue *q, struct pending p)
{
	if (q->count == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 16;
		struct pending *n = malloc(ncap * sizeof(*n));
		if (!n)
			abort();
		for (size_t i = 0; i < q->count; i++)
			n[i] = q->items[(q->head + i) % q->cap];
		free(q->items);
		q->items = n;
		q->head = 0;
		q->cap = ncap;
	}
	q->items[(q->head + q->count) % q->cap] = p;
	q->count++;
}

struct pending *pq_head(struct pending_queue *q)
{
	return q->count ? &q->items[q->head] : NULL;
}

void pq_pop(struct pending_queue *q)
{
	assert(q->count > 0);
	free(q->items[q->head].msg);
	q->items[q->head].msg = NULL;
	q->head = (q->head + 1) % q->cap;
	q->count--;
}

void pq_free(struct pending_queue *q)
{
	while (q->count)
		pq_pop(q);
	free(q->items);
	memset(q, 0, sizeof(*q));
}

/* ---- requests and vecgate's own answers ---- */

/* ---- the forwarding loop ---- */

void pending_push_request(struct server_conn *s, uint8_t kind, uint8_t req, uint8_t synth, uint32_t stmt)
{
	/* after an error the server ignores everything up to Sync: so do we */
	if (s->err_skip && req != 'S')
		return;
	if (req == 'S')
		s->err_skip = false;
	if (kind == PD_FORWARD && s->pending.count == 0)
		s->req_started = now_cached();
	struct pending p = {.kind = kind, .req = req, .synth = synth, .stmt = stmt};
	pq_push(&s->pending, p);
}

bool pending_tracked(uint8_t type)
{
	return type == 'P' || type == 'B' || type == 'C' || type == 'D' || type == 'E' || type == 'S' ||
	       type == 'Q' || type == 'F';
}

/* Send vecgate's own answer after whatever the server still owes this
 * client: messages (may be NULL, owned from here on) and, if `ready`, a
 * ReadyForQuery.  With a server linked the answer goes through its queue,
 * so it also lands behind a routed read's held answers. */
void pending_answer(struct client_conn *c, uint8_t *msgs, size_t len, bool ready)
{
	struct server_conn *s = c->server;
	if (s) {
		struct pending p = {.kind = PD_SYNTH, .req = 'Q', .synth = ready ? 'Z' : 0, .msg = msgs,
		                    .msg_len = (uint32_t)len};
		pq_push(&s->pending, p);
		pending_emit(s);
		return;
	}
	if (msgs)
		io_write(&c->io, msgs, len);
	free(msgs);
	if (ready) {
		uint8_t z[6] = {'Z', 0, 0, 0, 5, 'I'};
		io_write(&c->io, z, sizeof(z));
	}
}

/* vecgate refuses a statement itself (DDL guard, route mode refuse, a
 * reused statement name): an ERROR in protocol order; a simple Query also
 * gets its ReadyForQuery, an extended-protocol message skips to Sync as
 * after any server error. */
void pending_refuse(struct client_conn *c, const char *sqlstate, const char *msg, const char *hint,
                            bool extended)
{
	struct pg_buf b;
	buf_init(&b);
	build_error(&b, "ERROR", sqlstate, msg, NULL, hint);
	stats_error(sqlstate);
	pending_answer(c, b.data, b.len, !extended);
	if (extended)
		c->guard_skip = true;
}

/* vecgate's own answers that reached the head of the queue go out now;
 * never ahead of a server message still being streamed. */
void pending_emit(struct server_conn *s)
{
	struct pending *h;
	if (s->fwd_remaining)
		return; /* never overtake a message still being streamed */
	while ((h = pq_head(&s->pending)) && h->kind == PD_SYNTH) {
		if (s->client) {
			struct evbuffer *out = conn_client_out(s);
			if (h->msg)
				evbuffer_add(out, h->msg, h->msg_len);
			if (h->synth == 'Z') {
				uint8_t z[6] = {'Z', 0, 0, 0, 5, (uint8_t)s->txn_status};
				evbuffer_add(out, z, sizeof(z));
			} else if (h->synth) {
				uint8_t msg[5] = {h->synth, 0, 0, 0, 4};
				evbuffer_add(out, msg, sizeof(msg));
			}
		}
		pq_pop(&s->pending);
	}
}
