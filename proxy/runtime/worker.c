/*
 * The eval's exact scan compares every row of a table with up to ~1000
 * query vectors: minutes of CPU which, done on the event loop, made every
 * client query through vecgate wait behind a slice of it.  This thread does
 * such work while the loop goes on forwarding traffic.  The job is handed
 * over under a mutex; its completion comes back through an eventfd that the
 * loop watches like any socket, so libevent needs no thread support and
 * `done` runs on the loop like every other callback.
 */
#include "proxy/runtime/worker.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum worker_state {
	WORKER_IDLE,    /* no job: the loop may submit */
	WORKER_QUEUED,  /* submitted, the thread has not taken it yet */
	WORKER_RUNNING, /* the thread runs it */
	WORKER_DONE,    /* finished; its `done` not yet run on the loop */
};

struct worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t queued;   /* to the thread: a job, or stopping */
	pthread_cond_t finished; /* to the loop, in worker_finish: the job is DONE */
	enum worker_state state; /* under mu */
	bool stopping;           /* under mu */
	worker_fn job, done;     /* set by the loop while IDLE, read by the thread after QUEUED */
	void *arg;
	int wake_fd;             /* eventfd: the thread's "a job is DONE" to the loop */
	struct event *wake;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->state != WORKER_QUEUED && !w->stopping)
			pthread_cond_wait(&w->queued, &w->mu);
		if (w->state != WORKER_QUEUED)
			break; /* stopping, and no job left to finish */
		w->state = WORKER_RUNNING;
		worker_fn job = w->job;
		void *job_arg = w->arg;
		pthread_mutex_unlock(&w->mu);
		job(job_arg);
		pthread_mutex_lock(&w->mu);
		w->state = WORKER_DONE;
		pthread_cond_signal(&w->finished);
		uint64_t one = 1;
		/* cannot fail short of a counter near 2^64; a lost wake-up would
		 * leave the loop waiting, so say so if it ever happens */
		if (write(w->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			abort();
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* On the loop: the eventfd is readable.  The state under the mutex says
 * whether a job is DONE (a wake-up may be stale after worker_finish). */
static void worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct worker *w = arg;
	uint64_t count;
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		abort();
	pthread_mutex_lock(&w->mu);
	bool done = w->state == WORKER_DONE;
	worker_fn fn = w->done;
	void *fn_arg = w->arg;
	if (done)
		w->state = WORKER_IDLE;
	pthread_mutex_unlock(&w->mu);
	if (done && fn)
		fn(fn_arg); /* last: it may stop and free the worker */
}

/* What worker_start made, whatever it got to (the thread is not running). */
static void worker_free(struct worker *w)
{
	if (w->wake)
		event_free(w->wake);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	pthread_cond_destroy(&w->finished);
	pthread_cond_destroy(&w->queued);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

struct worker *worker_start(struct event_base *base)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->state = WORKER_IDLE;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->queued, NULL);
	pthread_cond_init(&w->finished, NULL);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd >= 0)
		w->wake = event_new(base, w->wake_fd, EV_READ | EV_PERSIST, worker_wake_cb, w);
	if (!w->wake || event_add(w->wake, NULL) < 0) {
		worker_free(w);
		return NULL;
	}
	/* signals stay with the loop's thread (libevent's handlers, SIGPIPE
	 * ignored there): the worker blocks all of them from its birth */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		worker_free(w);
		return NULL;
	}
	return w;
}

void worker_submit(struct worker *w, worker_fn job, worker_fn done, void *arg)
{
	pthread_mutex_lock(&w->mu);
	assert(w->state == WORKER_IDLE && !w->stopping);
	w->job = job;
	w->done = done;
	w->arg = arg;
	w->state = WORKER_QUEUED;
	pthread_cond_signal(&w->queued);
	pthread_mutex_unlock(&w->mu);
}

void worker_finish(struct worker *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->state == WORKER_QUEUED || w->state == WORKER_RUNNING)
		pthread_cond_wait(&w->finished, &w->mu);
	bool done = w->state == WORKER_DONE;
	worker_fn fn = w->done;
	void *fn_arg = w->arg;
	w->state = WORKER_IDLE; /* the eventfd's wake-up, when it comes, finds nothing DONE */
	pthread_mutex_unlock(&w->mu);
	if (done && fn)
		fn(fn_arg);
}

void worker_stop(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true; /* a queued or running job still runs to its end */
	pthread_cond_signal(&w->queued);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	worker_free(w);
}
