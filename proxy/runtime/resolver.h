/*
 * Backend addresses without blocking the loop (resolver.c).
 *
 * Every connection vecgate opens to a backend -- pooled server connections
 * and the libpq side connections alike -- gets its address from here.  A
 * backend host is a unix socket directory (leading '/'), a numeric address,
 * a name in /etc/hosts, or a name asked of DNS through libevent's evdns,
 * whose answers are cached.
 *
 * Contract:
 *  - resolver_lookup() never blocks.  It answers at once (RESOLVE_OK, the
 *    address in *out) for a socket directory, a numeric address, an
 *    /etc/hosts name and a name whose cached answer is still fresh; at once
 *    with RESOLVE_FAILED (the reason in err) for a name cached as not
 *    resolving; otherwise it starts a lookup, or joins the one running for
 *    that name (one query per name, however many wait), and answers
 *    RESOLVE_PENDING.  Then the waiter's callback runs exactly once, from the
 *    loop and never from inside resolver_lookup, unless resolver_cancel()
 *    comes first.
 *  - A cached answer is kept for its record's TTL bounded by dns.min_ttl and
 *    dns.max_ttl (max_ttl wins; 0 = not kept, only shared by concurrent
 *    waiters), and looked up again when it expires.  A name that does not
 *    exist, or a lookup that fails, is kept as failed for dns.nxdomain_ttl --
 *    except that a lookup failing for want of an answer (timeout, server
 *    failure) after the name did resolve keeps serving its last addresses.
 *  - A name with several addresses is served its first one until a connect
 *    to it fails (resolver_connect_failed): then the next one, and the name is
 *    looked up again on the next resolver_lookup, whatever its TTL said.
 *  - Failures are logged once per name until it resolves again (which is
 *    logged too), as is every change of the addresses a name resolves to.
 *  - Addresses come with the caller's port (a unix socket path gets
 *    .s.PGSQL.<port>).
 */
#ifndef VG_PROXY_RUNTIME_RESOLVER_H
#define VG_PROXY_RUNTIME_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "conf/config.h"

/* error text: "cannot resolve host NAME: REASON" fits in this */
#define RESOLVER_ERR_LEN 300

enum resolve_status {
	RESOLVE_OK,      /* *out holds the address */
	RESOLVE_PENDING, /* the waiter's callback follows, from the loop */
	RESOLVE_FAILED,  /* err says why */
};

/* sa is NULL when the name did not resolve; error then says why. */
typedef void (*resolver_cb)(void *arg, const struct sockaddr *sa, socklen_t len, const char *error);

struct dns_entry;
/* A waiter, kept inside the object that waits (a server connection, a libpq
 * session): waiting takes no allocation and cancelling cannot fail. */
struct resolver_wait {
	TAILQ_ENTRY(resolver_wait) link;
	struct resolver_waiters *list; /* the list it is on; NULL while not waiting */
	int port;
	resolver_cb cb;
	void *arg;
};
TAILQ_HEAD(resolver_waiters, resolver_wait);

/* Start with vg.base and vg.cfg->dns; -1 (err set) when evdns cannot be set up. */
int resolver_start(struct event_base *base, const struct vg_dns *cfg, char *err, size_t errlen);
/* After a reload: TTL bounds, timeout and attempts apply at once, /etc/hosts
 * is read again and cached names are looked up again on their next use;
 * changed nameservers need a restart (logged). */
void resolver_reload(const struct vg_dns *old, const struct vg_dns *cfg);
void resolver_stop(void);

enum resolve_status resolver_lookup(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen,
                                    struct resolver_wait *w, resolver_cb cb, void *arg, char *err, size_t errlen);
void resolver_cancel(struct resolver_wait *w); /* no callback after this; harmless when not waiting */
bool resolver_waiting(const struct resolver_wait *w);
/* A connect to sa, an address `host` resolved to, failed: serve the next
 * address, and look the name up again when it is next asked for (also when
 * a lookup under way answers with the same addresses: it may predate the
 * move).  Returns how many addresses the name's answer has (0: sa is not
 * among them, or host is not a cached name). */
int resolver_connect_failed(const char *host, const struct sockaddr *sa);
/* Does `host` now serve an address of its answer that is none of these
 * (already tried)?  False for a name with one address. */
bool resolver_serves_other(const char *host, const struct sockaddr_storage *tried, int n_tried);
/* A host that needs a lookup (not a socket directory, not numeric). */
bool resolver_is_name(const char *host);
/* "1.2.3.4" or "::1" (no port) into buf, for libpq's hostaddr and logs. */
const char *resolver_format(const struct sockaddr *sa, char *buf, size_t len);

/* ---- the cache's policy, pure (unit-tested) ---- */

/* The seconds an answer with this record TTL is kept. */
double resolver_keep_seconds(const struct vg_dns *cfg, int record_ttl);

/* What the A and AAAA queries (evdns DNS_ERR_* codes and address counts)
 * say together. */
enum dns_outcome {
	DNS_ANSWERED,      /* at least one address */
	DNS_NO_NAME,       /* NXDOMAIN, or the name has no address of either family */
	DNS_LOOKUP_FAILED, /* no answer to go by (timeout, server failure, refused) */
};
enum dns_outcome resolver_outcome(int err4, int n4, int err6, int n6);

/* One /etc/hosts line: is `name` among its names (case-insensitively)?  The
 * line's address goes to *out (port 0). */
bool resolver_hosts_line(const char *line, const char *name, struct sockaddr_storage *out, socklen_t *outlen);

#endif
