/*
 * Cancel requests (cancel.c): a client's CancelRequest carries the key
 * vecgate made up for it; this forwards a real CancelRequest to the backend
 * process its server connection runs on.
 */
#ifndef VG_PROXY_CANCEL_H
#define VG_PROXY_CANCEL_H

struct server_conn;

void cancel_forward(const struct server_conn *s);

#endif
