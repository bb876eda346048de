/*
 * Listening sockets (listener.c): TCP and unix sockets from listen:, each
 * accepted connection handed to client_accept.
 */
#ifndef VG_PROXY_LISTENER_H
#define VG_PROXY_LISTENER_H

int listeners_start(void);
void listeners_stop(void);

#endif
