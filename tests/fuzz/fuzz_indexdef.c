/*
 * Fuzz the rewriting of pg_get_indexdef() output into the rebuild's
 * CREATE INDEX CONCURRENTLY statement.  The definition comes from the
 * catalog (index expressions, predicates and reloptions can hold any text)
 * and the overrides from the config, and the result is executed on the
 * primary: it must fit its buffer, keep CONCURRENTLY and the new name, carry
 * every override, and rewriting it again must give the same statement.
 * Input lines: definition, new index name, then "name=value" overrides and
 * "@method=", "@opclass=", "@expression=" lines (a new shape: the method,
 * opclass and key that come out are the ones asked for).
 */
#include "routing/indexdef.h"
#include "tests/fuzz/fuzz_util.h"

#include <strings.h>

#define MAX_OV 8

static int rewrite(const char *def, const char *name, const struct index_shape *shape, const struct index_param *ov,
                   int n, char *out, size_t outlen)
{
	char err[64];
	memset(out, 0x5a, outlen + 8);
	int rc = indexdef_rewrite_shape(def, name, shape, ov, n, out, outlen, err, sizeof(err));
	for (size_t i = outlen; i < outlen + 8; i++)
		FUZZ_CHECK((unsigned char)out[i] == 0x5a); /* nothing past outlen */
	if (rc == 0)
		FUZZ_CHECK(strnlen(out, outlen) < outlen);
	else
		FUZZ_CHECK(err[0] && strnlen(err, sizeof(err)) < sizeof(err));
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	size_t dl, nl;
	const uint8_t *dp = fin_until(&in, '\n', &dl);
	const uint8_t *np = fin_until(&in, '\n', &nl);
	char *def = fuzz_strndup(dp, dl), *name = fuzz_strndup(np, nl);
	char *ovtext[MAX_OV];
	struct index_param ov[MAX_OV];
	int n_ov = 0;
	/* "@method=", "@opclass=", "@expression=" lines give a new shape */
	struct index_shape shape = {NULL, NULL, NULL};
	char *shapetext[3] = {NULL, NULL, NULL};
	while (in.len && n_ov < MAX_OV) {
		size_t l;
		const uint8_t *p = fin_until(&in, '\n', &l);
		char *s = fuzz_strndup(p, l);
		static const char *const keys[] = {"@method=", "@opclass=", "@expression="};
		int k = 0;
		while (k < 3 && strncmp(s, keys[k], strlen(keys[k])))
			k++;
		if (k < 3) {
			free(shapetext[k]);
			shapetext[k] = s;
			const char *v = s + strlen(keys[k]);
			if (k == 0)
				shape.method = v;
			else if (k == 1)
				shape.opclass = v;
			else
				shape.expression = v;
			continue;
		}
		char *eq = strchr(s, '=');
		ovtext[n_ov] = s;
		ov[n_ov].name = s;
		ov[n_ov].value = eq ? eq + 1 : "";
		if (eq)
			*eq = 0;
		n_ov++;
	}

	size_t outlen = 64 + (size % 7) * 256;
	char *out = malloc(outlen + 8), *again = malloc(outlen + 8);
	FUZZ_CHECK(out && again);
	if (rewrite(def, name, &shape, ov, n_ov, out, outlen) == 0) {
		const char *head = out;
		while (*head == ' ' || (*head >= '\t' && *head <= '\r'))
			head++;
		FUZZ_CHECK(!strncasecmp(head, "CREATE", 6));
		FUZZ_CHECK(strstr(out, " CONCURRENTLY ") != NULL);
		char q[256];
		quote_ident(name, q, sizeof(q));
		FUZZ_CHECK(strstr(out, q) != NULL);
		for (int i = 0; i < n_ov; i++) {
			char key[80];
			snprintf(key, sizeof(key), "%s=", ov[i].name);
			FUZZ_CHECK(strcasestr(out, key) != NULL);
		}
		/* the new definition is itself a definition: rewriting it again with
		 * the same name and overrides changes nothing */
		char *out_copy = strdup(out);
		FUZZ_CHECK(out_copy);
		int rc = rewrite(out_copy, name, &shape, ov, n_ov, again, outlen);
		if (rc != 0 || strcmp(again, out_copy))
			fprintf(stderr, "first:  %s\nsecond: %s\n", out_copy, rc ? "(failed)" : again);
		FUZZ_CHECK(rc == 0 && !strcmp(again, out_copy));
		char nm[256];
		if (strlen(q) < sizeof(nm) - 1) {
			/* and its name reads back as the new name */
			FUZZ_CHECK(indexdef_name(out_copy, nm, sizeof(nm)) == 0);
			if (strlen(name) < sizeof(q) - 3 && !strchr(name, '"'))
				FUZZ_CHECK(!strcmp(nm, name));
		}
		struct index_key key;
		if (indexdef_key(out_copy, &key) == 0) {
			FUZZ_CHECK(key.n_keys >= 1 && key.key[0]);
			if (shape.method)
				FUZZ_CHECK(!strcasecmp(key.method, shape.method));
			if (shape.opclass)
				FUZZ_CHECK(!strcmp(key.opclass, shape.opclass));
		}
		free(out_copy);
	}
	for (int k = 0; k < 3; k++)
		free(shapetext[k]);

	char nm[32];
	memset(nm, 0x5a, sizeof(nm));
	if (indexdef_name(def, nm, 16) == 0)
		FUZZ_CHECK(strnlen(nm, 16) < 16);
	FUZZ_CHECK((unsigned char)nm[16] == 0x5a);

	/* quoting into small buffers never overruns */
	for (size_t ql = 0; ql < 12; ql += 3) {
		char qb[24];
		memset(qb, 0x5a, sizeof(qb));
		quote_ident(name, qb, ql);
		if (ql)
			FUZZ_CHECK(memchr(qb, 0, ql) != NULL);
		for (size_t i = ql; i < sizeof(qb); i++)
			FUZZ_CHECK((unsigned char)qb[i] == 0x5a);
	}
	for (int i = 0; i < n_ov; i++)
		free(ovtext[i]);
	free(out);
	free(again);
	free(def);
	free(name);
	return 0;
}
