/*
 * Which DDL is refused on managed objects, and what the operator is told.
 * Names match with or without schema (the client's search_path is not
 * known here, so a bare name matches a managed object of that name).
 */
#include "routing/ddl_guard.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum guard_verdict ddl_guard_check(const struct sql_class *c, const struct guard_target *targets, int n,
                                   enum guard_mode mode, char *msg, size_t msglen, char *hint, size_t hintlen)
{
	msg[0] = hint[0] = 0;
	if (mode == GUARD_MODE_ALLOW || !c->ddl)
		return GUARD_PASS;
	const char *t = c->ddl_target;
	for (int i = 0; i < n; i++) {
		const struct guard_target *g = &targets[i];
		switch (c->ddl_kind) {
		case DDL_REINDEX: {
			const char *what = c->ddl_target2;
			bool hit = (!strcmp(what, "index") && sql_name_matches(t, g->schema, g->index)) ||
			           (!strcmp(what, "table") && sql_name_matches(t, g->schema, g->table)) ||
			           (!strcmp(what, "schema") && !strcasecmp(t, g->schema)) || !strcmp(what, "database") ||
			           !strcmp(what, "system");
			if (!hit)
				continue;
			snprintf(msg, msglen,
			         "REINDEX %s %s would take an ACCESS EXCLUSIVE lock on %s.%s and a SHARE lock on %s.%s for the "
			         "whole rebuild: vector searches would stall and writes would queue",
			         what, t, g->schema, g->index, g->schema, g->table);
			snprintf(hint, hintlen,
			         "Use REINDEX INDEX CONCURRENTLY %s.%s, or \"vecgatectl rebuild start %s\" for a gated online "
			         "rebuild with instant rollback.",
			         g->schema, g->index, g->name);
			break;
		}
		case DDL_DROP_INDEX:
		case DDL_DROP_INDEX_CONCURRENTLY:
			if (!sql_name_matches(t, g->schema, g->index))
				continue;
			snprintf(msg, msglen,
			         "DROP INDEX %s would remove the live vector index of managed index \"%s\": searches on %s.%s "
			         "would fall back to sequential scans",
			         t, g->name, g->schema, g->table);
			snprintf(hint, hintlen,
			         "Replace it online with \"vecgatectl rebuild start %s\", or remove it from managed_indexes "
			         "first.",
			         g->name);
			break;
		case DDL_CREATE_INDEX:
			if (!sql_name_matches(t, g->schema, g->table))
				continue;
			snprintf(msg, msglen,
			         "CREATE INDEX without CONCURRENTLY would take a SHARE lock on %s for the whole build: every "
			         "INSERT, UPDATE and DELETE (ingestion) would wait",
			         t);
			snprintf(hint, hintlen, "Use CREATE INDEX CONCURRENTLY%s%s ON %s ....", c->ddl_target2[0] ? " " : "",
			         c->ddl_target2, t);
			break;
		default:
			continue;
		}
		return mode == GUARD_MODE_WARN ? GUARD_WARNED : GUARD_BLOCKED;
	}
	return GUARD_PASS;
}
