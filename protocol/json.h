/*
 * A minimal JSON writer into a growable buffer: objects, arrays, escaped
 * strings and numbers, with commas placed automatically.
 */
#ifndef VG_PROTOCOL_JSON_H
#define VG_PROTOCOL_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct json {
	char *buf;
	size_t len, cap;
	int depth;
	bool need_comma[32];
};

void json_init(struct json *j);
void json_free(struct json *j);
void json_obj_begin(struct json *j, const char *key); /* key NULL inside arrays / at top */
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *v); /* v NULL -> null */
void json_num(struct json *j, const char *key, double v);      /* NaN -> null */
void json_int(struct json *j, const char *key, long long v);
void json_bool(struct json *j, const char *key, bool v);

/* ---- reading (for vecgatectl) ---- */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
struct jnode {
	enum jtype type;
	char *key; /* member name inside an object */
	char *str;
	double num;
	bool b;
	struct jnode *child, *next;
};
/* Parse a whole document; NULL on malformed input. */
struct jnode *json_parse(const char *text);
void json_node_free(struct jnode *n);
/* Dotted path lookup ("progress.percent"); NULL if absent. */
const struct jnode *json_get(const struct jnode *n, const char *path);
const char *json_get_str(const struct jnode *n, const char *path); /* NULL unless a string */
double json_get_num(const struct jnode *n, const char *path);
bool json_get_bool(const struct jnode *n, const char *path);       /* false unless true */      /* NaN unless a number */

#endif
