/*
 * The recall-drift monitor (drift.c): per managed index with
 * drift_check_seconds > 0, the eval set runs against the live index on a
 * schedule (never while a rebuild of it runs) through the shared eval
 * runner.  A drop of more than drift_tolerance below the baseline (the last
 * rebuild's measured recall, else the first check) is logged, flagged and,
 * if configured, turned into a proposed rebuild that waits for an operator.
 */
#ifndef VG_PROXY_CONTROL_DRIFT_H
#define VG_PROXY_CONTROL_DRIFT_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/control/eval.h"

struct drift_monitor {
	struct drift_monitor *next;
	char *name;
	double recall, baseline, checked_at;
	double recall_file, recall_traffic; /* split by where the queries came from (NAN: none) */
	size_t n_traffic;
	bool have_recall, have_baseline, alert, running;
	uint64_t checks, failures;
	char last_error[256];
	char proposal[400];
	/* the check in progress */
	struct pg_session *s;
	struct eval_set set;
	struct eval_run run;
};

void drift_start(void);
void drift_stop(void);
const struct drift_monitor *drift_find(const char *index_name); /* NULL before its first check */
const struct drift_monitor *drift_next(const struct drift_monitor *d); /* drift_next(NULL) is the first */

#endif
