/*
 * SQL classification for routing: a lexer that is exact about what is code
 * and what is not (comments, nested block comments, '', E'', $tag$ strings,
 * "quoted identifiers"), and a classifier on top that tells, per query
 * string: read-only or not, transaction control, DDL (and which guarded DDL,
 * on what), the tables referenced, and whether a vector distance operator
 * (<->, <=>, <#>, <+>, <~>, <%>) is used.  Pure functions over a buffer;
 * anything unclear is classified conservatively (not read-only).
 */
#ifndef VG_ROUTING_CLASSIFY_H
#define VG_ROUTING_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

#define SQL_MAX_TABLES 16
#define SQL_NAME_MAX 128

enum ddl_kind {
	DDL_NONE,
	DDL_REINDEX,              /* REINDEX without CONCURRENTLY */
	DDL_REINDEX_CONCURRENTLY,
	DDL_CREATE_INDEX,         /* without CONCURRENTLY */
	DDL_CREATE_INDEX_CONCURRENTLY,
	DDL_DROP_INDEX,
	DDL_DROP_INDEX_CONCURRENTLY,
	DDL_OTHER,                /* any other DDL */
};

struct sql_class {
	int statements;        /* non-empty statements in the string */
	bool read_only;        /* every statement only reads (safe for a replica) */
	bool txn_begin;        /* BEGIN / START TRANSACTION */
	bool txn_end;          /* COMMIT / END / ROLLBACK / ABORT (not TO SAVEPOINT) */
	bool txn_control;      /* any transaction control, savepoints included */
	bool ddl;
	bool locking;          /* SELECT ... FOR UPDATE/SHARE */
	bool vector_op;        /* a vector distance operator outside strings and comments */
	enum ddl_kind ddl_kind; /* the first guarded DDL found, else DDL_OTHER/DDL_NONE */
	char ddl_target[SQL_NAME_MAX];  /* REINDEX/DROP INDEX: the object; CREATE INDEX: the table */
	char ddl_target2[SQL_NAME_MAX]; /* REINDEX: INDEX/TABLE; CREATE INDEX: the new index's name */
	char tables[SQL_MAX_TABLES][SQL_NAME_MAX]; /* lower-cased, schema-qualified as written */
	int n_tables;
	bool truncated; /* more tables than fit */
};

void sql_classify(const char *sql, size_t len, struct sql_class *out);

/* Does a name as written ("t" or "s.t", lower-cased) denote schema.name?
 * A bare name matches whatever the schema (search_path is not known here). */
bool sql_name_matches(const char *given, const char *schema, const char *name);

/* Where the query vector of a k-NN statement is: the operand of its first
 * distance operator that is a plain string literal (content without the
 * quotes, at sql + off) or a parameter $param; VOP_NONE otherwise (a
 * column on both sides, a subquery, an expression). */
enum vec_operand_kind { VOP_NONE, VOP_LITERAL, VOP_PARAM };
struct vec_operand {
	enum vec_operand_kind kind;
	size_t off, len; /* VOP_LITERAL */
	int param;       /* VOP_PARAM, 1-based */
};
void sql_vector_operand(const char *sql, size_t len, struct vec_operand *out);

/* What a statement may contain, judged by its bytes alone (strings and
 * comments count too): the word INDEX in any case, which every statement the
 * DDL guard refuses names, and a distance operator, which every vector read
 * uses.  A statement with neither needs no lexer; one with either may still
 * turn out to be neither.  A few vectorised memchr calls, no per-byte loop. */
enum {
	SQL_MAY_INDEX = 1,
	SQL_MAY_VECTOR_OP = 2,
};
unsigned sql_prescan(const char *sql, size_t len);

/* The highest $n parameter the statement uses (outside strings and
 * comments), 0 when none. */
int sql_max_param(const char *sql, size_t len);

/* Words (lower-cased) that end a FROM list, and words that cannot be a
 * table's alias right after it (those, join keywords and AS). */
bool sql_word_ends_from(const char *word);
bool sql_word_not_alias(const char *word);

/* Is this operator token one of pgvector's distance operators? */
bool sql_is_vector_operator(const char *op, size_t len);

/* The lexer itself, for parsers built on it (routing/knn_query.c): the same
 * tokens the classifier sees.  Words are lower-cased as PostgreSQL folds
 * them, quoted identifiers kept as written (doubled quotes included); both
 * truncated to 63 bytes, PostgreSQL's identifier limit. */
enum sql_token_type {
	SQL_TOK_END = 0,
	SQL_TOK_WORD = 1,
	SQL_TOK_QIDENT = 2,
	SQL_TOK_STRING = 3,
	SQL_TOK_NUMBER = 4,
	SQL_TOK_OP = 5,
	SQL_TOK_PUNCT = 6,
	SQL_TOK_PARAM = 7, /* $n */
};
struct sql_token {
	enum sql_token_type type;
	const char *p; /* in the input */
	size_t len;
	char word[64];
};
struct sql_lexer {
	const char *s;
	size_t len, pos;
};
void sql_lexer_init(struct sql_lexer *lx, const char *sql, size_t len);
void sql_lexer_next(struct sql_lexer *lx, struct sql_token *t);

#endif
