/*
 * Logging: one line per event with a wall-clock timestamp and level, to
 * stderr or a file.  The level can change on reload without reopening.
 */
#include "proxy/runtime/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

enum vg_log_level vg_log_min_level = VG_LOG_INFO;
static FILE *log_fp;

void log_init(const struct vg_logging *cfg)
{
	vg_log_min_level = cfg->level;
	if (cfg->file) {
		FILE *fp = fopen(cfg->file, "a");
		if (fp) {
			setvbuf(fp, NULL, _IOLBF, 0);
			if (log_fp && log_fp != stderr)
				fclose(log_fp);
			log_fp = fp;
			return;
		}
		fprintf(stderr, "vecgate: cannot open log file %s, logging to stderr\n", cfg->file);
	}
	if (log_fp && log_fp != stderr)
		fclose(log_fp);
	log_fp = stderr;
}

void log_set_level(enum vg_log_level lvl)
{
	vg_log_min_level = lvl;
}

static void write_line(enum vg_log_level lvl, const char *line)
{
	static const char *names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
	FILE *fp = log_fp ? log_fp : stderr;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char tbuf[32];
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(fp, "%s.%03ld UTC [%d] %s %s\n", tbuf, ts.tv_nsec / 1000000, (int)getpid(), names[lvl], line);
}

void vg_log(enum vg_log_level lvl, const char *fmt, ...)
{
	if (lvl < vg_log_min_level)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	write_line(lvl, line);
}

void vg_log_limited(struct log_limit *lim, enum vg_log_level lvl, const char *fmt, ...)
{
	if (lvl < vg_log_min_level)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec != lim->second) {
		lim->second = ts.tv_sec;
		lim->lines = 0;
	}
	if (lim->lines >= LOG_LIMIT_PER_SECOND) {
		lim->suppressed++;
		return;
	}
	lim->lines++;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lim->suppressed && n >= 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, " (%lu similar lines suppressed)", lim->suppressed);
	lim->suppressed = 0;
	write_line(lvl, line);
}
