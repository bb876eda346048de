/*
 * Fuzz the JSON reader vecgatectl uses on admin API replies, together with
 * the writer the proxy produces them with.  A reply may come from a
 * different vecgate version or through a proxy, so the reader must refuse
 * garbage without crashing, build a well-formed tree from what it accepts,
 * and read back what the writer wrote (same types, keys and strings).
 * Input: the document text.
 */
#include "protocol/json.h"
#include "tests/fuzz/fuzz_util.h"

#include <math.h>

/* Tree shape checks; returns the depth. */
static int check_tree(const struct jnode *n, int depth)
{
	FUZZ_CHECK(depth <= 64);
	int deepest = depth;
	switch (n->type) {
	case J_STR: FUZZ_CHECK(n->str != NULL); break;
	case J_OBJ:
	case J_ARR:
		for (const struct jnode *c = n->child; c; c = c->next) {
			FUZZ_CHECK(n->type == J_OBJ ? c->key != NULL : c->key == NULL);
			int d = check_tree(c, depth + 1);
			if (d > deepest)
				deepest = d;
		}
		break;
	case J_NULL:
	case J_BOOL:
	case J_NUM: FUZZ_CHECK(n->child == NULL); break;
	default: FUZZ_CHECK(0);
	}
	return deepest;
}

static void write_tree(struct json *j, const struct jnode *n, const char *key)
{
	switch (n->type) {
	case J_NULL: json_str(j, key, NULL); break;
	case J_BOOL: json_bool(j, key, n->b); break;
	case J_NUM: json_num(j, key, n->num); break;
	case J_STR: json_str(j, key, n->str); break;
	case J_OBJ:
		json_obj_begin(j, key);
		for (const struct jnode *c = n->child; c; c = c->next)
			write_tree(j, c, c->key);
		json_obj_end(j);
		break;
	case J_ARR:
		json_arr_begin(j, key);
		for (const struct jnode *c = n->child; c; c = c->next)
			write_tree(j, c, NULL);
		json_arr_end(j);
		break;
	}
}

/* a (as read) and b (written and read again) hold the same document. */
static void same_tree(const struct jnode *a, const struct jnode *b)
{
	if (a->type == J_NUM && !isfinite(a->num)) {
		FUZZ_CHECK(b->type == J_NULL); /* the writer has no NaN/Infinity */
		return;
	}
	FUZZ_CHECK(a->type == b->type);
	FUZZ_CHECK(!a->key == !b->key && (!a->key || !strcmp(a->key, b->key)));
	switch (a->type) {
	case J_STR: FUZZ_CHECK(!strcmp(a->str, b->str)); break;
	case J_BOOL: FUZZ_CHECK(a->b == b->b); break;
	case J_NUM: {
		/* "%.6g": six significant digits */
		double tol = fabs(a->num) * 1e-5;
		FUZZ_CHECK(fabs(a->num - b->num) <= tol || (a->num == 0 && b->num == 0) || !isfinite(b->num));
		break;
	}
	case J_OBJ:
	case J_ARR: {
		const struct jnode *x = a->child, *y = b->child;
		for (; x && y; x = x->next, y = y->next)
			same_tree(x, y);
		FUZZ_CHECK(!x && !y);
		break;
	}
	default: break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct jnode *root = json_parse(text);
	if (!root) {
		free(text);
		return 0;
	}
	int depth = check_tree(root, 0);

	/* getters: every top-level member without a dot in its name is found
	 * by its own path, as the first member of that name */
	if (root->type == J_OBJ) {
		for (const struct jnode *c = root->child; c; c = c->next) {
			if (strchr(c->key, '.') || !c->key[0])
				continue;
			const struct jnode *first = root->child;
			while (strcmp(first->key, c->key))
				first = first->next;
			FUZZ_CHECK(json_get(root, c->key) == first);
			const char *s = json_get_str(root, c->key);
			FUZZ_CHECK(first->type == J_STR ? s == first->str : s == NULL);
			FUZZ_CHECK(json_get_bool(root, c->key) == (first->type == J_BOOL && first->b));
			double v = json_get_num(root, c->key);
			FUZZ_CHECK(first->type == J_NUM ? (v == first->num || (isnan(v) && isnan(first->num))) : isnan(v));
		}
	}
	FUZZ_CHECK(json_get(root, "") == root);
	(void)json_get_str(root, "a.b.c");

	/* writer -> reader round trip (the writer tracks 31 levels) */
	if (depth < 31) {
		struct json j;
		json_init(&j);
		write_tree(&j, root, NULL);
		FUZZ_CHECK(j.buf != NULL && j.depth == 0);
		struct jnode *back = json_parse(j.buf);
		if (!back)
			fprintf(stderr, "writer output does not parse: %s\n", j.buf);
		FUZZ_CHECK(back != NULL);
		same_tree(root, back);
		json_node_free(back);
		json_free(&j);
	}
	json_node_free(root);
	free(text);
	return 0;
}
