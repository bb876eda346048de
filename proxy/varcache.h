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
	char *val[VAR_COUNT]; /* NULL = the server's default */
};
int varcache_lookup(const char *name); /* index or -1 */
const char *varcache_name(int idx);
void varcache_set(struct varcache *vc, int idx, const char *value);
void varcache_copy(struct varcache *dst, const struct varcache *src);
void varcache_clear(struct varcache *vc);
/* Append to sql the SET/RESET commands that make `server` match `client`,
 * and update `server` to the values it will have.  Returns the count. */
int varcache_sync_sql(const struct varcache *client, struct varcache *server, struct pg_buf *sql);

#endif
