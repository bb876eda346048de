/*
 * Judge a rebuild's method, operator class or expression change against the
 * catalog's facts before anything is built: every refusal here would
 * otherwise surface hours later, as a failed CREATE INDEX or as a verify
 * whose EXPLAIN never shows the new index.
 */
#include "routing/index_shape.h"
#include "routing/knn_query.h"

#include <stdio.h>
#include <string.h>

const char SQL_INDEX_SHAPE[] =
	"SELECT am.amname::text, lc.opcname::text, ln.nspname::text,"
	" (SELECT string_agg(DISTINCT o.oprname::text, ' ') FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr"
	" WHERE ao.amopfamily = lc.opcfamily AND ao.amoppurpose = 'o'),"
	" nam.amname::text, nam.amtype::text, nc.opcname::text, nn.nspname::text,"
	" (SELECT string_agg(DISTINCT o.oprname::text, ' ') FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr"
	" WHERE ao.amopfamily = nc.opcfamily AND ao.amoppurpose = 'o'),"
	" format_type(kt.t, NULL), format_type(nc.opcintype, NULL),"
	" nc.opcintype = kt.t OR EXISTS (SELECT 1 FROM pg_cast WHERE castsource = kt.t AND casttarget = nc.opcintype"
	" AND castmethod = 'b') OR (SELECT typtype FROM pg_type WHERE oid = nc.opcintype) = 'p'"
	" FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
	" JOIN pg_opclass lc ON lc.oid = i.indclass[0] JOIN pg_namespace ln ON ln.oid = lc.opcnamespace"
	" CROSS JOIN LATERAL (SELECT coalesce(nullif($5::text, '')::oid, a.atttypid) AS t FROM pg_attribute a"
	" WHERE a.attrelid = i.indexrelid AND a.attnum = 1) kt"
	" LEFT JOIN pg_am nam ON nam.amname = coalesce(nullif($2::text, ''), am.amname::text)"
	" LEFT JOIN LATERAL (SELECT o.* FROM pg_opclass o WHERE o.opcmethod = nam.oid"
	" AND o.opcname = coalesce(nullif($4::text, ''), lc.opcname::text)"
	" AND ($3::text = '' OR o.opcnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $3::text))"
	" ORDER BY o.opcnamespace = lc.opcnamespace DESC, pg_opclass_is_visible(o.oid) DESC LIMIT 1) nc ON true"
	" LEFT JOIN pg_namespace nn ON nn.oid = nc.opcnamespace"
	" WHERE i.indexrelid = $1::oid";

/* Is each space-separated word of `need` in `have`? */
static bool all_in(const char *need, const char *have)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", need ? need : "");
	for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		size_t n = strlen(w);
		bool found = false;
		for (const char *p = have ? have : ""; !found && (p = strstr(p, w)); p += n)
			found = (p == have || p[-1] == ' ') && (p[n] == ' ' || !p[n]);
		if (!found)
			return false;
	}
	return true;
}

static const char *or_none(const char *s)
{
	return s && *s ? s : "none";
}

int shape_verdict(const struct shape_facts *f, char *why, size_t whylen)
{
	const char *method = f->want_method ? f->want_method : f->live_method;
	if (!f->new_method) {
		snprintf(why, whylen, "there is no access method %s (is its extension created in this database?)", method);
		return -1;
	}
	if (!f->new_amtype || strcmp(f->new_amtype, "i")) {
		snprintf(why, whylen, "%s is not an index access method", method);
		return -1;
	}
	if (!f->new_opclass) {
		if (f->want_opclass)
			snprintf(why, whylen, "there is no operator class %s%s%s for access method %s",
			         f->want_opclass_schema ? f->want_opclass_schema : "", f->want_opclass_schema ? "." : "",
			         f->want_opclass, method);
		else
			snprintf(why, whylen, "access method %s has no operator class named like the live one (%s.%s): name "
			         "one with opclass:", method, or_none(f->live_opclass_schema), or_none(f->live_opclass));
		return -1;
	}
	/* reads ordered by the live operator must still find an index that orders by it */
	if (!all_in(f->live_ops, f->new_ops)) {
		snprintf(why, whylen, "operator class %s orders by %s, the live %s by %s: reads ordered by %s could not "
		         "use the new index (a different distance needs its own eval query and reads)",
		         f->new_opclass, or_none(f->new_ops), f->live_opclass, or_none(f->live_ops), or_none(f->live_ops));
		return -1;
	}
	if (f->eval_op && f->new_ops && *f->new_ops && !all_in(f->eval_op, f->new_ops)) {
		snprintf(why, whylen, "the eval query orders by %s, operator class %s by %s", f->eval_op, f->new_opclass,
		         f->new_ops);
		return -1;
	}
	if (!f->type_ok) {
		snprintf(why, whylen, "operator class %s takes %s, the key is %s: change the key with expression: (e.g. "
		         "embedding::halfvec(n)) or name another opclass", f->new_opclass, or_none(f->opclass_type),
		         or_none(f->key_type));
		return -1;
	}
	if (f->want_expression) {
		char want[512], live[512];
		if (knn_expr_normalize(f->want_expression, want, sizeof(want)) < 0) {
			snprintf(why, whylen, "expression '%s' cannot be read", f->want_expression);
			return -1;
		}
		bool same_as_live = f->live_key && knn_expr_normalize(f->live_key, live, sizeof(live)) == 0 &&
		                    !strcmp(live, want);
		if (!same_as_live && !f->eval_op) {
			snprintf(why, whylen, "the eval query uses no distance operator, so it cannot show that reads use the "
			         "new key %s", f->want_expression);
			return -1;
		}
		if (!same_as_live && (!f->eval_operand || !*f->eval_operand)) {
			snprintf(why, whylen, "cannot tell what the eval query's %s compares (write its column side as the "
			         "reads do, e.g. ORDER BY %s %s $1), so it cannot show that reads use the new key %s",
			         f->eval_op, f->want_expression, f->eval_op, f->want_expression);
			return -1;
		}
		if (!same_as_live && strcmp(f->eval_operand, want)) {
			snprintf(why, whylen, "the eval query orders by %s %s, not by the new key %s: reads written that way "
			         "would not use the new index (change the reads and the eval query with the index)",
			         f->eval_operand, f->eval_op, want);
			return -1;
		}
	}
	return 0;
}
