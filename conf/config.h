/*
 * vecgate configuration: the YAML file loaded into one immutable struct.
 *
 * Contract: config_load() parses and validates a whole file and either returns
 * a fully populated vg_config (every default filled in) or NULL with a message
 * of the form "file:line:column: message" in errbuf.  A config is never
 * mutated after loading; SIGHUP loads a new one and the proxy swaps pointers,
 * copying only the settings that may change at run time (see README).
 * config_free() releases everything, including nested arrays and strings.
 */
#ifndef VG_CONF_CONFIG_H
#define VG_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vg_pool_mode { VG_POOL_SESSION = 0, VG_POOL_TRANSACTION = 1 };

/* Client-facing TLS ("sslmode" the proxy enforces on its clients). */
enum vg_client_tls_mode {
	VG_CTLS_DISABLE = 0, /* answer SSLRequest with 'N' */
	VG_CTLS_ALLOW,       /* accept TLS if asked, plaintext too */
	VG_CTLS_REQUIRE,     /* refuse plaintext clients with 28000 */
};

/* Backend TLS, libpq sslmode semantics. */
enum vg_server_tls_mode {
	VG_STLS_DISABLE = 0,
	VG_STLS_PREFER,
	VG_STLS_REQUIRE,
	VG_STLS_VERIFY_CA,
	VG_STLS_VERIFY_FULL,
};

enum vg_auth_type { VG_AUTH_TRUST = 0, VG_AUTH_MD5, VG_AUTH_SCRAM };

enum vg_log_level { VG_LOG_DEBUG = 0, VG_LOG_INFO, VG_LOG_WARNING, VG_LOG_ERROR };

struct vg_listen {
	char *host;            /* TCP address, NULL when this entry is a unix socket */
	int port;              /* TCP port; also names the unix socket .s.PGSQL.<port> */
	char *unix_socket_dir; /* non-NULL: listen on <dir>/.s.PGSQL.<port> */
};

struct vg_client_tls {
	enum vg_client_tls_mode mode;
	char *cert_file;
	char *key_file;
	char *ca_file; /* optional: verify client certificates against it */
};

struct vg_server_tls {
	enum vg_server_tls_mode mode;
	char *ca_file;
	char *cert_file; /* optional client certificate for the backend */
	char *key_file;
};

enum vg_backend_role { VG_ROLE_PRIMARY = 0, VG_ROLE_REPLICA, VG_ROLE_FALLBACK };

/* Which server sessions of a primary backend may be pooled (libpq's
 * target_session_attrs): read-write refuses a standby or a read-only
 * session; any takes what answers.  UNSET is the loader's "not given". */
enum vg_session_attrs { VG_TSA_UNSET = 0, VG_TSA_READ_WRITE, VG_TSA_ANY };

/* How vector reads of a managed index are routed (routing/route.h). */
enum vg_route_mode { VG_ROUTE_PRIMARY = 0, VG_ROUTE_REPLICA, VG_ROUTE_FALLBACK, VG_ROUTE_REFUSE, VG_ROUTE_COUNT };

/* Rebuild steps a route policy can name, in rebuild job order. */
#define VG_POLICY_STEPS 7 /* preflight baseline build verify swap watch retain */

struct vg_backend {
	char *name; /* "primary" is required */
	char *host; /* hostname, IP or unix socket directory (starts with '/') */
	int port;
	enum vg_backend_role role; /* default primary: a backend databases point at */
	char *serves;              /* replica/fallback: the backend whose vector reads it takes (default "primary") */
	size_t max_lag_bytes;      /* replica: out of rotation beyond this replay lag */
	double max_lag_seconds;
	enum vg_session_attrs target_session_attrs; /* primary: read-write (default); others: any */
};

/* libpq health checks of every backend (up/down, replica lag). */
struct vg_health_check {
	char *user; /* required when replicas or a fallback are configured */
	char *password;
	char *dbname;    /* default "postgres" */
	double interval; /* seconds between checks, default 1 */
	/* while no client talks and no route reads off the primary, checks are
	 * this far apart (default 10; 0: always `interval`) */
	double quiet_interval;
	double timeout;  /* a check slower than this marks the backend down, default 3 */
};

/* Name resolution of backend hosts (proxy/runtime/resolver.h): how long
 * answers are kept and where the questions go. */
struct vg_dns {
	double max_ttl;      /* an answer is kept at most this long (its record TTL, capped), default 15 */
	double min_ttl;      /* ... and at least this long (a TTL of 0 included), default 1; max_ttl wins */
	double nxdomain_ttl; /* a name that does not resolve, or a failed lookup, is kept this long, default 15 */
	double timeout;      /* seconds for one try of a query, default 5 */
	int attempts;        /* tries of a query before it fails, default 2 */
	char **nameservers;  /* "ip", "ip:port" or "[ipv6]:port"; NULL = /etc/resolv.conf's */
	size_t n_nameservers;
};

/* Route modes shared by every vecgate instance through the database. */
struct vg_routing {
	double refresh_seconds; /* periodic re-read of vecgate.routes, default 5 */
	size_t hold_bytes;      /* routed reads are answered whole up to this size (replay on failure) */
};

struct vg_user {
	char *name;
	/* Client-side secret: plaintext, "md5<32 hex>" or
	 * "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>". */
	char *password;
	/* Plaintext password for logging into the backend; NULL = use `password`
	 * when it is plaintext, else SCRAM/md5 passthrough of the client's proof. */
	char *server_password;
};

struct vg_database {
	char *name;   /* database name clients ask for; "*" matches any */
	char *dbname; /* backend database name; default = name (or the client's for "*") */
	char *backend; /* backend name; default "primary" */
	char *user;   /* force this backend user; NULL = the client's user */
	char *password; /* backend password for the forced user */
	enum vg_pool_mode pool_mode;
	int pool_size;
	int min_pool_size;
	int max_db_connections; /* 0 = unlimited */
};

struct vg_auth {
	enum vg_auth_type type;
	struct vg_user *users;
	size_t n_users;
	char *auth_query; /* NULL = disabled; "$1" is the user name */
	char *auth_user;
	char *auth_password;
	char *auth_dbname; /* NULL = the client's database */
};

struct vg_timeouts { /* seconds; 0 = disabled */
	double client_login;
	double client_idle;
	double query_wait;
	double server_connect;
	double server_idle;
	double server_lifetime;
	double server_login_retry;
	double shutdown; /* SIGTERM drain limit */
	double cancel_wait;
};

struct vg_limits {
	int max_client_conn;
	size_t max_message_size; /* bytes; larger messages are refused with 08P01 */
	size_t max_startup_size;
};

struct vg_logging {
	enum vg_log_level level;
	char *file; /* NULL = stderr */
	bool log_connections;
	bool log_disconnections;
};

struct vg_pool_settings {
	char *server_reset_query;      /* default "DISCARD ALL" */
	bool server_reset_query_always; /* also in transaction mode */
	char *application_name_add_host; /* reserved, NULL */
	int max_prepared_statements;     /* per server connection, least recently used closed first; 0 = no cap */
	size_t statement_cache;          /* bytes of statement texts no client holds, kept per pool for reuse */
};

/* Admin HTTP API (evhttp), loopback by default. */
struct vg_admin {
	char *host;  /* default 127.0.0.1 */
	int port;    /* 0 = admin API disabled */
	char *token; /* bearer token; required when port is set */
	bool metrics_without_token; /* GET /metrics without the token (default false: token required) */
};

struct vg_setting {
	char *name;
	char *value;
};

enum vg_swap_mode { VG_SWAP_AUTO = 0, VG_SWAP_FLIP, VG_SWAP_RENAME, VG_SWAP_HINT };
/* where a managed index's eval queries come from */
enum vg_eval_source { VG_EVAL_FILE = 0, VG_EVAL_TRAFFIC, VG_EVAL_BOTH };

/* How an eval run computes the ground truth the eval file does not give:
 * one exact scan of the table for all queries when the eval query allows it
 * (auto) or always (exact_scan: an eval query it cannot serve fails the
 * run), or one exact query per eval vector (per_query). */
/* preflight runs a build plan (trial builds on samples) unless off */
enum vg_plan_mode { VG_PLAN_AUTO = 0, VG_PLAN_OFF = 1 };
/* how a partitioned table is rebuilt: every partition, then one gate and one
 * swap (whole); or each partition built, gated on its own and swapped before
 * the next (rolling: flip mode only) */
enum vg_partitions_mode { VG_PARTITIONS_WHOLE = 0, VG_PARTITIONS_ROLLING = 1 };
/* what preflight does with a plan over a limit (memory, disk,
 * max_build_seconds): refuse the job, or hold it for the operator */
enum vg_plan_over_limit { VG_OVER_REFUSE = 0, VG_OVER_APPROVE = 1 };

enum vg_ground_truth { VG_TRUTH_AUTO = 0, VG_TRUTH_EXACT_SCAN = 1, VG_TRUTH_PER_QUERY = 2 };

/* An index vecgate may rebuild online. */
struct vg_managed_index {
	char *name;     /* handle in the API and CLI; default = index */
	char *database; /* backend database */
	char *backend;  /* default primary */
	char *schema;   /* from table "schema.table"; default public */
	char *table;
	char *index;    /* live index name (same schema as the table) */
	char *user;     /* maintenance connection role (superuser for instant rollback) */
	char *password;
	int k;          /* neighbours per eval query, default 10 */
	char *eval_file; /* one query vector literal per line, optional " | id,id,..." ground truth */
	enum vg_eval_source eval_source;
	/* query vectors of vector reads kept per index (uniform reservoir, in
	 * vecgate.eval_samples); 0 = not sampled.  Default 1000 when
	 * eval_source takes traffic, else 0 */
	int traffic_sample_size;
	int traffic_min_samples; /* a rebuild on traffic alone needs this many, default 100 */
	/* the k-NN query to evaluate: $1 = query vector literal (text), $2 = k;
	 * e.g. SELECT id FROM items ORDER BY embedding <=> $1::vector LIMIT $2 */
	char *eval_query;
	enum vg_ground_truth ground_truth; /* default auto */
	double recall_tolerance;  /* absolute, default 0.02 */
	double latency_tolerance; /* relative p95 growth allowed, default 0.5 */
	double latency_budget_ms; /* a p95 at or below this always passes the gate; 0 = none */
	struct vg_setting *search_settings; /* e.g. hnsw.ef_search */
	size_t n_search_settings;
	struct vg_setting *with; /* WITH (...) overrides for the new index */
	size_t n_with;
	/* the new index's shape, NULL = the live index's (routing/indexdef.h,
	 * index_shape): another access method (its WITH parameters dropped),
	 * the key's operator class ([opclass_schema.]opclass, as the catalog
	 * spells them), the key expression */
	char *method;
	char *opclass_schema, *opclass;
	char *expression;
	struct vg_setting *maintenance; /* SET for the build session */
	size_t n_maintenance;
	int max_attempts;     /* build attempts, default 3 */
	double backoff_seconds; /* first retry delay, doubled each time, default 2 */
	enum vg_swap_mode swap_mode;
	int lock_timeout_ms;  /* swap transaction, default 50 */
	int swap_attempts;    /* default 20 */
	double watch_seconds; /* default 60 */
	double watch_error_rate_increase; /* roll back if errors through vecgate rise by more, default 0.01 */
	/* watch: the new index's idx_scan did not grow while vecgate sent
	 * vector reads to the primary: roll back (default) or only say so */
	bool watch_proof_rollback;
	/* another instance takes over a job whose driver wrote no heartbeat
	 * for this long (default 10 s) */
	double takeover_seconds;
	double retention_seconds; /* keep the old index for rollback, default 86400 */
	double max_transaction_age; /* preflight refuses older transactions, default 300 s */
	size_t free_space_bytes; /* preflight: free space figure; 0 = not checked */
	char *free_space_query;     /* or a SQL query returning bytes free */
	bool drop_invalid;          /* preflight drops leftover invalid vecgate indexes */
	/* the build plan (routing/build_plan.h): preflight refuses a build
	 * predicted longer than max_build_seconds (0 = no window), or one that
	 * would not fit maintenance_work_mem or the free space; plan off skips
	 * the plan and its checks */
	double max_build_seconds;
	enum vg_plan_mode plan;
	enum vg_partitions_mode partitions;
	enum vg_plan_over_limit plan_over_limit; /* refuse (default), or wait for vecgatectl approve */
	double plan_sample_fraction; /* the largest trial's share of the table, default 0.05 */
	int plan_min_rows;           /* the smallest trial, default 2000 rows */
	bool approve_swap;          /* wait for an operator's approve before swapping */
	enum vg_route_mode route;   /* initial route mode of its vector reads */
	double drift_check_seconds; /* recall-drift monitor period; 0 = off */
	double drift_tolerance;     /* alert when recall < baseline x (1 - this), default 0.05 */
	bool drift_propose_rebuild; /* on alert, propose a rebuild (never started without an operator) */
	int route_policy[VG_POLICY_STEPS]; /* per rebuild step: a vg_route_mode, or -1 = keep */
};

struct vg_config {
	char *path; /* file it was loaded from (absolute or as given) */
	struct vg_listen *listen;
	size_t n_listen;
	struct vg_client_tls client_tls;
	struct vg_server_tls server_tls;
	struct vg_backend *backends;
	size_t n_backends;
	struct vg_database *databases;
	size_t n_databases;
	struct vg_auth auth;
	struct vg_timeouts timeouts;
	struct vg_limits limits;
	struct vg_logging logging;
	struct vg_pool_settings pool;
	struct vg_admin admin;
	int ddl_guard; /* 0 block, 1 warn, 2 allow (routing/ddl_guard.h) */
	struct vg_health_check health;
	struct vg_routing routing;
	struct vg_dns dns;
	struct vg_managed_index *indexes;
	size_t n_indexes;
};

/* Parse and validate `path`.  On error returns NULL and writes
 * "path:line:col: message" (1-based) into errbuf. */
struct vg_config *config_load(const char *path, char *errbuf, size_t errlen);

/* Same, from a string in memory; `name` is used in error messages. */
struct vg_config *config_load_string(const char *name, const char *yaml, size_t len,
                                     char *errbuf, size_t errlen);

void config_free(struct vg_config *cfg);

const struct vg_backend *config_find_backend(const struct vg_config *cfg, const char *name);
/* Exact match first, then the "*" wildcard entry; NULL if neither. */
const struct vg_database *config_find_database(const struct vg_config *cfg, const char *name);
const struct vg_user *config_find_user(const struct vg_config *cfg, const char *name);

const char *config_pool_mode_name(enum vg_pool_mode m);
const char *config_route_mode_name(enum vg_route_mode m);
int config_route_mode_parse(const char *s); /* enum value or -1 */
const char *config_role_name(enum vg_backend_role r);
const char *config_session_attrs_name(enum vg_session_attrs a);
extern const char *const config_policy_steps[VG_POLICY_STEPS];
const struct vg_managed_index *config_find_index(const struct vg_config *cfg, const char *name);

#endif
