/*
 * vecgatectl: a small CLI over vecgate's admin API, linked against the pure
 * protocol library only.  Readable output by default, the API's JSON with
 * --json; `rebuild start INDEX --watch` draws a live progress line (state,
 * percent, ETA, recall when known) until the new index is swapped in and
 * watched (exit 0), or the job ends without a swap (exit 1); --until-done
 * follows it through retention.
 *
 *   vecgatectl [--url http://127.0.0.1:6480] [--token T] [--json] COMMAND
 *   status | jobs [INDEX] | job ID | rebuild start INDEX [--watch] | rebuild plan INDEX [--fresh] | rebuild status [INDEX]
 *   | cancel ID | rollback ID | approve ID [--override]
 *   | routes | route INDEX MODE | backends
 *
 * The token may also come from VECGATE_TOKEN, the URL from VECGATE_ADMIN_URL.
 */
#include "protocol/json.h"

#include <math.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *opt_url = "http://127.0.0.1:6480";
static const char *opt_token;
static bool opt_json;

struct response {
	int status;
	char *body;
};

static void usage(void)
{
	fprintf(stderr, "usage: vecgatectl [--url URL] [--token TOKEN] [--json] COMMAND\n"
	                "  status                      managed indexes and their latest job\n"
	                "  jobs [INDEX]                jobs, newest first\n"
	                "  job ID                      one job with progress and history\n"
	                "  rebuild status [INDEX]      the jobs with their progress (per partition too)\n"
	                "  rebuild start INDEX [--watch | --until-done]\n"
	                "                              --watch: follow until swapped and watched (exit 0) or\n"
	                "                              the job ends without a swap (exit 1); --until-done: until\n"
	                "                              the old index is dropped after retention\n"
	                "  rebuild plan INDEX [--fresh] what a rebuild would cost (trial builds on samples): build\n"
	                "                              seconds, memory, disk, WAL, eval; --fresh: a new plan\n"
	                "  cancel ID | rollback ID | approve ID [--override]\n"
	                "                              --override: swap a candidate the gate refused (approve_swap)\n"
	                "  routes                      route mode per managed index, where reads went\n"
	                "  route INDEX MODE            set a route mode: primary, replica, fallback, refuse\n"
	                "  backends                    health, replica lag and rotation of every backend\n");
}

/* One HTTP/1.0 request over a plain socket; the admin API is loopback. */
static int http(const char *method, const char *path, struct response *r)
{
	char host[256] = "127.0.0.1", port[16] = "6480";
	const char *u = opt_url;
	if (!strncmp(u, "http://", 7))
		u += 7;
	const char *colon = strchr(u, ':'), *slash = strchr(u, '/');
	size_t hl = colon ? (size_t)(colon - u) : slash ? (size_t)(slash - u) : strlen(u);
	snprintf(host, sizeof(host), "%.*s", (int)hl, u);
	if (colon)
		snprintf(port, sizeof(port), "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "vecgatectl: cannot resolve %s\n", host);
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		fprintf(stderr, "vecgatectl: cannot connect to the admin API at %s (is vecgate running with admin.port?)\n",
		        opt_url);
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(ai);
	char req[2048];
	int n = snprintf(req, sizeof(req),
	                 "%s %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n\r\n", method,
	                 path, host, opt_token ? opt_token : "");
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	size_t cap = 8192, len = 0;
	char *buf = malloc(cap);
	ssize_t k;
	while (buf && (k = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)k;
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				break;
			buf = nb;
		}
	}
	close(fd);
	if (!buf)
		return -1;
	buf[len] = 0;
	r->status = 0;
	sscanf(buf, "HTTP/%*s %d", &r->status);
	char *body = strstr(buf, "\r\n\r\n");
	r->body = strdup(body ? body + 4 : "");
	free(buf);
	return r->status ? 0 : -1;
}

static void fmt_num(char *out, size_t len, double v, const char *fmt)
{
	if (isnan(v))
		snprintf(out, len, "-");
	else
		snprintf(out, len, fmt, v);
}

static void print_job_line(const struct jnode *job)
{
	char pct[16], eta[24], rb[16], rn[16], sw[24];
	fmt_num(pct, sizeof(pct), json_get_num(job, "progress.percent"), "%.0f%%");
	fmt_num(eta, sizeof(eta), json_get_num(job, "progress.eta_seconds"), "ETA %.0fs");
	fmt_num(rb, sizeof(rb), json_get_num(job, "baseline.recall"), "%.4f");
	fmt_num(rn, sizeof(rn), json_get_num(job, "candidate.recall"), "%.4f");
	fmt_num(sw, sizeof(sw), json_get_num(job, "swap_lock_ms"), "%.2f ms");
	char rec[64];
	if (isnan(json_get_num(job, "candidate.recall")))
		snprintf(rec, sizeof(rec), "baseline recall %s", rb); /* the candidate is not measured yet */
	else
		snprintf(rec, sizeof(rec), "recall %s -> %s", rb, rn);
	printf("job %.0f  %-10s %-11s %5s  %s  swap %s\n    %s\n", json_get_num(job, "id"),
	       json_get_str(job, "index") ? json_get_str(job, "index") : "?", json_get_str(job, "state"), pct, rec, sw,
	       json_get_str(job, "message") ? json_get_str(job, "message") : "");
	/* the build's ETA is the job's own (its plan's curve and the live progress) */
	const char *state = json_get_str(job, "state");
	if (state && !strcmp(state, "build")) {
		char pred[32], el[32];
		fmt_num(pred, sizeof(pred), json_get_num(job, "progress.predicted_seconds"), "%.0fs");
		fmt_num(el, sizeof(el), json_get_num(job, "progress.elapsed_seconds"), "%.0fs");
		printf("    build %s  %s elapsed, %s predicted\n", eta, el, pred);
	}
	/* a partitioned table: one line per partition's candidate */
	const struct jnode *ps = json_get(job, "partitions");
	for (const struct jnode *p = ps && ps->type == J_ARR ? ps->child : NULL; p; p = p->next) {
		char ppct[16], rows[24], rec[24], base[24];
		fmt_num(ppct, sizeof(ppct), json_get_num(p, "percent"), "%.0f%%");
		fmt_num(rows, sizeof(rows), json_get_num(p, "rows"), "%.0f rows");
		fmt_num(rec, sizeof(rec), json_get_num(p, "recall"), "%.4f");
		fmt_num(base, sizeof(base), json_get_num(p, "baseline_recall"), "%.4f");
		printf("    partition %-24s %-9s %5s  %s  %s (%.0f tuples loaded)  recall %s (baseline %s)\n",
		       json_get_str(p, "partition") ? json_get_str(p, "partition") : "?",
		       json_get_str(p, "state") ? json_get_str(p, "state") : "?", ppct, rows,
		       json_get_str(p, "candidate") ? json_get_str(p, "candidate") : "", json_get_num(p, "tuples_done"),
		       rec, base);
		if (!isnan(json_get_num(p, "gate.recall"))) {
			/* partitions: rolling: the partition's own gate */
			char gr[24], gb[24], p95[24], bp95[24], sms[24];
			fmt_num(gr, sizeof(gr), json_get_num(p, "gate.recall"), "%.4f");
			fmt_num(gb, sizeof(gb), json_get_num(p, "gate.baseline_recall"), "%.4f");
			fmt_num(p95, sizeof(p95), json_get_num(p, "gate.p95_ms"), "%.2f ms");
			fmt_num(bp95, sizeof(bp95), json_get_num(p, "gate.baseline_p95_ms"), "%.2f ms");
			fmt_num(sms, sizeof(sms), json_get_num(p, "swap_ms"), "%.2f ms");
			printf("      own gate: recall %s (live index %s), p95 %s (live index %s); swapped in %s\n", gr, gb, p95,
			       bp95, sms);
		}
	}
	const struct jnode *ns = json_get(job, "notices");
	for (const struct jnode *n = ns ? ns->child : NULL; n; n = n->next)
		printf("    %s: %s%s%s\n", json_get_str(n, "severity"), json_get_str(n, "message"),
		       json_get_str(n, "advice") ? "\n      advice: " : "",
		       json_get_str(n, "advice") ? json_get_str(n, "advice") : "");
	const char *driver = json_get_str(job, "driver.instance");
	if (driver && json_get_bool(job, "following"))
		printf("    driven by %s since %s (silent %.0f s); this instance follows it and takes it over if its "
		       "driver dies: approve, cancel or roll it back there\n",
		       driver, json_get_str(job, "driver.since") ? json_get_str(job, "driver.since") : "?",
		       json_get_num(job, "driver.silent_seconds"));
	else if (driver)
		printf("    driven by %s since %s\n", driver,
		       json_get_str(job, "driver.since") ? json_get_str(job, "driver.since") : "?");
	const struct jnode *b = json_get(job, "progress.blocked_by");
	if (b && b->type == J_OBJ) {
		char xact[32], waited[32];
		fmt_num(xact, sizeof(xact), json_get_num(b, "transaction_age_seconds"), "%.0f s");
		fmt_num(waited, sizeof(waited), json_get_num(b, "waiting_seconds"), "%.0f s");
		printf("    waiting %s for pid %.0f (user %s, application '%s', client %s, transaction open %s): %s\n"
		       "    to unblock: %s  (or %s)\n",
		       waited, json_get_num(b, "pid"), json_get_str(b, "user"), json_get_str(b, "application_name"),
		       json_get_str(b, "client_addr"), xact, json_get_str(b, "query"), json_get_str(b, "cancel"),
		       json_get_str(b, "terminate"));
	}
}

static void draw_bar(const struct jnode *job)
{
	double pct = json_get_num(job, "progress.percent");
	if (isnan(pct))
		pct = 0;
	int filled = (int)(pct / 100.0 * 30 + 0.5);
	char bar[31];
	for (int i = 0; i < 30; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[30] = 0;
	char eta[32] = "", rec[64] = "";
	/* a terminal gets one line redrawn in place; a pipe or log file gets a
	 * line per change of anything but the ETA (it changes every poll) */
	bool tty = isatty(STDOUT_FILENO);
	double e = json_get_num(job, "progress.eta_seconds");
	if (!isnan(e) && e > 0)
		snprintf(eta, sizeof(eta), " ETA %.0fs", e);
	/* say whose recall it is: during the build only the live index's is known */
	double rb = json_get_num(job, "baseline.recall"), rn = json_get_num(job, "candidate.recall");
	if (!isnan(rb) && !isnan(rn))
		snprintf(rec, sizeof(rec), " recall %.3f -> %.3f", rb, rn);
	else if (!isnan(rb))
		snprintf(rec, sizeof(rec), " baseline recall %.3f", rb);
	char blocked[200] = "";
	double bpid = json_get_num(job, "progress.blocked_by.pid");
	char waited[32] = "";
	if (tty) /* a log gets one line per blocker, not one per second */
		snprintf(waited, sizeof(waited), " %.0fs", json_get_num(job, "progress.blocked_by.waiting_seconds"));
	if (!isnan(bpid))
		snprintf(blocked, sizeof(blocked), " | waits%s for pid %.0f (%s, %s): %s", waited, bpid,
		         json_get_str(job, "progress.blocked_by.user") ? json_get_str(job, "progress.blocked_by.user") : "?",
		         json_get_str(job, "progress.blocked_by.application_name")
		             ? json_get_str(job, "progress.blocked_by.application_name")
		             : "?",
		         json_get_str(job, "progress.blocked_by.cancel") ? json_get_str(job, "progress.blocked_by.cancel") : "");
	const char *phase = json_get_str(job, "progress.phase");
	const char *state = json_get_str(job, "state");
	/* baseline, verify and watch run the eval set: show how far */
	char evals[96] = "";
	double ed = json_get_num(job, "eval.done"), et = json_get_num(job, "eval.total");
	const char *unit = json_get_str(job, "eval.unit");
	if (!isnan(ed) && !isnan(et))
		snprintf(evals, sizeof(evals), "eval %.0f/%.0f%s %s", ed, et, unit && !strcmp(unit, "rows") ? " rows" : "",
		         json_get_str(job, "eval.pass") ? json_get_str(job, "eval.pass") : "");
	char line[700], key[700];
	snprintf(line, sizeof(line), "[%s] %3.0f%% %-9s %s%s%s%s%s", bar, pct, state ? state : "?",
	         state && !strcmp(state, "build") && phase ? phase : "", tty ? evals : "", eta, rec, blocked);
	snprintf(key, sizeof(key), "%3.0f%% %s %s%s%s", pct, state ? state : "?", phase ? phase : "", rec, blocked);
	static char last[700];
	if (tty)
		printf("\r\033[K%s", line);
	else if (strcmp(key, last))
		printf("%s\n", line);
	snprintf(last, sizeof(last), "%s", key);
	fflush(stdout);
}

static int show(const char *method, const char *path, void (*render)(const struct jnode *))
{
	struct response r = {0};
	if (http(method, path, &r) < 0)
		return 1;
	int rc = r.status >= 200 && r.status < 300 ? 0 : 1;
	if (opt_json) {
		printf("%s", r.body);
	} else {
		struct jnode *doc = json_parse(r.body);
		if (!doc)
			fprintf(stderr, "vecgatectl: unreadable answer (HTTP %d): %s\n", r.status, r.body);
		else if (rc)
			fprintf(stderr, "vecgatectl: %s (HTTP %d)\n", json_get_str(doc, "error") ? json_get_str(doc, "error") : "?",
			        r.status);
		else
			render(doc);
		json_node_free(doc);
	}
	free(r.body);
	return rc;
}

static void render_job(const struct jnode *doc)
{
	print_job_line(doc);
	const struct jnode *h = json_get(doc, "history");
	for (const struct jnode *e = h ? h->child : NULL; e; e = e->next)
		printf("    %7.1fs  %-9s -> %-11s %s\n", json_get_num(e, "t"), json_get_str(e, "from"),
		       json_get_str(e, "to"), json_get_str(e, "message"));
}

static void render_jobs(const struct jnode *doc)
{
	const struct jnode *jobs = json_get(doc, "jobs");
	if (!jobs || !jobs->child)
		printf("no jobs\n");
	for (const struct jnode *j = jobs ? jobs->child : NULL; j; j = j->next)
		print_job_line(j);
}

static void render_status(const struct jnode *doc)
{
	const struct jnode *idx = json_get(doc, "indexes");
	if (!idx || !idx->child)
		printf("no managed indexes configured\n");
	for (const struct jnode *i = idx ? idx->child : NULL; i; i = i->next) {
		printf("%s  (%s.%s on %s.%s, k=%.0f)\n", json_get_str(i, "name"), json_get_str(i, "schema"),
		       json_get_str(i, "index"), json_get_str(i, "schema"), json_get_str(i, "table"), json_get_num(i, "k"));
		const struct jnode *job = json_get(i, "latest_job");
		if (job && job->type == J_OBJ)
			print_job_line(job);
		else
			printf("    no rebuild yet\n");
		if (json_get_bool(i, "drift.enabled")) {
			printf("    drift: recall %.4f, baseline %.4f%s\n", json_get_num(i, "drift.recall"),
			       json_get_num(i, "drift.baseline"), json_get_bool(i, "drift.alert") ? "  ALERT" : "");
			if (json_get_str(i, "drift.proposed_rebuild"))
				printf("    proposed: %s\n", json_get_str(i, "drift.proposed_rebuild"));
		}
	}
}

static void render_routes(const struct jnode *doc)
{
	const struct jnode *rs = json_get(doc, "routes");
	if (!rs || !rs->child)
		printf("no managed indexes configured\n");
	else
		printf("%-20s %-9s %-9s %-18s %9s %9s %9s %8s %8s\n", "INDEX", "MODE", "EFFECTIVE", "STEP", "PRIMARY",
		       "REPLICA", "FALLBACK", "REFUSED", "REPLAYED");
	for (const struct jnode *r = rs ? rs->child : NULL; r; r = r->next) {
		char step[64] = "-";
		if (json_get_str(r, "step"))
			snprintf(step, sizeof(step), "%s:%s", json_get_str(r, "step"), json_get_str(r, "step_mode"));
		printf("%-20s %-9s %-9s %-18s %9.0f %9.0f %9.0f %8.0f %8.0f%s\n", json_get_str(r, "name"),
		       json_get_str(r, "mode"), json_get_str(r, "effective"), step, json_get_num(r, "queries.primary"),
		       json_get_num(r, "queries.replica"), json_get_num(r, "queries.fallback"),
		       json_get_num(r, "queries.refused"), json_get_num(r, "queries.replayed"),
		       json_get_bool(r, "synced") ? "" : "  (not yet in vecgate.routes)");
	}
}

static void render_route(const struct jnode *doc)
{
	printf("%s: mode %s, in force: %s\n", json_get_str(doc, "name"), json_get_str(doc, "mode"),
	       json_get_str(doc, "effective"));
}

static void render_backends(const struct jnode *doc)
{
	const struct jnode *bs = json_get(doc, "backends");
	printf("%-12s %-8s %-22s %-8s %8s %12s %9s %9s\n", "BACKEND", "ROLE", "ADDRESS", "STATUS", "ROTATION",
	       "LAG_BYTES", "LAG_S", "READS");
	for (const struct jnode *b = bs ? bs->child : NULL; b; b = b->next) {
		char addr[300];
		snprintf(addr, sizeof(addr), "%s:%.0f", json_get_str(b, "host"), json_get_num(b, "port"));
		printf("%-12s %-8s %-22s %-8s %8s %12.0f %9.2f %9.0f\n", json_get_str(b, "name"), json_get_str(b, "role"),
		       addr, json_get_str(b, "status"), json_get_bool(b, "in_rotation") ? "yes" : "no", json_get_num(b, "lag_bytes"),
		       json_get_num(b, "lag_seconds"), json_get_num(b, "routed_reads"));
		if (json_get_str(b, "last_error"))
			printf("    last error: %s\n", json_get_str(b, "last_error"));
	}
}

static void bytes_str(double b, char *out, size_t len)
{
	if (isnan(b))
		snprintf(out, len, "?");
	else if (b >= 1073741824.0)
		snprintf(out, len, "%.2f GB", b / 1073741824.0);
	else
		snprintf(out, len, "%.1f MB", b / 1048576.0);
}

static void render_plan(const struct jnode *doc)
{
	const struct jnode *p = json_get(doc, "plan");
	if (!p || p->type != J_OBJ) {
		printf("plan %.0f of %s: %s%s%s\n", json_get_num(doc, "id"), json_get_str(doc, "index"),
		       json_get_str(doc, "state"), json_get_str(doc, "error") ? ": " : "",
		       json_get_str(doc, "error") ? json_get_str(doc, "error") : "");
		return;
	}
	char a[32], b[32], c[32];
	printf("build plan for %s (%s on %.0f rows): predicted build %.0f s (%.0f to %.0f), %.0f parallel worker(s)\n",
	       json_get_str(doc, "index"), json_get_str(p, "method"), json_get_num(p, "table_rows"),
	       json_get_num(p, "build.predicted_seconds"), json_get_num(p, "build.predicted_low_seconds"),
	       json_get_num(p, "build.predicted_high_seconds"), json_get_num(p, "build.parallel_workers"));
	printf("  %s\n", json_get_str(p, "definition"));
	if (json_get_str(p, "fit.model"))
		printf("  fit: %s with a %.4g, b %.3f, r2 %.4f over %.0f trials\n", json_get_str(p, "fit.model"),
		       json_get_num(p, "fit.a"), json_get_num(p, "fit.b"), json_get_num(p, "fit.r2"),
		       json_get_num(p, "fit.points"));
	const struct jnode *ts = json_get(p, "trials");
	for (const struct jnode *t = ts ? ts->child : NULL; t; t = t->next)
		printf("  trial: %8.0f rows %8.2f s  maintenance_work_mem %6.0f kB%s\n", json_get_num(t, "rows"),
		       json_get_num(t, "seconds"), json_get_num(t, "maintenance_work_mem_kb"),
		       json_get_num(t, "graph_overflow_after_tuples") > 0 ? "  graph overflowed" : "");
	bytes_str(json_get_num(p, "memory.peak_bytes"), a, sizeof(a));
	bytes_str(json_get_num(p, "memory.maintenance_work_mem_bytes"), b, sizeof(b));
	bytes_str(json_get_num(p, "memory.maintenance_work_mem_to_fit_bytes"), c, sizeof(c));
	if (json_get_bool(p, "memory.fits"))
		printf("  memory: peak %s%s, maintenance_work_mem %s: fits\n",
		       json_get_bool(p, "memory.peak_is_upper_bound") ? "under " : "", a, b);
	else
		printf("  memory: peak %s, maintenance_work_mem %s: DOES NOT FIT (overflows after %.0f tuples); "
		       "maintenance_work_mem %s would fit\n", a, b, json_get_num(p, "memory.overflow_after_tuples"), c);
	bytes_str(json_get_num(p, "disk.index_bytes"), a, sizeof(a));
	bytes_str(json_get_num(p, "disk.needed_bytes"), b, sizeof(b));
	bytes_str(json_get_num(p, "disk.free_bytes"), c, sizeof(c));
	printf("  disk: index %s, needs %s free (free: %s)\n", a, b, c);
	bytes_str(json_get_num(p, "wal.bytes"), a, sizeof(a));
	printf("  WAL: %s\n", a);
	const struct jnode *rs = json_get(p, "wal.replicas");
	for (const struct jnode *r = rs ? rs->child : NULL; r; r = r->next) {
		if (isnan(json_get_num(r, "replay_bytes_per_second")))
			printf("    replica %s: replay rate not measurable (no WAL to replay during the plan)\n",
			       json_get_str(r, "name"));
		else
			printf("    replica %s: replays %.1f MB/s, so about %.0f s behind at the build's end\n",
			       json_get_str(r, "name"), json_get_num(r, "replay_bytes_per_second") / 1048576,
			       json_get_num(r, "lag_seconds"));
	}
	printf("  eval: about %.0f s for %.0f queries (baseline, verify, watch)\n", json_get_num(p, "eval.seconds"),
	       json_get_num(p, "eval.queries"));
	printf("  plan cost: %.1f s (%.3f of the predicted build)\n", json_get_num(p, "cost.seconds"),
	       json_get_num(p, "cost.ratio_to_build"));
	if (json_get_str(p, "notes"))
		printf("  notes: %s\n", json_get_str(p, "notes"));
}

/* Start (or join) a build plan and follow it to its end; progress on stderr. */
static int run_plan(const char *index, bool fresh)
{
	char path[400];
	snprintf(path, sizeof(path), "/v1/indexes/%s/plan", index);
	struct response r = {0};
	if (http(fresh ? "POST" : "GET", path, &r) < 0)
		return 1;
	if (r.status == 409) {
		free(r.body); /* one is running: follow it */
	} else if (r.status >= 300) {
		struct jnode *doc = json_parse(r.body);
		fprintf(stderr, "vecgatectl: %s (HTTP %d)\n", doc && json_get_str(doc, "error") ? json_get_str(doc, "error")
		                                                                                : r.body, r.status);
		json_node_free(doc);
		free(r.body);
		return 1;
	} else {
		free(r.body);
	}
	bool tty = isatty(STDERR_FILENO);
	char last[256] = "";
	for (;;) {
		struct response g = {0};
		if (http("GET", path, &g) < 0)
			return 1;
		struct jnode *doc = json_parse(g.body);
		if (!doc || g.status != 200) {
			fprintf(stderr, "vecgatectl: unreadable answer (HTTP %d): %s\n", g.status, g.body);
			json_node_free(doc);
			free(g.body);
			return 1;
		}
		if (!json_get_bool(doc, "running")) {
			if (tty)
				fprintf(stderr, "\r\033[K");
			int rc = json_get_str(doc, "error") ? 1 : 0;
			if (opt_json)
				printf("%s", g.body);
			else
				render_plan(doc);
			json_node_free(doc);
			free(g.body);
			return rc;
		}
		char line[256];
		snprintf(line, sizeof(line), "plan: %3.0f%% %s", json_get_num(doc, "percent"),
		         json_get_str(doc, "step") ? json_get_str(doc, "step") : "");
		if (tty)
			fprintf(stderr, "\r\033[K%s", line);
		else if (strcmp(line, last))
			fprintf(stderr, "%s\n", line);
		snprintf(last, sizeof(last), "%s", line);
		json_node_free(doc);
		free(g.body);
		usleep(500000);
	}
}

/* Follow a job.  Without until_done the operator's work ends once the new
 * index is swapped in and watched (state retain): exit 0 then, saying how
 * long a rollback stays possible.  Exit 1 when the job ends without a swap
 * that stayed (failed, cancelled, rolled back) or the API cannot be read;
 * exit 3 when the job waits for the operator (approve_swap; the gate passed,
 * or refused and the candidate is held). */
static int watch(int id, bool until_done)
{
	char path[64];
	snprintf(path, sizeof(path), "/v1/jobs/%d", id);
	for (;;) {
		struct response r = {0};
		if (http("GET", path, &r) < 0)
			return 1;
		struct jnode *doc = json_parse(r.body);
		if (!doc) {
			free(r.body);
			return 1;
		}
		const char *state = json_get_str(doc, "state");
		bool terminal = json_get_bool(doc, "terminal");
		bool swapped_and_watched = state && (!strcmp(state, "retain") || !strcmp(state, "done"));
		bool held = json_get_bool(doc, "awaiting_approval"); /* the operator's turn: say so, do not wait */
		bool finished = terminal || (!until_done && swapped_and_watched) || held;
		if (!opt_json)
			draw_bar(doc);
		if (finished) {
			int rc = swapped_and_watched ? 0 : held ? 3 : 1;
			if (opt_json) {
				printf("%s", r.body); /* the final state only: one JSON document */
			} else {
				printf("\n");
				render_job(doc);
				double left = json_get_num(doc, "rollback_window_seconds");
				if (!strcmp(state, "retain") && !isnan(left))
					printf("swapped and watched: the old index stays for an instant rollback for %.0f s more "
					       "(vecgatectl rollback %d)\n",
					       left, id);
			}
			json_node_free(doc);
			free(r.body);
			return rc;
		}
		json_node_free(doc);
		free(r.body);
		struct timespec ts = {0, 250 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int main(int argc, char **argv)
{
	if (getenv("VECGATE_ADMIN_URL"))
		opt_url = getenv("VECGATE_ADMIN_URL");
	opt_token = getenv("VECGATE_TOKEN");
	bool want_watch = false, until_done = false, want_override = false, want_fresh = false;
	const char *args[8];
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--url") && i + 1 < argc)
			opt_url = argv[++i];
		else if (!strcmp(argv[i], "--token") && i + 1 < argc)
			opt_token = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			opt_json = true;
		else if (!strcmp(argv[i], "--watch"))
			want_watch = true;
		else if (!strcmp(argv[i], "--until-done"))
			want_watch = until_done = true;
		else if (!strcmp(argv[i], "--fresh"))
			want_fresh = true;
		else if (!strcmp(argv[i], "--override"))
			want_override = true;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage();
			return 0;
		} else if (nargs < 8)
			args[nargs++] = argv[i];
	}
	if (nargs == 0) {
		usage();
		return 2;
	}
	char path[512];
	if (!strcmp(args[0], "status"))
		return show("GET", "/v1/indexes", render_status);
	if (!strcmp(args[0], "jobs")) {
		snprintf(path, sizeof(path), "/v1/jobs%s%s", nargs > 1 ? "?index=" : "", nargs > 1 ? args[1] : "");
		return show("GET", path, render_jobs);
	}
	if (!strcmp(args[0], "job") && nargs == 2) {
		snprintf(path, sizeof(path), "/v1/jobs/%d", atoi(args[1]));
		return show("GET", path, render_job);
	}
	if ((!strcmp(args[0], "cancel") || !strcmp(args[0], "rollback") || !strcmp(args[0], "approve")) && nargs == 2) {
		snprintf(path, sizeof(path), "/v1/jobs/%d/%s%s", atoi(args[1]), args[0],
		         want_override && !strcmp(args[0], "approve") ? "?override=true" : "");
		return show("POST", path, render_job);
	}
	if (!strcmp(args[0], "routes"))
		return show("GET", "/v1/routes", render_routes);
	if (!strcmp(args[0], "backends"))
		return show("GET", "/v1/backends", render_backends);
	if (!strcmp(args[0], "route") && nargs == 3) {
		snprintf(path, sizeof(path), "/v1/routes/%s?mode=%s", args[1], args[2]);
		return show("POST", path, render_route);
	}
	/* the jobs with their progress (a partitioned table's per partition) */
	if (!strcmp(args[0], "rebuild") && (nargs == 2 || nargs == 3) && !strcmp(args[1], "status")) {
		snprintf(path, sizeof(path), "/v1/jobs%s%s", nargs > 2 ? "?index=" : "", nargs > 2 ? args[2] : "");
		return show("GET", path, render_jobs);
	}
	if (!strcmp(args[0], "rebuild") && nargs == 3 && !strcmp(args[1], "plan"))
		return run_plan(args[2], want_fresh);
	if (!strcmp(args[0], "rebuild") && nargs == 3 && !strcmp(args[1], "start")) {
		snprintf(path, sizeof(path), "/v1/indexes/%s/rebuild", args[2]);
		struct response r = {0};
		if (http("POST", path, &r) < 0)
			return 1;
		struct jnode *doc = json_parse(r.body);
		int id = doc ? (int)json_get_num(doc, "id") : -1;
		if (r.status != 202 || id <= 0) {
			if (opt_json)
				printf("%s", r.body);
			else
				fprintf(stderr, "vecgatectl: %s (HTTP %d)\n",
				        doc && json_get_str(doc, "error") ? json_get_str(doc, "error") : r.body, r.status);
			json_node_free(doc);
			free(r.body);
			return 1;
		}
		json_node_free(doc);
		if (!want_watch) {
			if (opt_json)
				printf("%s", r.body);
			else
				printf("started rebuild job %d for %s (vecgatectl job %d to follow it)\n", id, args[2], id);
			free(r.body);
			return 0;
		}
		free(r.body);
		return watch(id, until_done);
	}
	usage();
	return 2;
}
