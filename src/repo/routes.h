/* routes.h: the table of per-team routes (config.json "routes") that HTTP threads look request
 * paths up in.
 *
 * DESIGN
 * The repository builds the whole table whenever what it serves changes (a scan, a load
 * request, a version switch) and publishes it in one step; a published table is never
 * modified. Lookups take no lock and never wait: a reader announces itself in one of two
 * counters (chosen by the parity of the table generation), reads the current table, copies the
 * route out and leaves. The publisher swaps the table pointer, advances the generation, and
 * waits until the counter of the previous generation is back to zero before it frees the old
 * table. A reader holds a table for a binary search and a copy, so the publisher (the
 * repository's manager thread, never an HTTP thread) waits for well under a microsecond, and
 * no reader ever waits for a publisher.
 *
 * Each route has request counters that live apart from the tables: a new table takes over the
 * counters of the same path and model from the one it replaces, so they survive republishing
 * (they start again when a route moves to another model, or disappears and comes back).
 * A lookup hands the request a reference to them; the request counts into them when it is
 * answered, on whichever thread that happens.
 *
 * Threads: lookups and lists on any thread; publish on one thread at a time (the repository
 * calls it from its manager thread, and from create before that thread starts).
 */
#ifndef INFERD_REPO_ROUTES_H
#define INFERD_REPO_ROUTES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/config.h"
#include "util/error.h"

typedef struct inferd_route_stats {
    _Atomic int refs;
    _Atomic uint64_t success; /* requests through the route answered 200 */
    _Atomic uint64_t failure; /* requests through the route answered with an error */
} inferd_route_stats;

/* One route: the model it belongs to and what config.json says of it. */
typedef struct inferd_route {
    char model[128];
    inferd_config_route spec;
    inferd_route_stats *stats; /* from lookup or list: a reference, released by the caller */
} inferd_route;

typedef struct inferd_routes inferd_routes;

/* An empty table. On success *out is the caller's (inferd_routes_destroy). Any thread. */
int inferd_routes_create(inferd_routes **out, inferd_error *err);

/* Frees the table; no lookup may be running. Counters still referenced by requests live on
 * until released. NULL does nothing. */
void inferd_routes_destroy(inferd_routes *rt);

/* Replaces the table with routes[0..n) (copied; their stats fields are ignored). Paths must
 * be unique (the caller resolves clashes). Waits for the lookups still reading the table it
 * replaces. Returns 0, or INFERD_EINTERNAL (out of memory; the old table stays). One thread
 * at a time; never an HTTP thread. */
int inferd_routes_publish(inferd_routes *rt, const inferd_route *routes, size_t n,
                          inferd_error *err);

/* Looks path up: returns 1 with *out filled (out->stats holds a new reference, released with
 * inferd_route_stats_release), or 0 when no route has that path. Lock-free; any thread. */
int inferd_routes_lookup(inferd_routes *rt, const char *path, inferd_route *out);

/* Copies the current table, sorted by path, each entry with a stats reference: release each,
 * then inferd_free(*out). Returns 0 or INFERD_EINTERNAL. Lock-free; any thread. */
int inferd_routes_list(inferd_routes *rt, inferd_route **out, size_t *n, inferd_error *err);

/* Drops a reference on route counters. NULL does nothing. Any thread. */
void inferd_route_stats_release(inferd_route_stats *s);

#endif
