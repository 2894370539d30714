/*
 * flowdefs.h - a process's flow definitions by version (flowdef.h): the
 * running config's own, and views of the older ones its sagas started
 * with, fetched from the store once and kept. The master publishes its
 * config's definitions (defs_publish) before a saga of theirs can be
 * written; whoever drives a saga asks defs_lookup for the config to drive
 * it with and, on a miss, defs_fetch, then asks again.
 */
#ifndef SAGAD_FLOWDEFS_H
#define SAGAD_FLOWDEFS_H

#include "config.h"
#include "store.h"

struct defs;

struct defs	*defs_new(struct store *, struct config *);
void		 defs_free(struct defs *);
/* A reload: views made on the old config are dropped (drivers keep theirs). */
void		 defs_set_config(struct defs *, struct config *);

/*
 * The config to drive a saga of flow and version with, and its flow: the
 * running config when its flow has that version (or version is NULL or
 * empty: a saga written before versions), else a view fetched before.
 * NULL on a miss: defs_fetch, then ask again.
 */
struct config	*defs_lookup(struct defs *, const char *flow,
		    const char *version, const struct config_flow **);

/*
 * Fetches a version into the cache. cb gets 0, or -1 with a sentence (the
 * store is away: try later; or the version is unknown to it: the saga's
 * definition is lost, nothing can be called for it).
 */
typedef void	 defs_cb(int rc, int unknown, const char *err, void *arg);
void		 defs_fetch(struct defs *, const char *version, defs_cb *,
		    void *);

/*
 * 1 once the store has answered DEFS_LOST_AFTER fetches of version that it
 * has no such definition: whoever drives such a saga drives it as one
 * whose flow changed (nothing can be called for it).
 */
#define DEFS_LOST_AFTER	3
int		 defs_is_lost(struct defs *, const char *version);

/* Stores every flow of the running config; 1 once all are stored. */
int		 defs_publish(struct defs *);

#endif
