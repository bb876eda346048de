/*
 * The one runtime object of the process and the clock and randomness every
 * layer uses.  It lives here, below the data plane, so that libraries and
 * tests link without the daemon's main().
 */
#include "proxy/runtime/runtime.h"

#include <sys/random.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

struct vg_runtime vg;

double vg_now;

double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *vg_instance_id(void)
{
	static char id[128];
	if (!id[0]) {
		char host[64] = "?";
		gethostname(host, sizeof(host) - 1);
		snprintf(id, sizeof(id), "vecgate@%s:%d", host, (int)getpid());
	}
	return id;
}

struct timeval timeval_of(double seconds)
{
	struct timeval tv = {(long)seconds, (long)((seconds - (long)seconds) * 1e6)};
	return tv;
}

void random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n <= 0)
			continue;
		p += n;
		len -= (size_t)n;
	}
}
