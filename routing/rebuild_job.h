/*
 * The rebuild job's state machine, one per managed index:
 *   preflight -> baseline -> build -> verify -> swap -> watch -> retain -> done
 * with failed, cancelled and rolled_back as terminal states.  One transition
 * function maps (state, event) to the next state and the action the
 * coordinator must perform on the way; everything else (SQL, timers,
 * persistence) lives in the coordinator, so every path is unit-testable.
 */
#ifndef VG_ROUTING_REBUILD_JOB_H
#define VG_ROUTING_REBUILD_JOB_H

#include <stdbool.h>

enum job_state {
	JOB_PREFLIGHT,
	JOB_BASELINE,
	JOB_BUILD,
	JOB_VERIFY,
	JOB_SWAP,
	JOB_WATCH,
	JOB_RETAIN,
	JOB_DONE,
	JOB_FAILED,
	JOB_CANCELLED,
	JOB_ROLLED_BACK,
	JOB_STATE_COUNT
};

enum job_event {
	JEV_STEP_OK,     /* the current step finished successfully */
	JEV_TRANSIENT,   /* the step failed in a way worth retrying (killed backend, lock_timeout) */
	JEV_FATAL,       /* the step failed for good (preflight finding, bad definition) */
	JEV_GATE_FAILED, /* verify: recall or latency outside the gate */
	JEV_CANCEL,      /* operator */
	JEV_ROLLBACK,    /* operator, after the swap */
	JEV_DEGRADED,    /* watch: error rate or latency got worse */
	JEV_RESUMED,     /* a restarted coordinator takes the job over (see job_resume) */
	JEV_TAKEN_OVER,  /* the advisory lock, lost with its session, is now held by another instance */
	JEV_GATE_HELD,   /* verify: the gate refused, approve_swap keeps the candidate for the operator */
	JEV_OVERRIDE,    /* operator: swap a held candidate over the gate's refusal */
	JEV_WITHDRAW,    /* operator: cancel a job waiting before its swap (its candidate is dropped) */
	JEV_EVENT_COUNT
};

enum job_action {
	JACT_NONE,
	JACT_RUN_STEP,           /* start the new state's step */
	JACT_RETRY_AFTER_BACKOFF, /* stay; clean up (drop invalid index) and retry after backoff */
	JACT_DROP_NEW_INDEX,     /* leaving without swapping: drop the new index concurrently */
	JACT_ROLLBACK_SWAP,      /* flip the indexes back in one transaction */
	JACT_DROP_OLD_INDEX,     /* retention over: drop the old index concurrently */
	JACT_REJECT,             /* event not allowed in this state: nothing changes */
};

struct job_transition {
	enum job_state next;
	enum job_action action;
};

/* attempts: tries of the current step so far (1 on the first run). */
struct job_transition job_next(enum job_state state, enum job_event ev, int attempts, int max_attempts);

/* Where a job recorded in state `recorded` goes on after a restart: a build
 * or verify with a baseline builds again (the dead build was dropped), a
 * swap goes to watch if it had committed and swaps otherwise, watch and
 * retain go on, anything earlier starts over from preflight.  Action
 * JACT_RUN_STEP; JACT_REJECT for a terminal state. */
struct job_transition job_resume(enum job_state recorded, bool have_baseline, bool swap_committed);

bool job_is_terminal(enum job_state s);
const char *job_state_name(enum job_state s);
/* -1 if unknown */
int job_state_from_name(const char *name);
const char *job_event_name(enum job_event e);
const char *job_action_name(enum job_action a);
/* Exponential backoff: base * 2^(attempt-1), capped. */
double job_backoff_seconds(int attempt, double base, double cap);

#endif
