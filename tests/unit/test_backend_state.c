/*
 * Unit tests for what the backend table says about a backend's role now
 * (proxy/backend_table.c): a primary's write state as its pools see it,
 * whose transitions log a failover's start once and its end once with the
 * duration, however many sessions report the same; and current_role, from
 * the data plane for a primary that has told, else from the health check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/backend_table.h"
#include "proxy/runtime/log.h"
#include "proxy/runtime/runtime.h"

static char log_path[] = "/tmp/vg-backend-state-XXXXXX";

static int count_lines(const char *needle)
{
	FILE *f = fopen(log_path, "r");
	assert_non_null(f);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static int setup(void **state)
{
	(void)state;
	static const char y[] = "backends:\n  primary: {host: 10.0.0.1}\n  r1: {host: 10.0.0.2, role: replica}\n"
	                        "databases:\n  - name: app\nhealth_check: {user: mon}\n";
	char err[512];
	vg.cfg = config_load_string("t.yaml", y, strlen(y), err, sizeof(err));
	if (!vg.cfg)
		fail_msg("%s", err);
	int fd = mkstemp(log_path);
	assert_true(fd >= 0);
	close(fd);
	struct vg_logging lg = {.level = VG_LOG_INFO, .file = log_path};
	log_init(&lg);
	backend_table_build();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	backend_table_free();
	config_free(vg.cfg);
	vg.cfg = NULL;
	unlink(log_path);
	return 0;
}

static void test_failover_logged_once_each_way(void **state)
{
	(void)state;
	struct backend_state *b = backend_find("primary");
	assert_non_null(b);
	assert_int_equal(b->write_state, BW_UNKNOWN);
	assert_string_equal(backend_current_role(b), "unknown");
	backend_write_seen("primary", BW_WRITABLE, "a writable session logged in");
	assert_string_equal(backend_current_role(b), "primary");
	assert_int_equal(count_lines("primary (10.0.0.1:5432)"), 0); /* the first login: nothing failed over */

	for (int i = 0; i < 5; i++) /* every refused retry says the same */
		backend_write_seen("primary", BW_UNREACHABLE, "Connection refused");
	assert_string_equal(backend_current_role(b), "unreachable");
	assert_int_equal(count_lines("is not writable: unreachable (Connection refused)"), 1);
	double since = b->unwritable_since;
	assert_true(since > 0);

	for (int i = 0; i < 5; i++)
		backend_write_seen("primary", BW_STANDBY, "a hot standby, in recovery");
	assert_string_equal(backend_current_role(b), "standby");
	assert_int_equal(count_lines("is standby now (a hot standby, in recovery)"), 1);
	assert_true(b->unwritable_since == since); /* one episode, from its start */

	backend_write_seen("primary", BW_READ_ONLY, "default_transaction_read_only is on");
	assert_string_equal(backend_current_role(b), "read-only");
	for (int i = 0; i < 3; i++)
		backend_write_seen("primary", BW_WRITABLE, "a writable session logged in");
	assert_int_equal(count_lines("primary writable again after"), 1);
	assert_int_equal(count_lines("(was read-only)"), 1);
	assert_true(b->last_unwritable_secs >= 0 && b->last_unwritable_secs < 60);
	assert_int_equal(count_lines("is not writable"), 1);

	/* a second episode is a second pair of lines */
	backend_write_seen("primary", BW_READ_ONLY, "default_transaction_read_only is on");
	backend_write_seen("primary", BW_WRITABLE, "a session checked writable");
	assert_int_equal(count_lines("is not writable: read-only"), 1);
	assert_int_equal(count_lines("primary writable again after"), 2);
	backend_write_seen("nonesuch", BW_STANDBY, "not configured"); /* ignored */
}

static void test_replica_role_from_health(void **state)
{
	(void)state;
	struct backend_state *r = backend_find("r1");
	assert_non_null(r);
	assert_string_equal(backend_current_role(r), "unknown");
	r->checked = true;
	assert_string_equal(backend_current_role(r), "unreachable");
	r->view.up = true;
	r->in_recovery = true;
	assert_string_equal(backend_current_role(r), "standby");
	r->in_recovery = false; /* promoted */
	assert_string_equal(backend_current_role(r), "primary");
	/* a primary no session has told about yet: the health check's view */
	backend_table_build(); /* as a reload with other backends: state starts over */
	struct backend_state *p = backend_find("primary");
	p->checked = p->view.up = p->in_recovery = true;
	assert_string_equal(backend_current_role(p), "standby");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failover_logged_once_each_way),
		cmocka_unit_test(test_replica_role_from_health),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
