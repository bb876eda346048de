/*
 * The backend table (backend_table.c): one state per configured backend,
 * built from the config.  The control plane's health checks write each
 * backend's view (up, lag, rotation); routing reads the views of the
 * replicas and fallbacks serving a primary.
 */
#ifndef VG_PROXY_BACKEND_TABLE_H
#define VG_PROXY_BACKEND_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "routing/route.h"

struct pg_session;

/* What the data plane last saw of a primary backend's writability: its
 * read-write pools' logins and role checks.  Leaving BW_WRITABLE starts a
 * failover episode and the first writable session ends it; each end is
 * logged once, the second with the episode's duration (backend_write_seen). */
enum backend_write_state {
	BW_UNKNOWN,     /* no session has told yet */
	BW_WRITABLE,    /* a writable session answered */
	BW_STANDBY,     /* it answers in recovery (in_hot_standby, pg_is_in_recovery()) */
	BW_READ_ONLY,   /* it answers with default_transaction_read_only on */
	BW_UNREACHABLE, /* connections fail: refused, lost, timed out, starting up or shutting down */
};

struct backend_state {
	char *name, *host, *serves;
	const char *key; /* name, pinned: what a client keeps across a reload */
	int port;
	struct backend_view view;
	bool checked; /* at least one check finished */
	bool in_recovery, replay_paused;
	double last_check, last_ok, sent_at;
	char last_error[256];
	struct pg_session *session; /* the health check's, owned by the control plane */
	bool in_flight;
	uint64_t checks;
	uint64_t routed_reads;   /* vector reads sent here */
	uint64_t replayed_reads; /* reads this backend failed, re-run on the primary */
	/* primary: data-plane view of writes (target_session_attrs read-write) */
	enum backend_write_state write_state;
	double unwritable_since;      /* the current episode's start (write_state not writable) */
	double last_unwritable_secs;  /* the last finished episode's length, 0 = none yet */
	uint64_t readonly_refused;    /* server sessions not pooled because they were read-only */
};

/* (Re)build the table from vg.cfg; the caller closes health sessions first. */
void backend_table_build(void);
/* Does vg.cfg name the same backends (names, addresses, roles, serves)? */
bool backend_table_matches_config(void);
void backend_table_take_bounds(void); /* new lag bounds from vg.cfg */
void backend_table_free(void);
int backend_count(void);
struct backend_state *backend_at(int i);
struct backend_state *backend_find(const char *name);
/* A read-write pool of primary backend `name` saw this (detail: why, for
 * the log): the one transition of its write_state, which logs a failover's
 * start and end. */
void backend_write_seen(const char *name, enum backend_write_state to, const char *detail);
/* What the backend is now: "primary", "standby", "read-only",
 * "unreachable" or "unknown" (a primary's from the data plane once a session
 * told, else the health check's). */
const char *backend_current_role(const struct backend_state *b);
/* Replicas and fallbacks serving `primary`: fills out[] and views[]. */
int backends_serving(const char *primary, struct backend_state **out, struct backend_view *views, int max);

#endif
