/*
 * Backend host names resolved without stopping the loop.  A blocking
 * getaddrinfo() on the event loop stopped every client for as long as the
 * resolver took to answer, for every new server connection, and libpq did the
 * same inside PQconnectPoll for every side connection.  Here a name is asked
 * of DNS through evdns (A and AAAA at once, on the loop, non-blocking), one
 * query per name however many connections wait for it, and the answer is
 * kept for its TTL within configured bounds, so that a host name costs a
 * lookup per TTL, not per connection, and a name that moves (a failover) is
 * followed within that TTL.  /etc/hosts names and numeric addresses never
 * reach DNS.
 */
#include "proxy/runtime/resolver.h"
#include "proxy/runtime/runtime.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/dns.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* addresses kept per name: more are dropped (v4 first, then v6) */
#define DNS_MAX_ADDRS 8
#define HOSTS_FILE "/etc/hosts"

enum dns_state {
	DNS_UNKNOWN,  /* never answered: the first lookup runs */
	DNS_RESOLVED, /* addrs hold its addresses, fresh until `expires` */
	DNS_FAILED,   /* no address; fresh until `expires` */
};

enum dns_query {
	QUERY_IDLE,
	QUERY_RUNNING, /* A and AAAA asked; `pending` answers still to come */
};

struct dns_entry {
	TAILQ_ENTRY(dns_entry) link;
	char *name;
	enum dns_state state;
	enum dns_query query;
	bool from_hosts; /* /etc/hosts: never expires (until a reload) */
	struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port 0 */
	int n_addrs;
	int current;    /* the address served: the next one after a failed connect */
	bool recheck;   /* a connect failed while a query ran: its answer, if unchanged, is stale at once */
	double expires; /* now_sec() time */
	char error[128];       /* DNS_FAILED: why */
	double failing_since;  /* > 0: a failure was logged, its end will be too */
	/* the running query's answers */
	int pending;
	int err4, err6, ttl4, ttl6;
	struct in_addr got4[DNS_MAX_ADDRS];
	struct in6_addr got6[DNS_MAX_ADDRS];
	int n4, n6;
	struct resolver_waiters waiters;
};

static struct {
	struct event_base *base;
	struct evdns_base *dns; /* NULL: evdns could not be set up, names do not resolve */
	TAILQ_HEAD(, dns_entry) entries;
	bool started;
} rs;

/* ---- policy (pure) ---- */

double resolver_keep_seconds(const struct vg_dns *cfg, int record_ttl)
{
	double keep = record_ttl > 0 ? record_ttl : 0;
	if (keep < cfg->min_ttl)
		keep = cfg->min_ttl;
	if (keep > cfg->max_ttl)
		keep = cfg->max_ttl; /* the operator's cap wins over the floor */
	return keep;
}

enum dns_outcome resolver_outcome(int err4, int n4, int err6, int n6)
{
	if (n4 > 0 || n6 > 0)
		return DNS_ANSWERED;
	/* NXDOMAIN is the name's own answer, whatever the other family says */
	if (err4 == DNS_ERR_NOTEXIST || err6 == DNS_ERR_NOTEXIST)
		return DNS_NO_NAME;
	bool none4 = err4 == DNS_ERR_NODATA || err4 == DNS_ERR_NONE;
	bool none6 = err6 == DNS_ERR_NODATA || err6 == DNS_ERR_NONE;
	return none4 && none6 ? DNS_NO_NAME : DNS_LOOKUP_FAILED;
}

bool resolver_hosts_line(const char *line, const char *name, struct sockaddr_storage *out, socklen_t *outlen)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", line);
	buf[strcspn(buf, "#\n")] = 0;
	char *save = NULL;
	const char *addr = strtok_r(buf, " \t", &save);
	if (!addr)
		return false;
	bool listed = false;
	for (const char *n; !listed && (n = strtok_r(NULL, " \t", &save));)
		listed = !strcasecmp(n, name);
	if (!listed)
		return false;
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *in4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		*outlen = sizeof(*in4);
		return true;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		*outlen = sizeof(*in6);
		return true;
	}
	return false;
}

/* ---- addresses ---- */

static socklen_t addr_len(const struct sockaddr_storage *sa)
{
	return sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
		               sizeof(struct in6_addr));
	return false;
}

static void set_port(struct sockaddr_storage *sa, int port)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

const char *resolver_format(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	                                          : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (!inet_ntop(sa->sa_family, a, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* A numeric address (getaddrinfo with AI_NUMERICHOST never asks anyone). */
static bool numeric(const char *host, struct sockaddr_storage *out, socklen_t *outlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return false;
	bool ok = res->ai_addrlen <= sizeof(*out);
	if (ok) {
		memset(out, 0, sizeof(*out));
		memcpy(out, res->ai_addr, res->ai_addrlen);
		*outlen = (socklen_t)res->ai_addrlen;
	}
	freeaddrinfo(res);
	return ok;
}

bool resolver_is_name(const char *host)
{
	struct sockaddr_storage sa;
	socklen_t len;
	return host[0] != '/' && !numeric(host, &sa, &len);
}

static int unix_path(const char *dir, int port, struct sockaddr_storage *out, socklen_t *outlen, char *err,
                     size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_un *un = (struct sockaddr_un *)out;
	un->sun_family = AF_UNIX;
	int n = snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(un->sun_path)) {
		snprintf(err, errlen, "unix socket path too long: %s", dir);
		return -1;
	}
	*outlen = sizeof(*un);
	return 0;
}

/* "a, b, c" of an entry's addresses, for log lines */
static const char *addr_list(const struct dns_entry *e, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < e->n_addrs && used + 1 < len; i++) {
		char one[INET6_ADDRSTRLEN];
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                 resolver_format((const struct sockaddr *)&e->addrs[i], one, sizeof(one)));
		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* ---- entries ---- */

static struct dns_entry *entry_find(const char *name)
{
	struct dns_entry *e;
	TAILQ_FOREACH(e, &rs.entries, link)
		if (!strcasecmp(e->name, name))
			return e;
	return NULL;
}

/* Addresses /etc/hosts gives the name, read when the name is first asked
 * for (a local file, as getaddrinfo reads it): v4 before v6, as DNS answers
 * are ordered here. */
static void entry_from_hosts(struct dns_entry *e)
{
	FILE *f = fopen(HOSTS_FILE, "r");
	if (!f)
		return;
	struct sockaddr_storage v4[DNS_MAX_ADDRS], v6[DNS_MAX_ADDRS];
	int n4 = 0, n6 = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		struct sockaddr_storage sa;
		socklen_t len;
		if (!resolver_hosts_line(line, e->name, &sa, &len))
			continue;
		if (sa.ss_family == AF_INET && n4 < DNS_MAX_ADDRS)
			v4[n4++] = sa;
		else if (sa.ss_family == AF_INET6 && n6 < DNS_MAX_ADDRS)
			v6[n6++] = sa;
	}
	fclose(f);
	for (int i = 0; i < n4 && e->n_addrs < DNS_MAX_ADDRS; i++)
		e->addrs[e->n_addrs++] = v4[i];
	for (int i = 0; i < n6 && e->n_addrs < DNS_MAX_ADDRS; i++)
		e->addrs[e->n_addrs++] = v6[i];
	if (e->n_addrs) {
		e->from_hosts = true;
		e->state = DNS_RESOLVED;
	}
}

static struct dns_entry *entry_new(const char *name)
{
	struct dns_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->name = strdup(name);
	if (!e->name) {
		free(e);
		return NULL;
	}
	TAILQ_INIT(&e->waiters);
	entry_from_hosts(e);
	TAILQ_INSERT_TAIL(&rs.entries, e, link);
	return e;
}

static void entry_free(struct dns_entry *e)
{
	struct resolver_wait *w;
	while ((w = TAILQ_FIRST(&e->waiters))) {
		TAILQ_REMOVE(&e->waiters, w, link);
		w->list = NULL;
	}
	TAILQ_REMOVE(&rs.entries, e, link);
	free(e->name);
	free(e);
}

static bool entry_fresh(const struct dns_entry *e, double now)
{
	return e->from_hosts || (e->state != DNS_UNKNOWN && now < e->expires);
}

/* The address an answered entry serves, with the caller's port. */
static void entry_address(const struct dns_entry *e, int port, struct sockaddr_storage *out, socklen_t *outlen)
{
	assert(e->state == DNS_RESOLVED && e->n_addrs > 0 && e->current < e->n_addrs);
	*out = e->addrs[e->current];
	set_port(out, port);
	*outlen = addr_len(out);
}

/* ---- queries ---- */

static void query_done(struct dns_entry *e);

/* One family's answer; the lookup is done when both have come. */
static void family_answered(struct dns_entry *e, bool v6, int result, char type, int count, int ttl,
                            const void *addresses)
{
	/* evdns defers every callback to the loop: never inside query_start */
	assert(e->query == QUERY_RUNNING && e->pending > 0);
	if (v6) {
		e->err6 = result;
		e->ttl6 = ttl;
		for (int i = 0; result == DNS_ERR_NONE && type == DNS_IPv6_AAAA && i < count && e->n6 < DNS_MAX_ADDRS; i++)
			e->got6[e->n6++] = ((const struct in6_addr *)addresses)[i];
	} else {
		e->err4 = result;
		e->ttl4 = ttl;
		for (int i = 0; result == DNS_ERR_NONE && type == DNS_IPv4_A && i < count && e->n4 < DNS_MAX_ADDRS; i++)
			memcpy(&e->got4[e->n4++], (const uint8_t *)addresses + (size_t)i * 4, 4);
	}
	if (--e->pending == 0)
		query_done(e);
}

static void a_answered(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	family_answered(arg, false, result, type, count, ttl, addresses);
}

static void aaaa_answered(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	family_answered(arg, true, result, type, count, ttl, addresses);
}

/* Ask for A and AAAA; false when neither could be asked. */
static bool query_start(struct dns_entry *e)
{
	assert(e->query == QUERY_IDLE && TAILQ_EMPTY(&e->waiters));
	if (!rs.dns)
		return false;
	e->query = QUERY_RUNNING;
	e->pending = 2;
	e->n4 = e->n6 = 0;
	e->err4 = e->err6 = DNS_ERR_NONE;
	e->ttl4 = e->ttl6 = 0;
	/* a NULL handle means no request was made, and no callback will come */
	if (!evdns_base_resolve_ipv4(rs.dns, e->name, 0, a_answered, e)) {
		e->pending--;
		e->err4 = DNS_ERR_UNKNOWN;
	}
	if (!evdns_base_resolve_ipv6(rs.dns, e->name, 0, aaaa_answered, e)) {
		e->pending--;
		e->err6 = DNS_ERR_UNKNOWN;
	}
	if (e->pending == 0) {
		e->query = QUERY_IDLE;
		return false;
	}
	log_debug("dns: looking up %s", e->name);
	return true;
}

/* The answers of a finished query, v4 first, as the entry's addresses. */
static void take_answer(struct dns_entry *e, double now)
{
	struct sockaddr_storage fresh[DNS_MAX_ADDRS];
	int n = 0;
	for (int i = 0; i < e->n4 && n < DNS_MAX_ADDRS; i++, n++) {
		memset(&fresh[n], 0, sizeof(fresh[n]));
		struct sockaddr_in *in4 = (struct sockaddr_in *)&fresh[n];
		in4->sin_family = AF_INET;
		in4->sin_addr = e->got4[i];
	}
	for (int i = 0; i < e->n6 && n < DNS_MAX_ADDRS; i++, n++) {
		memset(&fresh[n], 0, sizeof(fresh[n]));
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&fresh[n];
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = e->got6[i];
	}
	bool same = e->state == DNS_RESOLVED && n == e->n_addrs;
	for (int i = 0; same && i < n; i++)
		same = same_addr((struct sockaddr *)&fresh[i], (struct sockaddr *)&e->addrs[i]);
	/* the shortest TTL of the families that answered */
	int ttl = e->n4 && e->n6 ? (e->ttl4 < e->ttl6 ? e->ttl4 : e->ttl6) : e->n4 ? e->ttl4 : e->ttl6;
	double keep = resolver_keep_seconds(&vg.cfg->dns, ttl);
	char was[256], now_is[256];
	addr_list(e, was, sizeof(was));
	bool had = e->state == DNS_RESOLVED;
	memcpy(e->addrs, fresh, sizeof(fresh[0]) * (size_t)n);
	e->n_addrs = n;
	if (!same)
		e->current = 0; /* a failed address is skipped only within the answer it came from */
	e->state = DNS_RESOLVED;
	e->expires = same && e->recheck ? now : now + keep;
	e->recheck = false;
	addr_list(e, now_is, sizeof(now_is));
	if (e->failing_since > 0) {
		log_info("dns: %s resolves again, to %s, after %.1f s", e->name, now_is, now - e->failing_since);
		e->failing_since = 0;
	} else if (!same) {
		/* a name that moves is how a managed database fails over: always worth a line */
		log_info("dns: %s resolves to %s%s%s (TTL %d s, kept %g s)", e->name, now_is, had ? ", was " : "",
		         had ? was : "", ttl, keep);
	} else {
		log_debug("dns: %s still resolves to %s (TTL %d s, kept %g s)", e->name, now_is, ttl, keep);
	}
}

static void take_failure(struct dns_entry *e, enum dns_outcome o, double now)
{
	double keep = vg.cfg->dns.nxdomain_ttl;
	int err = e->err4 != DNS_ERR_NONE && e->err4 != DNS_ERR_NODATA ? e->err4 : e->err6;
	const char *why = o == DNS_NO_NAME ? (e->err4 == DNS_ERR_NOTEXIST || e->err6 == DNS_ERR_NOTEXIST
	                                          ? "no such host"
	                                          : "the host has no address")
	                                   : evdns_err_to_string(err);
	if (o == DNS_LOOKUP_FAILED && e->state == DNS_RESOLVED) {
		/* no answer is not a new answer: the last addresses are the best guess */
		char list[256];
		if (e->failing_since == 0) {
			log_warn("dns: lookup of %s failed (%s): still using %s, next lookup in %g s", e->name, why,
			         addr_list(e, list, sizeof(list)), keep);
			e->failing_since = now;
		}
		e->expires = now + keep;
		return;
	}
	/* logged when the name stops resolving, not for every lookup that
	 * confirms it (nor for the connections that wait for them) */
	if (e->state != DNS_FAILED)
		log_warn("dns: cannot resolve %s: %s; connections to it fail until it does (next lookup in %g s)", e->name,
		         why, keep);
	else
		log_debug("dns: %s still does not resolve: %s", e->name, why);
	if (e->failing_since == 0)
		e->failing_since = now;
	snprintf(e->error, sizeof(e->error), "%s", why);
	e->state = DNS_FAILED;
	e->n_addrs = e->current = 0;
	e->expires = now + keep;
}

/* Tell every waiter.  They move to a list of their own first: a callback
 * may ask for the name again (a connect that failed at once), which must
 * wait for a lookup of its own, not take this answer. */
static void deliver(struct dns_entry *e)
{
	struct resolver_waiters ready = TAILQ_HEAD_INITIALIZER(ready);
	struct resolver_wait *w;
	while ((w = TAILQ_FIRST(&e->waiters))) {
		TAILQ_REMOVE(&e->waiters, w, link);
		TAILQ_INSERT_TAIL(&ready, w, link);
		w->list = &ready;
	}
	while ((w = TAILQ_FIRST(&ready))) {
		TAILQ_REMOVE(&ready, w, link);
		w->list = NULL;
		if (e->state == DNS_RESOLVED) {
			struct sockaddr_storage sa;
			socklen_t len;
			entry_address(e, w->port, &sa, &len);
			w->cb(w->arg, (struct sockaddr *)&sa, len, NULL);
		} else {
			char err[RESOLVER_ERR_LEN];
			snprintf(err, sizeof(err), "cannot resolve host %s: %s", e->name, e->error);
			w->cb(w->arg, NULL, 0, err);
		}
	}
}

static void query_done(struct dns_entry *e)
{
	double now = now_sec();
	e->query = QUERY_IDLE;
	enum dns_outcome o = resolver_outcome(e->err4, e->n4, e->err6, e->n6);
	if (o == DNS_ANSWERED)
		take_answer(e, now);
	else
		take_failure(e, o, now);
	deliver(e);
}

/* ---- the interface ---- */

static void wait_add(struct dns_entry *e, struct resolver_wait *w, int port, resolver_cb cb, void *arg)
{
	assert(!w->list);
	w->port = port;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&e->waiters, w, link);
	w->list = &e->waiters;
}

enum resolve_status resolver_lookup(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen,
                                    struct resolver_wait *w, resolver_cb cb, void *arg, char *err, size_t errlen)
{
	if (host[0] == '/')
		return unix_path(host, port, out, outlen, err, errlen) < 0 ? RESOLVE_FAILED : RESOLVE_OK;
	if (numeric(host, out, outlen)) {
		set_port(out, port);
		return RESOLVE_OK;
	}
	if (!rs.started) {
		snprintf(err, errlen, "cannot resolve host %s: the resolver is not running", host);
		return RESOLVE_FAILED;
	}
	struct dns_entry *e = entry_find(host);
	if (!e && !(e = entry_new(host))) {
		snprintf(err, errlen, "cannot resolve host %s: out of memory", host);
		return RESOLVE_FAILED;
	}
	double now = now_sec();
	if (entry_fresh(e, now)) {
		if (e->state == DNS_RESOLVED) {
			entry_address(e, port, out, outlen);
			return RESOLVE_OK;
		}
		snprintf(err, errlen, "cannot resolve host %s: %s", host, e->error);
		return RESOLVE_FAILED;
	}
	if (e->query == QUERY_IDLE && !query_start(e)) {
		snprintf(err, errlen, "cannot resolve host %s: %s", host,
		         rs.dns ? "the lookup could not be started" : "no DNS resolver could be set up (see the log)");
		return RESOLVE_FAILED;
	}
	wait_add(e, w, port, cb, arg);
	return RESOLVE_PENDING;
}

void resolver_cancel(struct resolver_wait *w)
{
	if (!w->list)
		return;
	TAILQ_REMOVE(w->list, w, link);
	w->list = NULL;
}

bool resolver_waiting(const struct resolver_wait *w)
{
	return w->list != NULL;
}

int resolver_connect_failed(const char *host, const struct sockaddr *sa)
{
	struct dns_entry *e = rs.started ? entry_find(host) : NULL;
	if (!e || e->state != DNS_RESOLVED)
		return 0;
	int i = 0;
	while (i < e->n_addrs && !same_addr(sa, (const struct sockaddr *)&e->addrs[i]))
		i++;
	if (i == e->n_addrs)
		return 0; /* an address of an earlier answer: this one may well work */
	if (i == e->current)
		e->current = (i + 1) % e->n_addrs;
	if (!e->from_hosts)
		e->expires = 0; /* it may have moved: ask again on the next connect */
	/* a lookup already on its way may have been answered before the name
	 * moved: if it brings this address back, it is not the last word */
	if (e->query == QUERY_RUNNING)
		e->recheck = true;
	char one[INET6_ADDRSTRLEN];
	log_debug("dns: a connect to %s (%s) failed: %s is looked up again", resolver_format(sa, one, sizeof(one)),
	          host, host);
	return e->n_addrs;
}

bool resolver_serves_other(const char *host, const struct sockaddr_storage *tried, int n_tried)
{
	struct dns_entry *e = rs.started ? entry_find(host) : NULL;
	if (!e || e->state != DNS_RESOLVED || e->n_addrs < 2)
		return false;
	for (int i = 0; i < n_tried; i++)
		if (same_addr((const struct sockaddr *)&tried[i], (const struct sockaddr *)&e->addrs[e->current]))
			return false;
	return true;
}

/* ---- set-up ---- */

static void evdns_log(int is_warn, const char *msg)
{
	if (is_warn)
		log_warn("dns: %s", msg);
	else
		log_debug("dns: %s", msg);
}

static void set_options(const struct vg_dns *cfg)
{
	char v[32];
	snprintf(v, sizeof(v), "%g", cfg->timeout);
	if (evdns_base_set_option(rs.dns, "timeout:", v) != 0)
		log_warn("dns: evdns refused timeout %s", v);
	snprintf(v, sizeof(v), "%d", cfg->attempts);
	if (evdns_base_set_option(rs.dns, "attempts:", v) != 0)
		log_warn("dns: evdns refused attempts %s", v);
	/* evdns mixes the case of the names it asks for and drops answers that
	 * do not echo it exactly; some resolvers (home routers, a few caching
	 * forwarders) lower-case the question, and every lookup would time out.
	 * glibc and c-ares do not do it either. */
	evdns_base_set_option(rs.dns, "randomize-case:", "0");
}

int resolver_start(struct event_base *base, const struct vg_dns *cfg, char *err, size_t errlen)
{
	assert(!rs.started);
	rs.base = base;
	TAILQ_INIT(&rs.entries);
	evdns_set_log_fn(evdns_log);
	/* the resolver's socket must not keep a loop alive that has nothing else to do */
	int flags = EVDNS_BASE_DISABLE_WHEN_INACTIVE | (cfg->n_nameservers ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
	rs.dns = evdns_base_new(base, flags);
	if (!rs.dns) {
		/* numeric and /etc/hosts backends still work: not a reason to refuse to start */
		log_warn("dns: cannot set up the resolver from /etc/resolv.conf: host names other than /etc/hosts "
		         "ones will not resolve");
		rs.started = true;
		return 0;
	}
	for (size_t i = 0; i < cfg->n_nameservers; i++) {
		if (evdns_base_nameserver_ip_add(rs.dns, cfg->nameservers[i]) != 0) {
			snprintf(err, errlen, "dns.nameservers: cannot use %s", cfg->nameservers[i]);
			goto failed;
		}
	}
	set_options(cfg);
	if (evdns_base_count_nameservers(rs.dns) == 0)
		log_warn("dns: no nameserver configured: host names other than /etc/hosts ones will not resolve");
	rs.started = true;
	return 0;
failed:
	evdns_base_free(rs.dns, 0);
	rs.dns = NULL;
	return -1;
}

static bool same_nameservers(const struct vg_dns *a, const struct vg_dns *b)
{
	if (a->n_nameservers != b->n_nameservers)
		return false;
	for (size_t i = 0; i < a->n_nameservers; i++)
		if (strcmp(a->nameservers[i], b->nameservers[i]))
			return false;
	return true;
}

void resolver_reload(const struct vg_dns *old, const struct vg_dns *cfg)
{
	if (!rs.started)
		return;
	if (!same_nameservers(old, cfg))
		log_warn("dns.nameservers changed: a restart is needed to apply it");
	if (rs.dns && (old->timeout != cfg->timeout || old->attempts != cfg->attempts))
		set_options(cfg);
	/* forget what is not being looked up: /etc/hosts is read again and
	 * names are asked again under the new bounds */
	struct dns_entry *e, *tmp;
	TAILQ_FOREACH_SAFE(e, &rs.entries, link, tmp)
		if (e->query == QUERY_IDLE)
			entry_free(e);
}

void resolver_stop(void)
{
	if (!rs.started)
		return;
	/* queries in flight are dropped without their callbacks */
	if (rs.dns)
		evdns_base_free(rs.dns, 0);
	rs.dns = NULL;
	struct dns_entry *e;
	while ((e = TAILQ_FIRST(&rs.entries)))
		entry_free(e);
	rs.started = false;
}
