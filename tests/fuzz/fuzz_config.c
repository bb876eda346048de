/*
 * Fuzz the YAML configuration loader through its in-memory entry point.
 * The config is trusted input, but it is also reloaded on SIGHUP by a
 * running proxy: a malformed file must be refused with a "name:line:col:"
 * message and no leak or crash, and an accepted one must hold what the rest
 * of vecgate assumes without re-checking (a primary backend, every
 * reference resolved, at least one listen address).  Input: the YAML text.
 */
#include "conf/config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *yaml = (char *)fuzz_memdup(data, size);
	char err[256];
	memset(err, 0, sizeof(err));
	struct vg_config *cfg = config_load_string("fuzz.yaml", yaml, size, err, sizeof(err));
	if (!cfg) {
		FUZZ_CHECK(!strncmp(err, "fuzz.yaml:", 10));
		free(yaml);
		return 0;
	}
	FUZZ_CHECK(cfg->path && !strcmp(cfg->path, "fuzz.yaml"));
	const struct vg_backend *primary = config_find_backend(cfg, "primary");
	FUZZ_CHECK(primary && primary->role == VG_ROLE_PRIMARY);
	for (size_t i = 0; i < cfg->n_backends; i++) {
		const struct vg_backend *b = &cfg->backends[i];
		FUZZ_CHECK(b->name && b->name[0] && b->host && b->port >= 1 && b->port <= 65535);
		FUZZ_CHECK(config_find_backend(cfg, b->name) == b);
		if (b->role != VG_ROLE_PRIMARY) {
			const struct vg_backend *of = config_find_backend(cfg, b->serves);
			FUZZ_CHECK(of && of->role == VG_ROLE_PRIMARY && cfg->health.user);
		}
	}
	FUZZ_CHECK(cfg->n_listen >= 1);
	for (size_t i = 0; i < cfg->n_listen; i++)
		FUZZ_CHECK(!cfg->listen[i].host != !cfg->listen[i].unix_socket_dir);
	FUZZ_CHECK(cfg->n_databases >= 1);
	for (size_t i = 0; i < cfg->n_databases; i++) {
		const struct vg_database *d = &cfg->databases[i];
		FUZZ_CHECK(d->name && d->backend && config_find_backend(cfg, d->backend));
		FUZZ_CHECK(d->min_pool_size <= d->pool_size);
		FUZZ_CHECK(config_find_database(cfg, d->name) == d);
	}
	for (size_t i = 0; i < cfg->auth.n_users; i++)
		FUZZ_CHECK(config_find_user(cfg, cfg->auth.users[i].name) == &cfg->auth.users[i] &&
		           cfg->auth.users[i].password);
	for (size_t i = 0; i < cfg->n_indexes; i++) {
		const struct vg_managed_index *m = &cfg->indexes[i];
		FUZZ_CHECK(m->name && m->schema && m->table && m->index && m->database && m->backend);
		FUZZ_CHECK(config_find_backend(cfg, m->backend) && config_find_index(cfg, m->name) == m);
		for (int st = 0; st < VG_POLICY_STEPS; st++)
			FUZZ_CHECK(m->route_policy[st] >= -1 && m->route_policy[st] < VG_ROUTE_COUNT);
		FUZZ_CHECK(m->route >= 0 && m->route < VG_ROUTE_COUNT);
		FUZZ_CHECK(config_route_mode_parse(config_route_mode_name(m->route)) == (int)m->route);
		const struct vg_setting *lists[] = {m->search_settings, m->with, m->maintenance};
		size_t counts[] = {m->n_search_settings, m->n_with, m->n_maintenance};
		for (int l = 0; l < 3; l++)
			for (size_t j = 0; j < counts[l]; j++)
				FUZZ_CHECK(lists[l][j].name && lists[l][j].value && lists[l][j].value[0]);
	}
	FUZZ_CHECK(cfg->pool.server_reset_query && cfg->admin.host && cfg->health.dbname);
	FUZZ_CHECK(cfg->ddl_guard >= 0 && cfg->ddl_guard <= 2);
	FUZZ_CHECK(!cfg->admin.port || (cfg->admin.token && strlen(cfg->admin.token) >= 16));
	FUZZ_CHECK(cfg->limits.max_message_size >= 1024 && cfg->limits.max_startup_size >= 64);
	config_free(cfg);
	free(yaml);
	return 0;
}
