/*
 * Decisions of a partitioned rebuild (see partitions.h): no I/O, so every
 * resume case is unit-tested.
 */
#include "routing/partitions.h"
#include "routing/gate.h"
#include "routing/indexdef.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[PART_STATE_COUNT] = {"pending", "building", "built", "attached",
                                                                "verifying", "swapped", "failed"};

const char *part_state_name(enum part_state s)
{
	return (unsigned)s < PART_STATE_COUNT ? state_names[s] : "?";
}

enum part_do part_decide(bool exists, bool valid, bool recorded)
{
	if (!exists)
		return PART_DO_BUILD;
	if (recorded)
		return PART_DO_KEEP;
	/* valid means CREATE INDEX CONCURRENTLY got to its end; an invalid one
	 * may be half a graph: never trust it */
	return valid ? PART_DO_RECORD : PART_DO_DROP;
}

double part_percent(const double *rows, const enum part_state *st, int n, double building_fraction)
{
	double total = 0, done = 0;
	if (building_fraction < 0)
		building_fraction = 0;
	if (building_fraction > 1)
		building_fraction = 1;
	for (int i = 0; i < n; i++) {
		double w = rows[i] >= 1 ? rows[i] : 1;
		total += w;
		if (st[i] == PART_BUILT || st[i] == PART_ATTACHED || st[i] == PART_VERIFYING || st[i] == PART_SWAPPED)
			done += w;
		else if (st[i] == PART_BUILDING)
			done += w * building_fraction;
	}
	return total > 0 ? 100.0 * done / total : 0;
}

void part_name_suffix(const char *derived, char *out, size_t outlen)
{
	size_t n = strlen(derived), d = n;
	if (outlen)
		out[0] = 0;
	while (d > 0 && isdigit((unsigned char)derived[d - 1]))
		d--;
	if (d == n || n - d > 10)
		return;
	static const char *const kinds[] = {"_vgold", "_vg"};
	for (int k = 0; k < 2; k++) {
		size_t kl = strlen(kinds[k]);
		if (d >= kl && !strncmp(derived + d - kl, kinds[k], kl)) {
			snprintf(out, outlen, "%s", derived + d - kl);
			return;
		}
	}
}

void part_child_name(const char *live_child, const char *parent_derived, char *out, size_t outlen)
{
	char suffix[24];
	part_name_suffix(parent_derived, suffix, sizeof(suffix));
	if (!suffix[0])
		snprintf(suffix, sizeof(suffix), "_vg");
	index_derived_name(live_child, suffix, out, outlen);
}

int part_parent_def(const char *def, char *out, size_t outlen)
{
	const char *c = strstr(def, " CONCURRENTLY ");
	const char *on = strstr(def, " ON ONLY ");
	if (strncmp(def, "CREATE ", 7) || !c || !on || c > on)
		return -1;
	int len = snprintf(out, outlen, "%.*s IF NOT EXISTS %s", (int)(c - def), def, c + 14);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

int part_text_array(const char *const *items, int n, char *out, size_t outlen)
{
	size_t o = 0;
	if (outlen < 3)
		return -1;
	out[o++] = '{';
	for (int i = 0; i < n; i++) {
		if (o + 4 >= outlen)
			return -1;
		if (i)
			out[o++] = ',';
		out[o++] = '"';
		for (const char *p = items[i]; *p; p++) {
			if (o + 4 >= outlen)
				return -1;
			if (*p == '"' || *p == '\\')
				out[o++] = '\\';
			out[o++] = *p;
		}
		if (o + 3 >= outlen)
			return -1;
		out[o++] = '"';
	}
	out[o++] = '}';
	out[o] = 0;
	return 0;
}

void part_recall_add(const int64_t *got, size_t n_got, const int64_t *truth, size_t n_truth, const int64_t *ties,
                     size_t n_ties, size_t k, const int *truth_part, int n_parts, double *hits, double *want)
{
	size_t w = k < n_truth ? k : n_truth, g = n_got < k ? n_got : k, tie_hits = 0, found = 0;
	for (size_t j = 0; j < w; j++)
		if (truth_part[j] >= 0 && truth_part[j] < n_parts)
			want[truth_part[j]] += 1;
	for (size_t i = 0; i < g; i++) {
		if (id_among(got[i], got, i))
			continue; /* a duplicate answer counts once, as in the whole recall */
		size_t j = 0;
		while (j < w && truth[j] != got[i])
			j++;
		if (j < w) {
			found++;
			if (truth_part[j] >= 0 && truth_part[j] < n_parts)
				hits[truth_part[j]] += 1;
		} else if (id_among(got[i], ties, n_ties)) {
			tie_hits++;
		}
	}
	/* ties fill the misses from the boundary inwards, never past want */
	for (size_t j = w; j-- > 0 && tie_hits && found < w;) {
		if (id_among(truth[j], got, g))
			continue;
		tie_hits--;
		found++;
		if (truth_part[j] >= 0 && truth_part[j] < n_parts)
			hits[truth_part[j]] += 1;
	}
}

double part_recall_of(double hits, double want)
{
	return want > 0 ? hits / want : NAN;
}
