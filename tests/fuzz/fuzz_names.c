/*
 * Fuzz the names vecgate takes from its configuration and derives for a
 * rebuild: a configured "[schema.]name" (as SQL writes it or raw) is split
 * into parts that fit PostgreSQL's 63 bytes and read back the same once
 * quoted; the new and retired index names derived from any live name fit 63
 * bytes, keep their suffix and are recognised as derived from that name.
 * Input: the configured name, then a line whose bytes pick the job number.
 */
#include "conf/sqlname.h"
#include "routing/indexdef.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	size_t nl;
	const uint8_t *np = fin_until(&in, '\n', &nl);
	char *text = fuzz_strndup(np, nl);
	unsigned job = (unsigned)fin_u16(&in) * 65536u + fin_u16(&in);

	struct sqlname n;
	size_t at = (size_t)-1;
	enum sqlname_status st = sqlname_parse(text, &n, &at);
	if (st == SQLNAME_OK) {
		FUZZ_CHECK(n.name[0] && strlen(n.name) <= SQLNAME_MAX);
		FUZZ_CHECK(strlen(n.schema) <= SQLNAME_MAX && (n.has_schema == (n.schema[0] != 0)));
		/* written back as SQL does, it reads the same */
		char again[2 * (2 * SQLNAME_MAX + 3) + 2], qs[2 * SQLNAME_MAX + 3], qn[2 * SQLNAME_MAX + 3];
		quote_ident_always(n.name, qn, sizeof(qn));
		if (n.has_schema) {
			quote_ident_always(n.schema, qs, sizeof(qs));
			snprintf(again, sizeof(again), "%s.%s", qs, qn);
		} else {
			snprintf(again, sizeof(again), "%s", qn);
		}
		struct sqlname m;
		FUZZ_CHECK(sqlname_parse(again, &m, NULL) == SQLNAME_OK);
		FUZZ_CHECK(!strcmp(m.name, n.name) && !strcmp(m.schema, n.schema) && m.has_schema == n.has_schema);

		/* the rebuild's names for this live index */
		char suffix[24], fresh[INDEX_NAME_MAX + 1], retired[INDEX_NAME_MAX + 1];
		snprintf(suffix, sizeof(suffix), "_vg%u", job);
		index_derived_name(n.name, suffix, fresh, sizeof(fresh));
		snprintf(suffix, sizeof(suffix), "_vgold%u", job);
		index_derived_name(n.name, suffix, retired, sizeof(retired));
		FUZZ_CHECK(strlen(fresh) <= INDEX_NAME_MAX && strlen(retired) <= INDEX_NAME_MAX);
		FUZZ_CHECK(strcmp(fresh, n.name) && strcmp(retired, n.name) && strcmp(fresh, retired));
		FUZZ_CHECK(index_is_derived(n.name, fresh) && index_is_derived(n.name, retired));
		FUZZ_CHECK(!strcmp(retired + strlen(retired) - strlen(suffix), suffix));
	} else {
		FUZZ_CHECK(at <= nl);
		FUZZ_CHECK(strcmp(sqlname_strerror(st), "?"));
	}
	free(text);
	return 0;
}
