/*
 * The rebuild coordinator: runs one rebuild_job per managed index through
 * routing/rebuild_job.h's state machine, doing each step's SQL on async libpq
 * sessions (a maintenance session for the work, a second one to poll build
 * progress), so hours of CREATE INDEX CONCURRENTLY never block the loop.
 * Jobs are kept in memory for now (durable state is the next step).
 */
#ifndef VG_PROXY_REBUILD_H
#define VG_PROXY_REBUILD_H

#include "proxy/json.h"
#include "routing/rebuild_job.h"

struct rebuild_job;

/* Start a rebuild of a managed index; returns the job id or -1 with a reason. */
int rebuild_start(const char *index_name, char *err, size_t errlen);
/* Operator events: JEV_CANCEL or JEV_ROLLBACK.  0, or -1 with a reason. */
int rebuild_signal(int job_id, enum job_event ev, char *err, size_t errlen);
/* Let a job waiting before its swap go on.  0, or -1 with a reason. */
int rebuild_approve(int job_id, char *err, size_t errlen);
const struct rebuild_job *rebuild_find(int job_id);
void rebuild_job_json(struct json *j, const char *key, const struct rebuild_job *job);
void rebuild_jobs_json(struct json *j, const char *key, const char *index_name /* NULL = all */);
/* The newest job of an index, or NULL. */
const struct rebuild_job *rebuild_latest(const char *index_name);
/* At startup: adopt unfinished jobs recorded in vecgate.jobs whose advisory
 * lock is free (a vecgate that died mid-rebuild), clean up and resume. */
void rebuild_resume_all(void);
/* The recall-drift monitor's view of an index (object under `key`). */
void rebuild_drift_json(struct json *j, const char *key, const char *index_name);
/* Prometheus text for every job's latest state, appended to buf. */
struct evbuffer;
void rebuild_metrics(struct evbuffer *buf);
void rebuild_shutdown(void);

#endif
