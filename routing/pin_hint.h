/*
 * Plan-hint pins (swap_mode hint): the leading pg_hint_plan comment that
 * makes one vector read scan a chosen index of a managed table.  Pure
 * functions over the statement text.  pg_hint_plan reads a hint only at the
 * very start of the text and matches the relation by the name the query
 * gives it (its alias when it has one), so the hint is built from the
 * statement's own FROM list; a statement where that is not certain is left
 * alone and said to be unsafe.  The same reading of the FROM list restricts
 * the eval query to one partition (pin_retarget, partitions: rolling).
 */
#ifndef VG_ROUTING_PIN_HINT_H
#define VG_ROUTING_PIN_HINT_H

#include <stddef.h>

enum pin_verdict {
	PIN_NOT_READ, /* the text does not read the table in a FROM list */
	PIN_HINTED,   /* `out` holds the hint to put before the text */
	PIN_UNSAFE,   /* reads the table, but a hint could be wrong: *why says why */
};

/* A hint comment `IndexScan(<ref> <index_list>)` for the text `sql`, where
 * <ref> is how the text names table schema.table (bare names match any
 * schema) and index_list comes from pin_index_list: the indexes the planner
 * may choose from, by cost.  Only ordered reads (ORDER BY) are hinted: no
 * other read can use a vector index.  Unsafe: the text carries a hint of its
 * own, holds more than one statement, names the table more than once, or
 * cannot be read. */
enum pin_verdict pin_hint_for(const char *sql, size_t len, const char *schema, const char *table,
                              const char *index_list, char *out, size_t cap, const char **why);

/* The index list of a hint: each name double-quoted, space-separated.  -1
 * when a name is empty, holds a comment delimiter, or the list does not fit. */
int pin_index_list(const char *const *names, int n, char *out, size_t cap);

/* The identifier as a double-quoted SQL name ("a""b"); 0, or -1 when it
 * does not fit. */
int pin_quote_ident(const char *name, char *out, size_t cap);

/* The text with its one FROM reference to table schema.table replaced by
 * leaf_ref (a qualified, quoted-as-needed name: one partition), keeping
 * the table's name as the alias when the text gives none, so column
 * references written table.column still resolve.  Rolling rebuilds gate a
 * partition with the eval query restricted to it this way.  0, or -1 with
 * *why: the text names the table more or less than once in FROM, holds
 * more than one statement, or the result does not fit. */
int pin_retarget(const char *sql, size_t len, const char *schema, const char *table, const char *leaf_ref,
                 char *out, size_t cap, const char **why);

#endif
