/*
 * vecgate entry point: command line, configuration, signals and the event
 * loop.  SIGHUP reloads, SIGTERM drains (stop accepting, let transactions
 * finish, then exit), SIGINT stops at once.
 */
#include "proxy/admin/admin.h"
#include "proxy/client.h"
#include "proxy/control/drift.h"
#include "proxy/control/health.h"
#include "proxy/control/plan.h"
#include "proxy/control/rebuild/rebuild.h"
#include "proxy/control/route_sync.h"
#include "proxy/control/sample_sync.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/reaper.h"
#include "proxy/runtime/resolver.h"
#include "proxy/server.h"
#include "proxy/tls.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>

static void usage(FILE *fp)
{
	fprintf(fp, "usage: vecgate [-c] CONFIG.yaml\n"
	            "       vecgate --check-config CONFIG.yaml\n"
	            "       vecgate --version\n");
}

static void finish_shutdown(void)
{
	static bool finished;
	if (finished)
		return;
	finished = true;
	struct client_conn *c, *tmp;
	TAILQ_FOREACH_SAFE(c, &vg.clients, link, tmp)
		client_fatal(c, "57P01", "terminating connection due to administrator command", NULL);
	pools_free();
	reaper_run();
	/* give the goodbye messages a moment to leave */
	struct timeval grace = {0, 200000};
	event_base_loopexit(vg.base, &grace);
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = now_sec();
	bool busy = pool_janitor(now);
	janitor_pace(busy || vg.shutting_down);
	if (vg.shutting_down) {
		/* drain: a client with nothing in flight is told goodbye */
		struct client_conn *c, *tmp;
		TAILQ_FOREACH_SAFE(c, &vg.clients, link, tmp) {
			bool busy = c->server && !server_is_clean(c->server);
			if (!busy && c->fwd_remaining == 0 && c->state != CL_WAITING)
				client_fatal(c, "57P01", "terminating connection: vecgate is shutting down", NULL);
		}
		if (TAILQ_EMPTY(&vg.clients) || now >= vg.shutdown_deadline) {
			if (!TAILQ_EMPTY(&vg.clients))
				log_warn("shutdown timeout reached with %d clients left", vg.n_clients);
			finish_shutdown();
		}
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* A restarted vecgate must know the pins of swap_mode hint before it
 * forwards a read (else the planner would choose): the first read of
 * vecgate.routes, within at most 5 s (the database may be down; clients
 * could not be served then either). */
static void wait_for_routes(void)
{
	double deadline = now_sec() + 5;
	struct event *tick = evtimer_new(vg.base, wake_cb, NULL);
	while (!route_sync_settled() && now_sec() < deadline && !event_base_got_break(vg.base) &&
	       !event_base_got_exit(vg.base)) {
		struct timeval tv = {0, 50000};
		evtimer_add(tick, &tv);
		event_base_loop(vg.base, EVLOOP_ONCE);
	}
	event_free(tick);
	if (!route_sync_settled())
		log_warn("routes: vecgate.routes not read within 5 s: serving clients without its pins and modes until it "
		         "is (reads of a pinned table follow the planner meanwhile)");
}

static int reload(void)
{
	char err[1024];
	struct vg_config *ncfg = config_load(vg.cfg->path, err, sizeof(err));
	if (!ncfg) {
		log_error("reload failed, keeping the old configuration: %s", err);
		return -1;
	}
	SSL_CTX *ctls = NULL, *stls = NULL;
	if (ncfg->client_tls.mode != VG_CTLS_DISABLE &&
	    !(ctls = tls_client_ctx_new(&ncfg->client_tls, err, sizeof(err)))) {
		log_error("reload failed (client TLS): %s", err);
		config_free(ncfg);
		return -1;
	}
	if (ncfg->server_tls.mode != VG_STLS_DISABLE &&
	    !(stls = tls_server_ctx_new(&ncfg->server_tls, err, sizeof(err)))) {
		log_error("reload failed (server TLS): %s", err);
		SSL_CTX_free(ctls);
		config_free(ncfg);
		return -1;
	}
	bool listen_changed = ncfg->n_listen != vg.cfg->n_listen;
	for (size_t i = 0; !listen_changed && i < ncfg->n_listen; i++) {
		const struct vg_listen *a = &ncfg->listen[i], *b = &vg.cfg->listen[i];
		listen_changed = a->port != b->port || !a->host != !b->host ||
		                 (a->host && strcmp(a->host, b->host)) ||
		                 !a->unix_socket_dir != !b->unix_socket_dir ||
		                 (a->unix_socket_dir && strcmp(a->unix_socket_dir, b->unix_socket_dir));
	}
	if (listen_changed)
		log_warn("listen addresses changed: a restart is needed to apply them");
	SSL_CTX_free(vg.client_tls);
	SSL_CTX_free(vg.server_tls);
	vg.client_tls = ctls;
	vg.server_tls = stls;
	struct vg_config *old = vg.cfg;
	vg.cfg = ncfg;
	log_init(&ncfg->logging);
	resolver_reload(&old->dns, &ncfg->dns);
	pools_apply_config();
	health_reload();
	route_sync_reload();
	sample_sync_start();
	config_free(old);
	log_info("configuration reloaded from %s", ncfg->path);
	return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		log_info("SIGHUP: reloading configuration");
		reload();
	} else if (sig == SIGTERM) {
		if (vg.shutting_down)
			return;
		log_info("SIGTERM: draining (stop accepting, finish transactions, at most %.0fs)",
		         vg.cfg->timeouts.shutdown);
		vg.shutting_down = true;
		vg.shutdown_deadline = now_sec() + (vg.cfg->timeouts.shutdown > 0 ? vg.cfg->timeouts.shutdown : 1e9);
		listeners_stop();
		janitor_cb(-1, 0, NULL);
	} else if (sig == SIGINT) {
		log_info("SIGINT: stopping now");
		vg.shutting_down = true;
		listeners_stop();
		finish_shutdown();
	}
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool check_only = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--check-config")) {
			check_only = true;
		} else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (i + 1 < argc)
				path = argv[++i];
		} else if (!strcmp(argv[i], "--version")) {
			printf("vecgate 0.1.0\n");
			return 0;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] != '-' && !path) {
			path = argv[i];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	char err[1024];
	struct vg_config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration is valid\n", path);
		config_free(cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	vg.cfg = cfg;
	TAILQ_INIT(&vg.clients);
	TAILQ_INIT(&vg.dead_clients);
	TAILQ_INIT(&vg.closing_clients);
	TAILQ_INIT(&vg.dead_servers);
	log_init(&cfg->logging);
	if (cfg->client_tls.mode != VG_CTLS_DISABLE &&
	    !(vg.client_tls = tls_client_ctx_new(&cfg->client_tls, err, sizeof(err)))) {
		fprintf(stderr, "%s: client TLS: %s\n", path, err);
		return 1;
	}
	if (cfg->server_tls.mode != VG_STLS_DISABLE &&
	    !(vg.server_tls = tls_server_ctx_new(&cfg->server_tls, err, sizeof(err)))) {
		fprintf(stderr, "%s: server TLS: %s\n", path, err);
		return 1;
	}
	vg.base = event_base_new();
	if (!vg.base) {
		fprintf(stderr, "cannot create event base\n");
		return 1;
	}
	if (resolver_start(vg.base, &cfg->dns, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		return 1;
	}
	reaper_init(client_free, server_free);
	vg.janitor = event_new(vg.base, -1, EV_PERSIST, janitor_cb, NULL);
	janitor_start();
	vg.sig_hup = evsignal_new(vg.base, SIGHUP, signal_cb, NULL);
	vg.sig_term = evsignal_new(vg.base, SIGTERM, signal_cb, NULL);
	vg.sig_int = evsignal_new(vg.base, SIGINT, signal_cb, NULL);
	event_add(vg.sig_hup, NULL);
	event_add(vg.sig_term, NULL);
	event_add(vg.sig_int, NULL);
	health_start();
	route_sync_start();
	wait_for_routes();
	if (listeners_start() < 0 || admin_start() < 0) {
		listeners_stop();
		return 1;
	}
	log_info("vecgate started (config %s)", path);
	sample_sync_start();
	rebuild_resume_all();
	drift_start();
	event_base_dispatch(vg.base);
	listeners_stop();
	admin_stop();
	drift_stop();
	rebuild_shutdown();
	plan_shutdown();
	sample_sync_stop();
	route_sync_stop();
	health_stop();
	struct client_conn *c;
	while ((c = TAILQ_FIRST(&vg.closing_clients))) {
		TAILQ_REMOVE(&vg.closing_clients, c, link);
		c->flushing = false;
		client_free(c);
	}
	reaper_free();
	resolver_stop(); /* after every connection that could wait for it */
	event_free(vg.janitor);
	io_flush_shutdown();
	event_free(vg.sig_hup);
	event_free(vg.sig_term);
	event_free(vg.sig_int);
	event_base_free(vg.base);
	SSL_CTX_free(vg.client_tls);
	SSL_CTX_free(vg.server_tls);
	log_info("vecgate stopped");
	config_free(vg.cfg);
	return vg.exit_code;
}
