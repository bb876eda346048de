/*
 * PostgreSQL v3 wire protocol over plain byte buffers.
 *
 * Contract: nothing here touches a socket, a clock or a global.  Framing
 * functions look at a header and say whether a whole message is there, how
 * long it is, or why it is unacceptable; readers pull typed fields out of a
 * message body with bounds checks (a malformed body sets rd->err, never reads
 * past the end); builders append complete messages to a growable pg_buf.
 * Message lengths below are PostgreSQL's: the int32 after the type byte,
 * counting itself but not the type byte.
 */
#ifndef VG_PROTOCOL_PGPROTO_H
#define VG_PROTOCOL_PGPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_PROTO_V3 196608u       /* 3.0 */
#define PG_SSL_REQUEST 80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_CANCEL_REQUEST 80877102u

#define PG_HDR_LEN 5 /* type byte + int32 length */

/* Integers as the protocol (and binary COPY) sends them: network order. */
static inline uint32_t pg_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline int16_t pg_be16s(const uint8_t *p)
{
	return (int16_t)(uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

enum pkt_status {
	PKT_OK = 0,     /* a whole header is present and sane */
	PKT_NEED_MORE,  /* not enough bytes for the header yet */
	PKT_BAD_LENGTH, /* length field below the minimum */
	PKT_TOO_LARGE,  /* length above the caller's limit */
};

/* Regular message header: type byte + length.  *total = 1 + length.
 * Both outputs are always written: for PKT_BAD_LENGTH and PKT_TOO_LARGE
 * *total is the announced size (saturated at UINT32_MAX), for PKT_NEED_MORE
 * it is 0 (and *type the first byte, or 0 when there is none). */
enum pkt_status pkt_peek_header(const uint8_t *buf, size_t avail, size_t max_len,
                                uint8_t *type, uint32_t *total);
/* Startup-phase packet (no type byte): *total = length (includes itself);
 * always written, as the announced length, or 0 for PKT_NEED_MORE. */
enum pkt_status pkt_peek_startup(const uint8_t *buf, size_t avail, size_t max_len,
                                 uint32_t *total);

/* ---- readers ---- */
struct pg_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool err;
};

void rd_init(struct pg_reader *rd, const uint8_t *p, size_t len);
uint8_t rd_byte(struct pg_reader *rd);
int16_t rd_int16(struct pg_reader *rd);
int32_t rd_int32(struct pg_reader *rd);
/* NUL-terminated string inside the body; returns "" and sets err if none. */
const char *rd_str(struct pg_reader *rd);
const uint8_t *rd_bytes(struct pg_reader *rd, size_t n);
size_t rd_remaining(const struct pg_reader *rd);

/* ---- startup packet ---- */
#define STARTUP_MAX_PARAMS 32
enum startup_kind {
	STARTUP_NORMAL,
	STARTUP_SSL,
	STARTUP_GSSENC,
	STARTUP_CANCEL,
	STARTUP_BAD_VERSION, /* a protocol we do not speak (major != 3) */
	STARTUP_MALFORMED,
};
struct startup_param {
	const char *name;
	const char *value;
};
struct startup_packet {
	enum startup_kind kind;
	uint32_t version;
	uint32_t cancel_pid, cancel_key; /* STARTUP_CANCEL */
	struct startup_param params[STARTUP_MAX_PARAMS]; /* point into the body */
	int n_params;
	const char *user, *database;
	const char *error; /* STARTUP_MALFORMED: why */
};
/* pkt is the whole packet including its length word. */
void startup_parse(const uint8_t *pkt, size_t len, struct startup_packet *out);
const char *startup_get(const struct startup_packet *sp, const char *name);

/* ---- server messages we look inside ---- */
struct pg_error_fields {
	const char *severity, *sqlstate, *message, *detail, *hint;
};
/* May a logged-in client send a message of this type (simple and extended
 * query, function call, COPY data, Terminate)?  Anything else is a
 * protocol violation vecgate answers itself. */
bool pg_frontend_type_valid(uint8_t type);
/* Is this ErrorResponse severity one after which the backend closes (FATAL, PANIC)? */
bool pg_severity_fatal(const char *severity);
/* Does this SQLSTATE say the server went away or cannot take the statement
 * where it is (shutdown, lost connection, read-only, too many connections),
 * rather than that the statement failed?  A failover or restart produces
 * these; a bad index does not. */
bool pg_sqlstate_server_outage(const char *sqlstate);

/* ErrorResponse / NoticeResponse body (after the length word). */
int parse_error_fields(const uint8_t *body, size_t len, struct pg_error_fields *out);
int parse_parameter_status(const uint8_t *body, size_t len, const char **name, const char **value);

/* 'R' message: code plus, for MD5, the salt; for SASL the mechanisms/data. */
struct pg_auth_request {
	int32_t code; /* 0 ok, 3 cleartext, 5 md5, 10 SASL, 11 SASL continue, 12 SASL final */
	uint8_t md5_salt[4];
	bool offers_scram; /* code 10 */
	const uint8_t *data; /* codes 11/12 */
	size_t data_len;
};
int parse_auth_request(const uint8_t *body, size_t len, struct pg_auth_request *out);

/* ---- client messages we look inside ---- */
/* 'p' during SASL: SASLInitialResponse (mechanism, int32 len, data). */
int parse_sasl_initial(const uint8_t *body, size_t len, const char **mech,
                       const uint8_t **data, size_t *data_len);
/* 'P': statement name, then the rest (query, param types) as an opaque tail. */
int parse_parse_msg(const uint8_t *body, size_t len, const char **stmt,
                    const uint8_t **tail, size_t *tail_len);
/* 'B': portal, statement, then the rest opaque. */
int parse_bind_msg(const uint8_t *body, size_t len, const char **portal, const char **stmt,
                   const uint8_t **tail, size_t *tail_len);
/* Parameter n (1-based) of a Bind's tail (what parse_bind_msg leaves):
 * its bytes (NULL for SQL NULL or empty), length (-1 = NULL) and format
 * code (0 text, 1 binary).  0, or -1 when the message does not hold it. */
int bind_param(const uint8_t *tail, size_t tail_len, int n, const uint8_t **value, int32_t *value_len, int *format);
/* 'D' / 'C': kind ('S' or 'P') and name. */
int parse_describe_close(const uint8_t *body, size_t len, char *kind, const char **name);

/* ---- builders ---- */
struct pg_buf {
	uint8_t *data;
	size_t len, cap;
	size_t msg_start; /* offset of the message being built */
	bool oom;
};
void buf_init(struct pg_buf *b);
void buf_free(struct pg_buf *b);
void buf_reset(struct pg_buf *b);
void buf_put_bytes(struct pg_buf *b, const void *p, size_t n);
void buf_put_byte(struct pg_buf *b, uint8_t v);
void buf_put_int16(struct pg_buf *b, int16_t v);
void buf_put_int32(struct pg_buf *b, int32_t v);
void buf_put_str(struct pg_buf *b, const char *s); /* with NUL */
/* type 0 starts a startup-style packet with no type byte. */
void msg_begin(struct pg_buf *b, uint8_t type);
void msg_end(struct pg_buf *b); /* patches the length word */

void build_error(struct pg_buf *b, const char *severity, const char *sqlstate,
                 const char *message, const char *detail, const char *hint);
void build_notice(struct pg_buf *b, const char *sqlstate, const char *message);
void build_auth(struct pg_buf *b, int32_t code, const void *extra, size_t extra_len);
void build_auth_sasl(struct pg_buf *b); /* offers SCRAM-SHA-256 */
void build_parameter_status(struct pg_buf *b, const char *name, const char *value);
void build_backend_key(struct pg_buf *b, uint32_t pid, uint32_t key);
void build_ready(struct pg_buf *b, char txn_status);
void build_empty(struct pg_buf *b, uint8_t type); /* ParseComplete etc. */
void build_query(struct pg_buf *b, const char *sql);
void build_startup(struct pg_buf *b, const char *const *names, const char *const *values, int n);
void build_ssl_request(struct pg_buf *b);
void build_cancel(struct pg_buf *b, uint32_t pid, uint32_t key);
void build_password(struct pg_buf *b, const char *password);
void build_sasl_initial(struct pg_buf *b, const char *mech, const char *data, size_t len);
void build_sasl_response(struct pg_buf *b, const char *data, size_t len);
void build_negotiate_version(struct pg_buf *b, uint32_t newest_minor,
                             const char *const *unknown_opts, int n);
/* Parse / Bind / Describe / Close with a replaced statement name. */
void build_parse_named(struct pg_buf *b, const char *stmt, const uint8_t *tail, size_t tail_len);
/* A Parse or Query whose statement text gets `prefix` in front (a plan
 * hint): tail is the Parse body after the name, body the Query's text with
 * its NUL. */
void build_parse_prefixed(struct pg_buf *b, const char *stmt, const void *prefix, size_t prefix_len,
                          const uint8_t *tail, size_t tail_len);
void build_query_prefixed(struct pg_buf *b, const void *prefix, size_t prefix_len, const uint8_t *body,
                          size_t body_len);
void build_bind_named(struct pg_buf *b, const char *portal, const char *stmt,
                      const uint8_t *tail, size_t tail_len);
void build_describe_close(struct pg_buf *b, uint8_t type, char kind, const char *name);
/* build_bind_named / build_describe_close into caller memory of exactly the
 * size the _size function gives, so a rewrite can write straight into an
 * output buffer without allocating; lengths exclude the NULs. */
size_t bind_named_size(size_t portal_len, size_t stmt_len, size_t tail_len);
void put_bind_named(uint8_t *dst, const char *portal, size_t portal_len, const char *stmt, size_t stmt_len,
                    const uint8_t *tail, size_t tail_len);
/* The head of that Bind alone (type, length, portal, statement), for a
 * caller that sends the tail from where it already is; returns its length,
 * bind_named_size(portal_len, stmt_len, 0). */
size_t put_bind_named_head(uint8_t *dst, const char *portal, size_t portal_len, const char *stmt, size_t stmt_len,
                           size_t tail_len);
size_t describe_close_size(size_t name_len);
void put_describe_close(uint8_t *dst, uint8_t type, char kind, const char *name, size_t name_len);

/* Does this backend message end the response to a client request of the given
 * type?  (Parse->'1', Bind->'2', Close->'3', Describe->'T'/'n', Execute->
 * 'C'/'I'/'s', Sync/Query/FunctionCall->'Z'.)  Errors are handled by callers. */
bool response_completes(uint8_t request_type, uint8_t response_type);

#endif
