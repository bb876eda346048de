/*
 * The rebuild coordinator (proxy/control/rebuild/): one rebuild_job per
 * managed index runs the runbook preflight -> baseline -> build -> verify ->
 * swap -> watch -> retain -> done through routing/rebuild_job.h's transition
 * function, doing each step's SQL on async libpq sessions so that hours of
 * CREATE INDEX CONCURRENTLY never block the loop.  Jobs are recorded in
 * vecgate.jobs under a per-index advisory lock, so a restarted (or another)
 * instance finds where a job stands.
 */
#ifndef VG_PROXY_CONTROL_REBUILD_REBUILD_H
#define VG_PROXY_CONTROL_REBUILD_REBUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/runtime/runtime.h"
#include "routing/rebuild_job.h"

struct rebuild_job;

/* Start a rebuild; the job id, or -1 with a reason and its kind in *why. */
int rebuild_start(const char *index_name, enum op_status *why, char *err, size_t errlen);
/* Operator events: JEV_CANCEL or JEV_ROLLBACK. */
enum op_status rebuild_signal(int job_id, enum job_event ev, char *err, size_t errlen);
/* Let a job waiting before its swap go on; override: also one whose
 * candidate the gate refused (approve_swap keeps it for the operator). */
enum op_status rebuild_approve(int job_id, bool override, char *err, size_t errlen);
const struct rebuild_job *rebuild_find(int job_id);
/* The newest job of an index, or NULL. */
const struct rebuild_job *rebuild_latest(const char *index_name);
/* Every job, newest first: rebuild_next(NULL) is the first. */
const struct rebuild_job *rebuild_next(const struct rebuild_job *job);
/* At startup: adopt unfinished jobs recorded in vecgate.jobs whose advisory
 * lock is free (a vecgate that died mid-rebuild), clean up and resume; keep
 * the newest finished one of each index as a record. */
void rebuild_resume_all(void);
/* Another instance notified a job of this index: follow it (or adopt it
 * when its lock is free). */
void rebuild_follow(const char *index_name);
void rebuild_shutdown(void);

/* Who else wants to know when a job enters a state (the drift monitor):
 * called after every transition with the job in its new state. */
typedef void (*rebuild_observer)(const struct rebuild_job *job);
void rebuild_observe(rebuild_observer fn);

#endif
