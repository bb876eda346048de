/*
 * PostgreSQL v3 framing, field readers and message builders.
 *
 * The proxy's hot path only needs message headers (pkt_peek_header) to move
 * bodies from one socket to the other; everything else here is for the few
 * messages vecgate must understand or invent: startup, authentication, errors,
 * parameter status and the statement names in the extended protocol.
 */
#include "protocol/pgproto.h"

#include <stdlib.h>
#include <string.h>

enum pkt_status pkt_peek_header(const uint8_t *buf, size_t avail, size_t max_len,
                                uint8_t *type, uint32_t *total)
{
	/* *type and *total are always set, so that a caller reporting a refused
	 * message never prints an uninitialised length */
	*type = avail > 0 ? buf[0] : 0;
	*total = 0;
	if (avail < PG_HDR_LEN)
		return PKT_NEED_MORE;
	uint32_t len = pg_be32(buf + 1);
	/* the length as announced (saturated: 1 + 0xffffffff does not fit) */
	*total = len < UINT32_MAX ? len + 1 : UINT32_MAX;
	if (len < 4)
		return PKT_BAD_LENGTH;
	if (len > max_len || len > 0x7fffffffu - 1)
		return PKT_TOO_LARGE;
	return PKT_OK;
}

enum pkt_status pkt_peek_startup(const uint8_t *buf, size_t avail, size_t max_len, uint32_t *total)
{
	*total = 0;
	if (avail < 4)
		return PKT_NEED_MORE;
	uint32_t len = pg_be32(buf);
	*total = len; /* set even when refused, for the caller's message */
	if (len < 8)
		return PKT_BAD_LENGTH;
	if (len > max_len)
		return PKT_TOO_LARGE;
	*total = len;
	return PKT_OK;
}

/* ---- readers ---- */

void rd_init(struct pg_reader *rd, const uint8_t *p, size_t len)
{
	rd->p = p;
	rd->len = len;
	rd->pos = 0;
	rd->err = false;
}

size_t rd_remaining(const struct pg_reader *rd)
{
	return rd->err ? 0 : rd->len - rd->pos;
}

const uint8_t *rd_bytes(struct pg_reader *rd, size_t n)
{
	if (rd->err || rd->len - rd->pos < n) {
		rd->err = true;
		return NULL;
	}
	const uint8_t *p = rd->p + rd->pos;
	rd->pos += n;
	return p;
}

uint8_t rd_byte(struct pg_reader *rd)
{
	const uint8_t *p = rd_bytes(rd, 1);
	return p ? p[0] : 0;
}

int16_t rd_int16(struct pg_reader *rd)
{
	const uint8_t *p = rd_bytes(rd, 2);
	return p ? pg_be16s(p) : 0;
}

int32_t rd_int32(struct pg_reader *rd)
{
	const uint8_t *p = rd_bytes(rd, 4);
	return p ? (int32_t)pg_be32(p) : 0;
}

const char *rd_str(struct pg_reader *rd)
{
	if (rd->err)
		return "";
	const uint8_t *start = rd->p + rd->pos;
	const uint8_t *nul = memchr(start, 0, rd->len - rd->pos);
	if (!nul) {
		rd->err = true;
		return "";
	}
	rd->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

/* ---- startup ---- */

void startup_parse(const uint8_t *pkt, size_t len, struct startup_packet *out)
{
	memset(out, 0, sizeof(*out));
	struct pg_reader rd;
	rd_init(&rd, pkt, len);
	uint32_t plen = (uint32_t)rd_int32(&rd);
	uint32_t code = (uint32_t)rd_int32(&rd);
	if (rd.err || plen != len) {
		out->kind = STARTUP_MALFORMED;
		out->error = "invalid startup packet length";
		return;
	}
	out->version = code;
	if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST) {
		out->kind = code == PG_SSL_REQUEST ? STARTUP_SSL : STARTUP_GSSENC;
		if (len != 8) {
			out->kind = STARTUP_MALFORMED;
			out->error = "invalid length of encryption request packet";
		}
		return;
	}
	if (code == PG_CANCEL_REQUEST) {
		out->kind = STARTUP_CANCEL;
		out->cancel_pid = (uint32_t)rd_int32(&rd);
		out->cancel_key = (uint32_t)rd_int32(&rd);
		if (rd.err || len != 16) {
			out->kind = STARTUP_MALFORMED;
			out->error = "invalid length of cancel request packet";
		}
		return;
	}
	if ((code >> 16) != 3) {
		out->kind = STARTUP_BAD_VERSION;
		return;
	}
	out->kind = STARTUP_NORMAL;
	/* name/value pairs, terminated by an empty name */
	for (;;) {
		const char *name = rd_str(&rd);
		if (rd.err) {
			out->kind = STARTUP_MALFORMED;
			out->error = "invalid startup packet layout: expected terminator as last byte";
			return;
		}
		if (name[0] == '\0')
			break;
		const char *value = rd_str(&rd);
		if (rd.err) {
			out->kind = STARTUP_MALFORMED;
			out->error = "invalid startup packet layout: missing value";
			return;
		}
		if (out->n_params == STARTUP_MAX_PARAMS) {
			out->kind = STARTUP_MALFORMED;
			out->error = "too many startup parameters";
			return;
		}
		out->params[out->n_params].name = name;
		out->params[out->n_params].value = value;
		out->n_params++;
	}
	if (rd_remaining(&rd) != 0) {
		out->kind = STARTUP_MALFORMED;
		out->error = "invalid startup packet layout: expected terminator as last byte";
		return;
	}
	out->user = startup_get(out, "user");
	out->database = startup_get(out, "database");
	if (!out->user || !out->user[0]) {
		out->kind = STARTUP_MALFORMED;
		out->error = "no PostgreSQL user name specified in startup packet";
		return;
	}
	if (!out->database || !out->database[0])
		out->database = out->user;
}

const char *startup_get(const struct startup_packet *sp, const char *name)
{
	for (int i = 0; i < sp->n_params; i++)
		if (strcmp(sp->params[i].name, name) == 0)
			return sp->params[i].value;
	return NULL;
}

/* ---- server messages ---- */

int parse_error_fields(const uint8_t *body, size_t len, struct pg_error_fields *out)
{
	memset(out, 0, sizeof(*out));
	struct pg_reader rd;
	rd_init(&rd, body, len);
	for (;;) {
		uint8_t code = rd_byte(&rd);
		if (rd.err)
			return -1;
		if (code == 0)
			break;
		const char *val = rd_str(&rd);
		if (rd.err)
			return -1;
		switch (code) {
		case 'V': out->severity = val; break;
		case 'S': if (!out->severity) out->severity = val; break;
		case 'C': out->sqlstate = val; break;
		case 'M': out->message = val; break;
		case 'D': out->detail = val; break;
		case 'H': out->hint = val; break;
		default: break;
		}
	}
	return 0;
}

int parse_parameter_status(const uint8_t *body, size_t len, const char **name, const char **value)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	*name = rd_str(&rd);
	*value = rd_str(&rd);
	return rd.err || rd_remaining(&rd) ? -1 : 0;
}

int parse_auth_request(const uint8_t *body, size_t len, struct pg_auth_request *out)
{
	memset(out, 0, sizeof(*out));
	struct pg_reader rd;
	rd_init(&rd, body, len);
	out->code = rd_int32(&rd);
	if (rd.err)
		return -1;
	switch (out->code) {
	case 5: {
		const uint8_t *salt = rd_bytes(&rd, 4);
		if (!salt)
			return -1;
		memcpy(out->md5_salt, salt, 4);
		break;
	}
	case 10:
		for (;;) {
			const char *mech = rd_str(&rd);
			if (rd.err)
				return -1;
			if (!mech[0])
				break;
			if (strcmp(mech, "SCRAM-SHA-256") == 0)
				out->offers_scram = true;
		}
		break;
	case 11:
	case 12:
		out->data = body + rd.pos;
		out->data_len = rd_remaining(&rd);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- client messages ---- */

int parse_sasl_initial(const uint8_t *body, size_t len, const char **mech,
                       const uint8_t **data, size_t *data_len)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	*mech = rd_str(&rd);
	int32_t n = rd_int32(&rd);
	if (rd.err)
		return -1;
	if (n < 0) {
		*data = NULL;
		*data_len = 0;
		return rd_remaining(&rd) ? -1 : 0;
	}
	*data = rd_bytes(&rd, (size_t)n);
	*data_len = (size_t)n;
	return rd.err || rd_remaining(&rd) ? -1 : 0;
}

int parse_parse_msg(const uint8_t *body, size_t len, const char **stmt,
                    const uint8_t **tail, size_t *tail_len)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	*stmt = rd_str(&rd);
	if (rd.err)
		return -1;
	*tail = body + rd.pos;
	*tail_len = rd_remaining(&rd);
	/* the tail must at least hold the query string and the param count */
	(void)rd_str(&rd);
	(void)rd_int16(&rd);
	return rd.err ? -1 : 0;
}

int parse_bind_msg(const uint8_t *body, size_t len, const char **portal, const char **stmt,
                   const uint8_t **tail, size_t *tail_len)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	*portal = rd_str(&rd);
	*stmt = rd_str(&rd);
	if (rd.err)
		return -1;
	*tail = body + rd.pos;
	*tail_len = rd_remaining(&rd);
	return 0;
}

int bind_param(const uint8_t *tail, size_t tail_len, int n, const uint8_t **value, int32_t *value_len, int *format)
{
	struct pg_reader rd;
	rd_init(&rd, tail, tail_len);
	int nfmt = rd_int16(&rd);
	if (rd.err || nfmt < 0 || n < 1)
		return -1;
	int fmt = 0;
	for (int i = 0; i < nfmt; i++) {
		int f = rd_int16(&rd);
		if (nfmt == 1 || i == n - 1)
			fmt = f; /* one code applies to all, else one per parameter */
	}
	int nparams = rd_int16(&rd);
	if (rd.err || n > nparams || (nfmt > 1 && nfmt != nparams))
		return -1;
	for (int i = 1; i <= n; i++) {
		int32_t l = rd_int32(&rd);
		const uint8_t *v = l > 0 ? rd_bytes(&rd, (size_t)l) : NULL;
		if (rd.err || l < -1)
			return -1;
		if (i == n) {
			*value = v;
			*value_len = l;
			*format = fmt;
			return 0;
		}
	}
	return -1;
}

int parse_describe_close(const uint8_t *body, size_t len, char *kind, const char **name)
{
	struct pg_reader rd;
	rd_init(&rd, body, len);
	*kind = (char)rd_byte(&rd);
	*name = rd_str(&rd);
	if (rd.err || rd_remaining(&rd) || (*kind != 'S' && *kind != 'P'))
		return -1;
	return 0;
}

/* ---- builders ---- */

void buf_init(struct pg_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void buf_free(struct pg_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void buf_reset(struct pg_buf *b)
{
	b->len = 0;
	b->msg_start = 0;
	b->oom = false;
}

static bool buf_reserve(struct pg_buf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->len + extra <= b->cap)
		return true;
	size_t ncap = b->cap ? b->cap * 2 : 256;
	while (ncap < b->len + extra)
		ncap *= 2;
	uint8_t *n = realloc(b->data, ncap);
	if (!n) {
		b->oom = true;
		return false;
	}
	b->data = n;
	b->cap = ncap;
	return true;
}

void buf_put_bytes(struct pg_buf *b, const void *p, size_t n)
{
	if (!n || !buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_put_byte(struct pg_buf *b, uint8_t v)
{
	buf_put_bytes(b, &v, 1);
}

void buf_put_int16(struct pg_buf *b, int16_t v)
{
	uint8_t x[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
	buf_put_bytes(b, x, 2);
}

void buf_put_int32(struct pg_buf *b, int32_t v)
{
	uint32_t u = (uint32_t)v;
	uint8_t x[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
	buf_put_bytes(b, x, 4);
}

void buf_put_str(struct pg_buf *b, const char *s)
{
	buf_put_bytes(b, s, strlen(s) + 1);
}

void msg_begin(struct pg_buf *b, uint8_t type)
{
	if (type)
		buf_put_byte(b, type);
	b->msg_start = b->len;
	buf_put_int32(b, 0);
}

void msg_end(struct pg_buf *b)
{
	if (b->oom)
		return;
	uint32_t len = (uint32_t)(b->len - b->msg_start);
	uint8_t *p = b->data + b->msg_start;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static void put_error_fields(struct pg_buf *b, const char *severity, const char *sqlstate,
                             const char *message, const char *detail, const char *hint)
{
	buf_put_byte(b, 'S');
	buf_put_str(b, severity);
	buf_put_byte(b, 'V');
	buf_put_str(b, severity);
	buf_put_byte(b, 'C');
	buf_put_str(b, sqlstate);
	buf_put_byte(b, 'M');
	buf_put_str(b, message);
	if (detail) {
		buf_put_byte(b, 'D');
		buf_put_str(b, detail);
	}
	if (hint) {
		buf_put_byte(b, 'H');
		buf_put_str(b, hint);
	}
	buf_put_byte(b, 0);
}

void build_error(struct pg_buf *b, const char *severity, const char *sqlstate,
                 const char *message, const char *detail, const char *hint)
{
	msg_begin(b, 'E');
	put_error_fields(b, severity, sqlstate, message, detail, hint);
	msg_end(b);
}

void build_notice(struct pg_buf *b, const char *sqlstate, const char *message)
{
	msg_begin(b, 'N');
	put_error_fields(b, "NOTICE", sqlstate, message, NULL, NULL);
	msg_end(b);
}

void build_auth(struct pg_buf *b, int32_t code, const void *extra, size_t extra_len)
{
	msg_begin(b, 'R');
	buf_put_int32(b, code);
	buf_put_bytes(b, extra, extra_len);
	msg_end(b);
}

void build_auth_sasl(struct pg_buf *b)
{
	msg_begin(b, 'R');
	buf_put_int32(b, 10);
	buf_put_str(b, "SCRAM-SHA-256");
	buf_put_byte(b, 0);
	msg_end(b);
}

void build_parameter_status(struct pg_buf *b, const char *name, const char *value)
{
	msg_begin(b, 'S');
	buf_put_str(b, name);
	buf_put_str(b, value);
	msg_end(b);
}

void build_backend_key(struct pg_buf *b, uint32_t pid, uint32_t key)
{
	msg_begin(b, 'K');
	buf_put_int32(b, (int32_t)pid);
	buf_put_int32(b, (int32_t)key);
	msg_end(b);
}

void build_ready(struct pg_buf *b, char txn_status)
{
	msg_begin(b, 'Z');
	buf_put_byte(b, (uint8_t)txn_status);
	msg_end(b);
}

void build_empty(struct pg_buf *b, uint8_t type)
{
	msg_begin(b, type);
	msg_end(b);
}

void build_query(struct pg_buf *b, const char *sql)
{
	msg_begin(b, 'Q');
	buf_put_str(b, sql);
	msg_end(b);
}

void build_startup(struct pg_buf *b, const char *const *names, const char *const *values, int n)
{
	msg_begin(b, 0);
	buf_put_int32(b, (int32_t)PG_PROTO_V3);
	for (int i = 0; i < n; i++) {
		buf_put_str(b, names[i]);
		buf_put_str(b, values[i]);
	}
	buf_put_byte(b, 0);
	msg_end(b);
}

void build_ssl_request(struct pg_buf *b)
{
	msg_begin(b, 0);
	buf_put_int32(b, (int32_t)PG_SSL_REQUEST);
	msg_end(b);
}

void build_cancel(struct pg_buf *b, uint32_t pid, uint32_t key)
{
	msg_begin(b, 0);
	buf_put_int32(b, (int32_t)PG_CANCEL_REQUEST);
	buf_put_int32(b, (int32_t)pid);
	buf_put_int32(b, (int32_t)key);
	msg_end(b);
}

void build_password(struct pg_buf *b, const char *password)
{
	msg_begin(b, 'p');
	buf_put_str(b, password);
	msg_end(b);
}

void build_sasl_initial(struct pg_buf *b, const char *mech, const char *data, size_t len)
{
	msg_begin(b, 'p');
	buf_put_str(b, mech);
	buf_put_int32(b, (int32_t)len);
	buf_put_bytes(b, data, len);
	msg_end(b);
}

void build_sasl_response(struct pg_buf *b, const char *data, size_t len)
{
	msg_begin(b, 'p');
	buf_put_bytes(b, data, len);
	msg_end(b);
}

void build_negotiate_version(struct pg_buf *b, uint32_t newest_minor,
                             const char *const *unknown_opts, int n)
{
	msg_begin(b, 'v');
	buf_put_int32(b, (int32_t)((3u << 16) | newest_minor));
	buf_put_int32(b, n);
	for (int i = 0; i < n; i++)
		buf_put_str(b, unknown_opts[i]);
	msg_end(b);
}

void build_parse_named(struct pg_buf *b, const char *stmt, const uint8_t *tail, size_t tail_len)
{
	build_parse_prefixed(b, stmt, NULL, 0, tail, tail_len);
}

void build_parse_prefixed(struct pg_buf *b, const char *stmt, const void *prefix, size_t prefix_len,
                          const uint8_t *tail, size_t tail_len)
{
	msg_begin(b, 'P');
	buf_put_str(b, stmt);
	buf_put_bytes(b, prefix, prefix_len);
	buf_put_bytes(b, tail, tail_len);
	msg_end(b);
}

void build_query_prefixed(struct pg_buf *b, const void *prefix, size_t prefix_len, const uint8_t *body,
                          size_t body_len)
{
	msg_begin(b, 'Q');
	buf_put_bytes(b, prefix, prefix_len);
	buf_put_bytes(b, body, body_len);
	msg_end(b);
}

void build_bind_named(struct pg_buf *b, const char *portal, const char *stmt,
                      const uint8_t *tail, size_t tail_len)
{
	msg_begin(b, 'B');
	buf_put_str(b, portal);
	buf_put_str(b, stmt);
	buf_put_bytes(b, tail, tail_len);
	msg_end(b);
}

void build_describe_close(struct pg_buf *b, uint8_t type, char kind, const char *name)
{
	msg_begin(b, type);
	buf_put_byte(b, (uint8_t)kind);
	buf_put_str(b, name);
	msg_end(b);
}

static uint8_t *put_header(uint8_t *p, uint8_t type, size_t total)
{
	uint32_t len = (uint32_t)(total - 1);
	p[0] = type;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	return p + PG_HDR_LEN;
}

static uint8_t *put_cstr(uint8_t *p, const char *s, size_t len)
{
	memcpy(p, s, len);
	p[len] = 0;
	return p + len + 1;
}

size_t bind_named_size(size_t portal_len, size_t stmt_len, size_t tail_len)
{
	return PG_HDR_LEN + portal_len + 1 + stmt_len + 1 + tail_len;
}

size_t put_bind_named_head(uint8_t *dst, const char *portal, size_t portal_len, const char *stmt, size_t stmt_len,
                           size_t tail_len)
{
	uint8_t *p = put_header(dst, 'B', bind_named_size(portal_len, stmt_len, tail_len));
	p = put_cstr(p, portal, portal_len);
	p = put_cstr(p, stmt, stmt_len);
	return (size_t)(p - dst);
}

void put_bind_named(uint8_t *dst, const char *portal, size_t portal_len, const char *stmt, size_t stmt_len,
                    const uint8_t *tail, size_t tail_len)
{
	size_t head = put_bind_named_head(dst, portal, portal_len, stmt, stmt_len, tail_len);
	if (tail_len)
		memcpy(dst + head, tail, tail_len);
}

size_t describe_close_size(size_t name_len)
{
	return PG_HDR_LEN + 1 + name_len + 1;
}

void put_describe_close(uint8_t *dst, uint8_t type, char kind, const char *name, size_t name_len)
{
	uint8_t *p = put_header(dst, type, describe_close_size(name_len));
	*p++ = (uint8_t)kind;
	put_cstr(p, name, name_len);
}

bool response_completes(uint8_t request_type, uint8_t response_type)
{
	switch (request_type) {
	case 'P': return response_type == '1';
	case 'B': return response_type == '2';
	case 'C': return response_type == '3';
	case 'D': return response_type == 'T' || response_type == 'n';
	case 'E': return response_type == 'C' || response_type == 'I' || response_type == 's';
	case 'S':
	case 'Q':
	case 'F': return response_type == 'Z';
	default: return false;
	}
}

bool pg_frontend_type_valid(uint8_t type)
{
	switch (type) {
	case 'Q': case 'P': case 'B': case 'E': case 'D': case 'C': case 'S': case 'H':
	case 'F': case 'd': case 'c': case 'f': case 'X':
		return true;
	default:
		return false;
	}
}

bool pg_severity_fatal(const char *severity)
{
	return severity && (!strcmp(severity, "FATAL") || !strcmp(severity, "PANIC"));
}

bool pg_sqlstate_server_outage(const char *sqlstate)
{
	return sqlstate && (!strncmp(sqlstate, "57P", 3) || !strncmp(sqlstate, "08", 2) || !strcmp(sqlstate, "25006") ||
	                    !strcmp(sqlstate, "53300"));
}
