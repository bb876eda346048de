/*
 * The resolver (proxy/runtime/resolver.c).  First its pure policy: how long
 * an answer is kept (the record TTL within dns.min_ttl and dns.max_ttl, the
 * cap winning), what the A and AAAA outcomes mean together, /etc/hosts lines.
 * Then the cache on a real loop, against an evdns server port that this test
 * runs as the only nameserver: concurrent lookups of a name share one
 * question, a fresh answer comes at once, a failed connect asks again before
 * the TTL ends and moves to the name's next address, a TTL of 0 is not
 * kept, NXDOMAIN is kept for nxdomain_ttl, a lookup that times out keeps the
 * last addresses, a cancelled waiter hears nothing, and numeric addresses
 * and socket directories never ask at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/runtime/resolver.h"
#include "proxy/runtime/runtime.h"

/* ---- policy ---- */

static void test_keep_seconds(void **state)
{
	(void)state;
	struct vg_dns d = {.max_ttl = 15, .min_ttl = 1};
	assert_true(resolver_keep_seconds(&d, 5) == 5);
	assert_true(resolver_keep_seconds(&d, 300) == 15); /* capped */
	assert_true(resolver_keep_seconds(&d, 0) == 1);    /* a burst shares a lookup a second */
	assert_true(resolver_keep_seconds(&d, -3) == 1);
	d.max_ttl = 0; /* no caching: the cap wins over the floor */
	assert_true(resolver_keep_seconds(&d, 60) == 0);
	d = (struct vg_dns){.max_ttl = 15, .min_ttl = 0};
	assert_true(resolver_keep_seconds(&d, 0) == 0);
}

static void test_outcome(void **state)
{
	(void)state;
	assert_int_equal(resolver_outcome(DNS_ERR_NONE, 1, DNS_ERR_NODATA, 0), DNS_ANSWERED);
	assert_int_equal(resolver_outcome(DNS_ERR_TIMEOUT, 0, DNS_ERR_NONE, 2), DNS_ANSWERED);
	assert_int_equal(resolver_outcome(DNS_ERR_NOTEXIST, 0, DNS_ERR_NOTEXIST, 0), DNS_NO_NAME);
	/* NXDOMAIN for one family is the name's answer */
	assert_int_equal(resolver_outcome(DNS_ERR_NOTEXIST, 0, DNS_ERR_TIMEOUT, 0), DNS_NO_NAME);
	assert_int_equal(resolver_outcome(DNS_ERR_NODATA, 0, DNS_ERR_NODATA, 0), DNS_NO_NAME);
	assert_int_equal(resolver_outcome(DNS_ERR_NODATA, 0, DNS_ERR_TIMEOUT, 0), DNS_LOOKUP_FAILED);
	assert_int_equal(resolver_outcome(DNS_ERR_TIMEOUT, 0, DNS_ERR_TIMEOUT, 0), DNS_LOOKUP_FAILED);
	assert_int_equal(resolver_outcome(DNS_ERR_SERVERFAILED, 0, DNS_ERR_REFUSED, 0), DNS_LOOKUP_FAILED);
}

static void test_hosts_line(void **state)
{
	(void)state;
	struct sockaddr_storage sa;
	socklen_t len;
	char buf[64];
	assert_true(resolver_hosts_line("127.0.0.1\tlocalhost\n", "localhost", &sa, &len));
	assert_int_equal(sa.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_string_equal(resolver_format((struct sockaddr *)&sa, buf, sizeof(buf)), "127.0.0.1");
	assert_true(resolver_hosts_line("::1 localhost ip6-localhost ip6-loopback", "IP6-Localhost", &sa, &len));
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_string_equal(resolver_format((struct sockaddr *)&sa, buf, sizeof(buf)), "::1");
	assert_false(resolver_hosts_line("10.0.0.1 db.internal # db", "db", &sa, &len)); /* whole names only */
	assert_false(resolver_hosts_line("# 10.0.0.1 db", "db", &sa, &len));
	assert_false(resolver_hosts_line("10.0.0.1 other # db", "db", &sa, &len)); /* a comment is not a name */
	assert_false(resolver_hosts_line("", "db", &sa, &len));
	assert_false(resolver_hosts_line("not-an-address db", "db", &sa, &len));
}

/* ---- the cache against a nameserver of our own ---- */

struct zone_name {
	const char *name;
	const char *addrs[2]; /* IPv4 */
	int ttl;
	int asked_a;
};

static struct zone_name zone[] = {
	{"db.test", {"10.0.0.1"}, 60, 0},     {"multi.test", {"10.0.1.1", "10.0.1.2"}, 60, 0},
	{"short.test", {"10.0.2.1"}, 0, 0},   {"flaky.test", {"10.0.3.1"}, 60, 0},
	{"cancel.test", {"10.0.4.1"}, 60, 0}, {"moving.test", {"10.0.5.1"}, 60, 0},
};
static bool drop_answers; /* the nameserver stops answering (timeouts) */
static int asked_unknown;

static struct zone_name *zone_find(const char *name)
{
	for (size_t i = 0; i < sizeof(zone) / sizeof(*zone); i++)
		if (!strcasecmp(zone[i].name, name))
			return &zone[i];
	return NULL;
}

static void serve(struct evdns_server_request *req, void *arg)
{
	(void)arg;
	const struct evdns_server_question *q = req->questions[0];
	struct zone_name *z = zone_find(q->name);
	if (q->type == EVDNS_TYPE_A) {
		if (z)
			z->asked_a++;
		else
			asked_unknown++;
	}
	if (drop_answers) {
		evdns_server_request_drop(req);
		return;
	}
	if (!z) {
		evdns_server_request_respond(req, DNS_ERR_NOTEXIST);
		return;
	}
	if (q->type == EVDNS_TYPE_A) {
		uint32_t a[2];
		int n = 0;
		for (; n < 2 && z->addrs[n]; n++)
			inet_pton(AF_INET, z->addrs[n], &a[n]);
		/* the name as asked: evdns checks it comes back in the same case */
		evdns_server_request_add_a_reply(req, q->name, n, a, z->ttl);
	}
	evdns_server_request_respond(req, DNS_ERR_NONE);
}

struct answer {
	struct resolver_wait w;
	bool called;
	char addr[64];
	int port;
	char error[RESOLVER_ERR_LEN];
};

static int answers;

static void answered(void *arg, const struct sockaddr *sa, socklen_t len, const char *error)
{
	struct answer *a = arg;
	(void)len;
	assert_false(a->called); /* exactly once */
	a->called = true;
	answers++;
	if (sa) {
		resolver_format(sa, a->addr, sizeof(a->addr));
		a->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else {
		snprintf(a->error, sizeof(a->error), "%s", error);
	}
}

static struct event_base *base;
static struct evdns_server_port *port;
static int udp;

/* Run the loop until `want` callbacks came in all (or 5 s passed). */
static void run_until(int want)
{
	double deadline = now_sec() + 5;
	while (answers < want && now_sec() < deadline) {
		struct timeval tv = {0, 20000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(answers, want);
}

static enum resolve_status ask(const char *name, int port_no, struct answer *a, struct sockaddr_storage *sa)
{
	socklen_t len;
	char err[RESOLVER_ERR_LEN];
	memset(a, 0, sizeof(*a));
	return resolver_lookup(name, port_no, sa, &len, &a->w, answered, a, err, sizeof(err));
}

/* Two waiters for one name, both pending; the callback count starts at 0. */
static void ask_two(const char *name, struct answer *a, struct answer *b)
{
	struct sockaddr_storage sa;
	answers = 0;
	assert_int_equal(ask(name, 5432, a, &sa), RESOLVE_PENDING);
	assert_int_equal(ask(name, 5432, b, &sa), RESOLVE_PENDING);
}

static int setup(void **state)
{
	(void)state;
	base = event_base_new();
	udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	if (bind(udp, (struct sockaddr *)&sin, sl) < 0 || getsockname(udp, (struct sockaddr *)&sin, &sl) < 0)
		return -1;
	port = evdns_add_server_port_with_base(base, udp, 0, serve, NULL);
	char yaml[512], err[512];
	snprintf(yaml, sizeof(yaml),
	         "backends:\n  primary: {host: db.test}\ndatabases:\n  - name: app\n"
	         "dns: {nameservers: ['127.0.0.1:%d'], min_ttl: 0, max_ttl: 60, nxdomain_ttl: 60, timeout: 0.1, "
	         "attempts: 1}\n",
	         ntohs(sin.sin_port));
	vg.cfg = config_load_string("t.yaml", yaml, strlen(yaml), err, sizeof(err));
	if (!vg.cfg) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	vg.base = base;
	return resolver_start(base, &vg.cfg->dns, err, sizeof(err));
}

static int teardown(void **state)
{
	(void)state;
	resolver_stop();
	evdns_close_server_port(port);
	close(udp);
	event_base_free(base);
	config_free(vg.cfg);
	vg.cfg = NULL;
	return 0;
}

static void test_no_lookup_needed(void **state)
{
	(void)state;
	struct answer a;
	struct sockaddr_storage sa;
	char buf[64];
	assert_int_equal(ask("10.9.8.7", 5433, &a, &sa), RESOLVE_OK);
	assert_string_equal(resolver_format((struct sockaddr *)&sa, buf, sizeof(buf)), "10.9.8.7");
	assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 5433);
	assert_int_equal(ask("::1", 5432, &a, &sa), RESOLVE_OK);
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_int_equal(ask("/run/postgresql", 5432, &a, &sa), RESOLVE_OK);
	assert_string_equal(((struct sockaddr_un *)&sa)->sun_path, "/run/postgresql/.s.PGSQL.5432");
	assert_false(resolver_is_name("10.9.8.7"));
	assert_false(resolver_is_name("/tmp"));
	assert_true(resolver_is_name("db.test"));
	/* localhost is in /etc/hosts: no question either */
	assert_int_equal(ask("localhost", 5432, &a, &sa), RESOLVE_OK);
	assert_int_equal(asked_unknown, 0);
}

static void test_waiters_share_then_cache(void **state)
{
	(void)state;
	struct zone_name *z = zone_find("db.test");
	struct answer a[3];
	struct sockaddr_storage sa;
	answers = 0;
	for (int i = 0; i < 3; i++)
		assert_int_equal(ask("db.test", 5432 + i, &a[i], &sa), RESOLVE_PENDING);
	assert_false(a[0].called); /* never from inside resolver_lookup */
	run_until(3);
	assert_int_equal(z->asked_a, 1);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(a[i].addr, "10.0.0.1");
		assert_int_equal(a[i].port, 5432 + i); /* each with its own port */
	}
	/* fresh: at once, no question */
	struct answer b;
	char buf[64];
	assert_int_equal(ask("DB.test", 6000, &b, &sa), RESOLVE_OK);
	assert_string_equal(resolver_format((struct sockaddr *)&sa, buf, sizeof(buf)), "10.0.0.1");
	assert_int_equal(z->asked_a, 1);
	/* a failed connect: asked again at once, long before the 60 s TTL */
	resolver_connect_failed("db.test", (struct sockaddr *)&sa);
	answers = 0;
	assert_int_equal(ask("db.test", 5432, &b, &sa), RESOLVE_PENDING);
	z->addrs[0] = "10.0.0.9"; /* it moved */
	run_until(1);
	assert_int_equal(z->asked_a, 2);
	assert_string_equal(b.addr, "10.0.0.9");
	/* a failure from an address of an earlier answer changes nothing */
	struct sockaddr_in old = {.sin_family = AF_INET};
	inet_pton(AF_INET, "10.0.0.1", &old.sin_addr);
	resolver_connect_failed("db.test", (struct sockaddr *)&old);
	assert_int_equal(ask("db.test", 5432, &b, &sa), RESOLVE_OK);
}

static void test_next_address_after_failure(void **state)
{
	(void)state;
	struct answer a;
	struct sockaddr_storage sa;
	char buf[64];
	answers = 0;
	assert_int_equal(ask("multi.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	assert_string_equal(a.addr, "10.0.1.1"); /* the first, as long as it works */
	assert_int_equal(ask("multi.test", 5432, &a, &sa), RESOLVE_OK);
	assert_string_equal(resolver_format((struct sockaddr *)&sa, buf, sizeof(buf)), "10.0.1.1");
	resolver_connect_failed("multi.test", (struct sockaddr *)&sa);
	answers = 0;
	assert_int_equal(ask("multi.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	assert_string_equal(a.addr, "10.0.1.2"); /* the same answer again: its next address */
}

static void test_zero_ttl_not_kept(void **state)
{
	(void)state;
	struct zone_name *z = zone_find("short.test");
	struct answer a, b;
	struct sockaddr_storage sa;
	ask_two("short.test", &a, &b);
	run_until(2);
	assert_int_equal(z->asked_a, 1); /* concurrent waiters still share */
	answers = 0;
	assert_int_equal(ask("short.test", 5432, &a, &sa), RESOLVE_PENDING); /* min_ttl 0: asked every time */
	run_until(1);
	assert_int_equal(z->asked_a, 2);
}

static void test_nxdomain_cached(void **state)
{
	(void)state;
	struct answer a;
	struct sockaddr_storage sa;
	socklen_t len;
	char err[RESOLVER_ERR_LEN];
	int before = asked_unknown;
	answers = 0;
	assert_int_equal(ask("nope.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	assert_string_equal(a.error, "cannot resolve host nope.test: no such host");
	assert_int_equal(resolver_lookup("nope.test", 5432, &sa, &len, &a.w, answered, &a, err, sizeof(err)),
	                 RESOLVE_FAILED);
	assert_string_equal(err, "cannot resolve host nope.test: no such host");
	assert_int_equal(asked_unknown, before + 1);
}

static void test_timeout_keeps_last_addresses(void **state)
{
	(void)state;
	struct answer a;
	struct sockaddr_storage sa;
	answers = 0;
	assert_int_equal(ask("flaky.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	assert_string_equal(a.addr, "10.0.3.1");
	struct sockaddr_in at = {.sin_family = AF_INET};
	inet_pton(AF_INET, "10.0.3.1", &at.sin_addr);
	resolver_connect_failed("flaky.test", (struct sockaddr *)&at);
	drop_answers = true;
	answers = 0;
	assert_int_equal(ask("flaky.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	drop_answers = false;
	assert_string_equal(a.addr, "10.0.3.1"); /* no answer is not a new answer */
}

/* A connect fails while a lookup is under way (asked before the name
 * moved): its answer, the same address, is used by the waiters but not kept,
 * and the next connect asks again and finds the new address. */
static void test_failure_during_lookup_rechecks(void **state)
{
	(void)state;
	struct zone_name *z = zone_find("moving.test");
	struct answer a, b;
	struct sockaddr_storage sa;
	answers = 0;
	assert_int_equal(ask("moving.test", 5432, &a, &sa), RESOLVE_PENDING);
	run_until(1);
	struct sockaddr_in at = {.sin_family = AF_INET};
	inet_pton(AF_INET, "10.0.5.1", &at.sin_addr);
	assert_int_equal(resolver_connect_failed("moving.test", (struct sockaddr *)&at), 1);
	answers = 0;
	assert_int_equal(ask("moving.test", 5432, &a, &sa), RESOLVE_PENDING); /* asked: the old answer */
	assert_int_equal(resolver_connect_failed("moving.test", (struct sockaddr *)&at), 1); /* failing meanwhile */
	run_until(1);
	assert_string_equal(a.addr, "10.0.5.1");
	z->addrs[0] = "10.0.5.2"; /* now the name has moved */
	answers = 0;
	assert_int_equal(ask("moving.test", 5432, &b, &sa), RESOLVE_PENDING); /* not kept: asked again */
	run_until(1);
	assert_string_equal(b.addr, "10.0.5.2");
	assert_int_equal(z->asked_a, 3);
	/* a name that is not cached: no addresses to count */
	assert_int_equal(resolver_connect_failed("never.test", (struct sockaddr *)&at), 0);
}

static void test_cancelled_waiter_hears_nothing(void **state)
{
	(void)state;
	struct zone_name *z = zone_find("cancel.test");
	struct answer a, b;
	ask_two("cancel.test", &a, &b);
	resolver_cancel(&a.w);
	assert_false(resolver_waiting(&a.w));
	resolver_cancel(&a.w); /* harmless twice */
	run_until(1);
	assert_false(a.called);
	assert_true(b.called);
	assert_int_equal(z->asked_a, 1);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_keep_seconds),
		cmocka_unit_test(test_outcome),
		cmocka_unit_test(test_hosts_line),
	};
	const struct CMUnitTest cache[] = {
		cmocka_unit_test(test_no_lookup_needed),
		cmocka_unit_test(test_waiters_share_then_cache),
		cmocka_unit_test(test_next_address_after_failure),
		cmocka_unit_test(test_zero_ttl_not_kept),
		cmocka_unit_test(test_nxdomain_cached),
		cmocka_unit_test(test_timeout_keeps_last_addresses),
		cmocka_unit_test(test_failure_during_lookup_rechecks),
		cmocka_unit_test(test_cancelled_waiter_hears_nothing),
	};
	int failed = cmocka_run_group_tests_name("resolver policy", pure, NULL, NULL);
	return failed + cmocka_run_group_tests_name("resolver cache", cache, setup, teardown);
}
