/*
 * Logging (log.c): one line per event with a wall-clock timestamp and a
 * level, to stderr or a file.  Debug lines sit on the hot path, so the macro
 * skips the call entirely below the configured level.
 */
#ifndef VG_PROXY_RUNTIME_LOG_H
#define VG_PROXY_RUNTIME_LOG_H

#include "conf/config.h"

void log_init(const struct vg_logging *cfg);
void log_set_level(enum vg_log_level lvl);
void vg_log(enum vg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
extern enum vg_log_level vg_log_min_level;
/* per-message tracing sits on the hot path: skip the call when disabled */
#define log_debug(...)                                                                             \
	do {                                                                                           \
		if (vg_log_min_level <= VG_LOG_DEBUG)                                                      \
			vg_log(VG_LOG_DEBUG, __VA_ARGS__);                                                     \
	} while (0)
#define log_info(...) vg_log(VG_LOG_INFO, __VA_ARGS__)
#define log_warn(...) vg_log(VG_LOG_WARNING, __VA_ARGS__)
#define log_error(...) vg_log(VG_LOG_ERROR, __VA_ARGS__)

/* A flood of the same kind of event (hostile clients, failing logins)
 * logs at most LOG_LIMIT_PER_SECOND lines a second per limiter; the next
 * line that gets through says how many were suppressed. */
#define LOG_LIMIT_PER_SECOND 10
struct log_limit {
	long second;
	int lines;
	unsigned long suppressed;
};
void vg_log_limited(struct log_limit *lim, enum vg_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
