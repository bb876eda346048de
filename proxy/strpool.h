/*
 * Strings that many connections hold the same copy of (strpool.c): session
 * variable values, user and database names, route and backend names.  Each
 * distinct string is stored once with a reference count, so an idle client
 * costs a pointer per string instead of an allocation, and equal pooled
 * strings are equal pointers.
 */
#ifndef VG_PROXY_STRPOOL_H
#define VG_PROXY_STRPOOL_H

#include <stddef.h>

/* The pooled copy of s with one more reference (NULL when out of memory). */
const char *strpool_get(const char *s);
/* One more reference to a string strpool_get or _pin returned. */
const char *strpool_ref(const char *pooled);
/* Drop a reference; the last one frees the string.  NULL is ignored. */
void strpool_put(const char *pooled);
/* A pooled copy that is never freed: for names from the configuration
 * (a bounded set) that a connection may keep across a reload. */
const char *strpool_pin(const char *s);
/* Distinct strings held (tests, metrics). */
size_t strpool_count(void);

#endif
