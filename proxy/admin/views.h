/*
 * The admin layer's views (views.c: JSON, metrics.c: Prometheus text):
 * read-only renderings of the data and control planes' state.  Nothing
 * here changes state; http.c decides what to call.
 */
#ifndef VG_PROXY_ADMIN_VIEWS_H
#define VG_PROXY_ADMIN_VIEWS_H

#include "conf/config.h"
#include "protocol/json.h"

struct rebuild_job;
struct build_plan;
struct route_state;
struct evbuffer;

void view_job(struct json *j, const char *key, const struct rebuild_job *job);
void view_plan(struct json *j, const char *key, const struct build_plan *p);
void view_jobs(struct json *j, const char *key, const char *index_name /* NULL = all */);
void view_index(struct json *j, const struct vg_managed_index *mi); /* with its latest job and drift */
void view_route(struct json *j, const char *key, const struct route_state *r);
void view_routes(struct json *j, const char *key);
void view_backends(struct json *j, const char *key);
void view_metrics(struct evbuffer *out);
/* Append a Prometheus label value with \\, \" and \n escaped (metrics.c). */
void prom_label_value(struct evbuffer *out, const char *value);

#endif
