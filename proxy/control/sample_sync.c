/*
 * Move the traffic samples the data plane keeps in memory to the database:
 * every SAMPLE_FLUSH_SECONDS, the changed slots of each index's reservoir go
 * out in one upsert on the route-sync session of its database (which
 * created vecgate.eval_samples).  The table holds at most
 * traffic_sample_size rows per index: slot numbers are the reservoir's.
 */
#include "proxy/control/sample_sync.h"
#include "proxy/control/route_sync.h"
#include "proxy/route_table.h"
#include "proxy/runtime/pgasync.h"
#include "proxy/sampler.h"
#include "protocol/pgproto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_MAX_SLOTS 200

const char SQL_SAMPLES_READ[] = "SELECT vector FROM vecgate.eval_samples WHERE index_name = $1 ORDER BY slot";

/* slots beyond the configured size (it shrank) go in the same statement */
static const char SQL_SAMPLES_WRITE[] =
	"WITH gone AS (DELETE FROM vecgate.eval_samples WHERE index_name = $1 AND slot >= $4::int)"
	" INSERT INTO vecgate.eval_samples AS e (index_name, slot, vector, sampled_at)"
	" SELECT $1, u.slot, u.vector, now() FROM unnest($2::int[], $3::text[]) AS u(slot, vector)"
	" ON CONFLICT (index_name, slot) DO UPDATE SET vector = EXCLUDED.vector, sampled_at = EXCLUDED.sampled_at";

static struct event *timer;
static bool resend_all; /* a write failed: every filled slot goes again */

/* An element of a text[] literal: double-quoted, \ and " escaped. */
static void put_array_text(struct pg_buf *b, const char *s)
{
	buf_put_byte(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_put_byte(b, '\\');
		buf_put_byte(b, (uint8_t)*s);
	}
	buf_put_byte(b, '"');
}

static void written(void *arg, PGresult *res, const char *error)
{
	(void)arg;
	(void)res;
	if (error) {
		log_warn("traffic samples: writing vecgate.eval_samples failed: %s", error);
		resend_all = true;
	}
}

static void flush_route(struct route_state *r)
{
	struct traffic_sample *ts = r->sample;
	struct pg_session *s = route_sync_session(r);
	if (!s || !pg_session_idle(s))
		return; /* next tick */
	struct pg_buf slots, vecs;
	buf_init(&slots);
	buf_init(&vecs);
	buf_put_byte(&slots, '{');
	buf_put_byte(&vecs, '{');
	int n = 0;
	for (int i = 0; i < ts->size && n < FLUSH_MAX_SLOTS; i++) {
		if (!ts->dirty[i])
			continue;
		ts->dirty[i] = 0;
		ts->n_dirty--;
		if (!ts->vec[i])
			continue;
		char num[16];
		snprintf(num, sizeof(num), "%s%d", n ? "," : "", i);
		buf_put_bytes(&slots, num, strlen(num));
		if (n)
			buf_put_byte(&vecs, ',');
		put_array_text(&vecs, ts->vec[i]);
		n++;
	}
	buf_put_byte(&slots, '}');
	buf_put_byte(&vecs, '}');
	buf_put_byte(&slots, 0);
	buf_put_byte(&vecs, 0);
	if (n) {
		char size[16];
		snprintf(size, sizeof(size), "%d", ts->size);
		const char *params[] = {r->name, (const char *)slots.data, (const char *)vecs.data, size};
		if (pg_session_query(s, SQL_SAMPLES_WRITE, 4, params, written, NULL) < 0)
			resend_all = true;
	}
	buf_free(&slots);
	buf_free(&vecs);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	bool again = resend_all;
	resend_all = false;
	for (int i = 0; i < route_count(); i++) {
		struct route_state *r = route_at(i);
		struct traffic_sample *ts = r->sample;
		if (!ts)
			continue;
		for (int k = 0; again && k < ts->size; k++)
			if (ts->vec[k] && !ts->dirty[k]) {
				ts->dirty[k] = 1;
				ts->n_dirty++;
			}
		if (ts->n_dirty)
			flush_route(r);
	}
}

void sample_sync_start(void)
{
	if (!timer)
		timer = event_new(vg.base, -1, EV_PERSIST, tick, NULL);
	if (!routes_sampling()) {
		event_del(timer); /* no index samples traffic: no wake-up for it */
		return;
	}
	struct timeval tv = timeval_of(SAMPLE_FLUSH_SECONDS);
	event_add(timer, &tv);
}

void sample_sync_stop(void)
{
	if (timer)
		event_free(timer);
	timer = NULL;
}
