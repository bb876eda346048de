/*
 * One background thread for CPU work the loop must not do itself.
 *
 * Contract:
 *   - One job at a time: worker_submit() only once the last job's `done`
 *     has run (the caller knows: it is called back).  The
 *     job runs on the worker's thread; `done` then runs on the loop, from
 *     the event base given to worker_start, and the worker is idle again
 *     when it does.  Everything the job wrote is visible to `done`.
 *   - Between submit and done the job owns what it was given: the loop
 *     must not touch that memory.
 *   - worker_stop() waits for a job in flight (its `done` is not called),
 *     joins the thread and frees the worker; it may be called from `done`.
 */
#ifndef VG_PROXY_RUNTIME_WORKER_H
#define VG_PROXY_RUNTIME_WORKER_H

#include <event2/event.h>

struct worker;
typedef void (*worker_fn)(void *arg);

/* NULL when the thread or its wake-up cannot be had. */
struct worker *worker_start(struct event_base *base);
void worker_submit(struct worker *w, worker_fn job, worker_fn done, void *arg);
/* Block until the job in flight has finished, then run its `done` here
 * (not later from the loop).  For the rare case where the loop cannot go
 * on without the job's memory; returns at once when idle. */
void worker_finish(struct worker *w);
void worker_stop(struct worker *w);

#endif
