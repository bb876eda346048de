/*
 * The DDL guard: statements that took search offline in the incident this
 * product exists for are refused (or logged, or allowed, per config) on
 * managed tables and indexes: REINDEX without CONCURRENTLY, DROP INDEX of a
 * live managed index, CREATE INDEX without CONCURRENTLY.  Pure decision over
 * a classified statement; the message explains the lock and names the safe
 * command.
 */
#ifndef VG_ROUTING_DDL_GUARD_H
#define VG_ROUTING_DDL_GUARD_H

#include <stddef.h>

#include "routing/classify.h"

#define VG_SQLSTATE_DDL_GUARD "VG002"

enum guard_mode { GUARD_MODE_BLOCK = 0, GUARD_MODE_WARN, GUARD_MODE_ALLOW };
enum guard_verdict { GUARD_PASS, GUARD_WARNED, GUARD_BLOCKED };

struct guard_target {
	const char *name;   /* managed index handle, for the hint */
	const char *schema; /* of table and index */
	const char *table;
	const char *index;
};

enum guard_verdict ddl_guard_check(const struct sql_class *c, const struct guard_target *targets, int n,
                                   enum guard_mode mode, char *msg, size_t msglen, char *hint, size_t hintlen);

#endif
