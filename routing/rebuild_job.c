/*
 * Transition function of the rebuild job.  The rules that matter for safety:
 * before the swap, leaving the job (failure, gate refusal, cancel) drops the
 * new index and never touches the live one; the swap itself cannot be
 * cancelled halfway (it is one short transaction, retried on lock_timeout);
 * after the swap, only a rollback (operator or degraded watch) moves traffic
 * back, and the old index is dropped only when retention ends.  An instance
 * that lost the advisory lock to another one stops where it is and touches
 * no index: the lock's holder drives the job from the catalog's truth.
 */
#include "routing/rebuild_job.h"

#include <string.h>

static const char *const state_names[JOB_STATE_COUNT] = {
	"preflight", "baseline", "build", "verify", "swap", "watch", "retain",
	"done", "failed", "cancelled", "rolled_back",
};

static const char *const event_names[JEV_EVENT_COUNT] = {
	"step_ok", "transient_failure", "fatal_failure", "gate_failed", "cancel", "rollback", "degraded", "resumed",
	"taken_over", "gate_held", "override", "withdraw",
};

static const char *const action_names[] = {
	"none", "run_step", "retry_after_backoff", "drop_new_index", "rollback_swap", "drop_old_index", "reject",
};

static struct job_transition to(enum job_state s, enum job_action a)
{
	struct job_transition t = {s, a};
	return t;
}

/* Does leaving from this state have a new index (possibly invalid) to drop? */
static bool has_new_index(enum job_state s)
{
	return s == JOB_BUILD || s == JOB_VERIFY || s == JOB_SWAP;
}

struct job_transition job_next(enum job_state state, enum job_event ev, int attempts, int max_attempts)
{
	if (job_is_terminal(state))
		return to(state, JACT_REJECT);
	enum job_action leave = has_new_index(state) ? JACT_DROP_NEW_INDEX : JACT_NONE;
	bool before_swap = state <= JOB_SWAP;

	switch (ev) {
	case JEV_STEP_OK:
		if (state == JOB_RETAIN)
			return to(JOB_DONE, JACT_DROP_OLD_INDEX);
		return to((enum job_state)(state + 1), JACT_RUN_STEP);
	case JEV_TRANSIENT:
		if (!before_swap)
			return to(state, JACT_RETRY_AFTER_BACKOFF); /* watch/retain probes just try again */
		if (attempts < max_attempts)
			return to(state, JACT_RETRY_AFTER_BACKOFF);
		return to(JOB_FAILED, leave);
	case JEV_FATAL:
		if (!before_swap)
			return to(JOB_ROLLED_BACK, JACT_ROLLBACK_SWAP);
		return to(JOB_FAILED, leave);
	case JEV_GATE_FAILED:
		if (state != JOB_VERIFY)
			return to(state, JACT_REJECT);
		return to(JOB_FAILED, JACT_DROP_NEW_INDEX);
	case JEV_CANCEL:
		if (state == JOB_SWAP || !before_swap)
			return to(state, JACT_REJECT); /* atomic swap; afterwards use rollback */
		return to(JOB_CANCELLED, leave);
	case JEV_ROLLBACK:
	case JEV_DEGRADED:
		if (before_swap)
			return to(state, JACT_REJECT);
		return to(JOB_ROLLED_BACK, JACT_ROLLBACK_SWAP);
	case JEV_TAKEN_OVER:
		/* not failed: the job goes on elsewhere; this instance just stops */
		return to(JOB_CANCELLED, JACT_NONE);
	case JEV_GATE_HELD:
		/* the candidate stays (invisible) and the swap step waits for the operator */
		return state == JOB_VERIFY ? to(JOB_SWAP, JACT_RUN_STEP) : to(state, JACT_REJECT);
	case JEV_OVERRIDE:
		return state == JOB_SWAP ? to(JOB_SWAP, JACT_RUN_STEP) : to(state, JACT_REJECT);
	case JEV_WITHDRAW:
		/* only the coordinator knows that the swap transaction has not started */
		return state == JOB_SWAP ? to(JOB_CANCELLED, JACT_DROP_NEW_INDEX) : to(state, JACT_REJECT);
	default:
		return to(state, JACT_REJECT);
	}
}

struct job_transition job_resume(enum job_state recorded, bool have_baseline, bool swap_committed)
{
	switch (recorded) {
	case JOB_SWAP:
		return to(swap_committed ? JOB_WATCH : JOB_SWAP, JACT_RUN_STEP);
	case JOB_WATCH:
	case JOB_RETAIN:
		return to(recorded, JACT_RUN_STEP);
	case JOB_BUILD:
	case JOB_VERIFY:
		return to(have_baseline ? JOB_BUILD : JOB_PREFLIGHT, JACT_RUN_STEP);
	default:
		if (job_is_terminal(recorded))
			return to(recorded, JACT_REJECT);
		return to(JOB_PREFLIGHT, JACT_RUN_STEP);
	}
}

bool job_is_terminal(enum job_state s)
{
	return s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED || s == JOB_ROLLED_BACK;
}

const char *job_state_name(enum job_state s)
{
	return (unsigned)s < JOB_STATE_COUNT ? state_names[s] : "?";
}

int job_state_from_name(const char *name)
{
	for (int i = 0; i < JOB_STATE_COUNT; i++)
		if (!strcmp(state_names[i], name))
			return i;
	return -1;
}

const char *job_event_name(enum job_event e)
{
	return (unsigned)e < JEV_EVENT_COUNT ? event_names[e] : "?";
}

const char *job_action_name(enum job_action a)
{
	return (unsigned)a <= JACT_REJECT ? action_names[a] : "?";
}

double job_backoff_seconds(int attempt, double base, double cap)
{
	double d = base;
	for (int i = 1; i < attempt && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}
