/*
 * Session variables a pooled client expects to keep (varcache.c): the
 * client's values travel with it and one SET batch makes a newly assigned
 * server match before the client's first message.
 */
#ifndef VG_PROXY_VARCACHE_H
#define VG_PROXY_VARCACHE_H

#include "protocol/pgproto.h"

enum {
	VAR_CLIENT_ENCODING,
	VAR_DATESTYLE,
	VAR_TIMEZONE,
	VAR_INTERVALSTYLE,
	VAR_STANDARD_CONFORMING_STRINGS,
	VAR_APPLICATION_NAME,
	VAR_EXTRA_FLOAT_DIGITS,
	VAR_SEARCH_PATH,
	VAR_STATEMENT_TIMEOUT,
	VAR_COUNT
};
struct varcache {
	const char *val[VAR_COUNT]; /* pooled strings (strpool.h), NULL = the server's default */
};
int varcache_lookup(const char *name); /* index or -1 */
const char *varcache_name(int idx);
void varcache_set(struct varcache *vc, int idx, const char *value);
void varcache_copy(struct varcache *dst, const struct varcache *src);
void varcache_clear(struct varcache *vc);
/* A client's variables: an immutable set shared by every client with the
 * same values (ten thousand idle clients with the server's defaults hold
 * one), NULL when all are the server's defaults.  varset_with returns the
 * set `cur` with one value changed, taking over the caller's reference to
 * `cur`; varset_put drops one. */
const struct varcache *varset_with(const struct varcache *cur, int idx, const char *value);
void varset_put(const struct varcache *vs);
static inline const char *varset_get(const struct varcache *vs, int idx)
{
	return vs ? vs->val[idx] : NULL;
}

/* Append to sql the SET/RESET commands that make `server` match `client`,
 * and update `server` to the values it will have.  Returns the count. */
int varcache_sync_sql(const struct varcache *client, struct varcache *server, struct pg_buf *sql);
/* sets held (tests) */
size_t varset_count(void);

#endif
