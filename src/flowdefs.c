/*
 * flowdefs.c - a process's flow definitions by version (see flowdefs.h).
 * A few views at most live here: one per older version a saga in flight
 * still runs, dropped at the next reload (a driver holds its own
 * reference on the view it drives with).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "flowdef.h"
#include "flowdefs.h"
#include "util.h"

struct view {
	LIST_ENTRY(view)	 entry;
	char			 version[CONFIG_VERSION_LEN + 1];
	struct config		*cfg;
};

struct miss {
	LIST_ENTRY(miss)	 entry;
	char			 version[CONFIG_VERSION_LEN + 1];
	int			 n;
};

struct fetch {
	LIST_ENTRY(fetch)	 entry;
	struct defs		*defs;		/* NULL once the defs are freed */
	char			*version;
	defs_cb			*cb;
	void			*arg;
};

struct defs {
	struct store		*store;
	struct config		*cfg;
	LIST_HEAD(, view)	 views;
	LIST_HEAD(, fetch)	 fetches;
	LIST_HEAD(, miss)	 misses;
	int			 published;	/* stored: every flow of cfg */
	int			 publishing;	/* puts in flight */
	int			 put_failed;
	int			 dead;		/* freed once its puts answer */
	int			 stale;		/* puts in flight are of an old cfg */
};

struct defs *
defs_new(struct store *st, struct config *cfg)
{
	struct defs *d = util_xcalloc(1, sizeof(*d));

	d->store = st;
	d->cfg = config_ref(cfg);
	LIST_INIT(&d->views);
	LIST_INIT(&d->fetches);
	LIST_INIT(&d->misses);
	return d;
}

static void
views_drop(struct defs *d)
{
	struct view *v;

	while ((v = LIST_FIRST(&d->views)) != NULL) {
		LIST_REMOVE(v, entry);
		config_free(v->cfg);
		free(v);
	}
}

void
defs_free(struct defs *d)
{
	struct fetch	*f;
	struct miss	*m;

	if (d == NULL)
		return;
	while ((f = LIST_FIRST(&d->fetches)) != NULL) {
		LIST_REMOVE(f, entry);
		f->defs = NULL;		/* its store callback frees it */
	}
	views_drop(d);
	while ((m = LIST_FIRST(&d->misses)) != NULL) {
		LIST_REMOVE(m, entry);
		free(m);
	}
	config_free(d->cfg);
	d->cfg = NULL;
	if (d->publishing > 0)
		d->dead = 1;	/* put_done frees it */
	else
		free(d);
}

void
defs_set_config(struct defs *d, struct config *cfg)
{
	views_drop(d);
	config_free(d->cfg);
	d->cfg = config_ref(cfg);
	d->published = 0;
	d->stale = d->publishing > 0;
}

struct config *
defs_lookup(struct defs *d, const char *flow, const char *version,
    const struct config_flow **fp)
{
	const struct config_flow	*f = config_flow_find(d->cfg, flow);
	struct view			*v;

	if (version == NULL || *version == '\0' || (f != NULL &&
	    strcmp(f->version, version) == 0)) {
		*fp = f;
		return d->cfg;
	}
	LIST_FOREACH(v, &d->views, entry)
		if (strcmp(v->version, version) == 0) {
			*fp = &v->cfg->flows[0];
			return v->cfg;
		}
	*fp = NULL;
	return NULL;
}

static void
missed(struct defs *d, const char *version)
{
	struct miss *m;

	LIST_FOREACH(m, &d->misses, entry)
		if (strcmp(m->version, version) == 0) {
			m->n++;
			return;
		}
	m = util_xcalloc(1, sizeof(*m));
	snprintf(m->version, sizeof(m->version), "%s", version);
	m->n = 1;
	LIST_INSERT_HEAD(&d->misses, m, entry);
}

int
defs_is_lost(struct defs *d, const char *version)
{
	struct miss *m;

	LIST_FOREACH(m, &d->misses, entry)
		if (strcmp(m->version, version) == 0)
			return m->n >= DEFS_LOST_AFTER;
	return 0;
}

static void
fetched(enum store_result res, char *const *ids, size_t n, const char *err,
    void *arg)
{
	struct fetch	*f = arg;
	struct defs	*d = f->defs;
	struct view	*v;
	uint8_t		*buf;
	size_t		 len;
	char		 why[SAGAD_ERRLEN], got[CONFIG_VERSION_LEN + 1];
	int		 rc = -1, unknown = 0;

	if (d == NULL)
		goto out;
	LIST_REMOVE(f, entry);
	if (res != STORE_OK) {
		snprintf(why, sizeof(why), "flow definition %s: %s", f->version,
		    err != NULL ? err : store_result_name(res));
	} else if (n == 0) {
		unknown = 1;
		snprintf(why, sizeof(why), "flow definition %s is not in the "
		    "store", f->version);
	} else if ((buf = flowdef_unhex(ids[0], &len)) == NULL) {
		unknown = 1;
		snprintf(why, sizeof(why), "flow definition %s: not hex",
		    f->version);
	} else {
		flowdef_version(buf, len, got);
		v = util_xcalloc(1, sizeof(*v));
		if (strcmp(got, f->version) != 0)
			snprintf(why, sizeof(why), "flow definition %s: its "
			    "bytes are version %s", f->version, got);
		else if ((v->cfg = flowdef_view(d->cfg, buf, len, why,
		    sizeof(why))) != NULL) {
			snprintf(v->version, sizeof(v->version), "%s", got);
			LIST_INSERT_HEAD(&d->views, v, entry);
			v = NULL;
			rc = 0;
		}
		if (rc == -1)
			unknown = 1;
		free(v);
		free(buf);
	}
	if (unknown)
		missed(d, f->version);
	f->cb(rc, unknown, rc == 0 ? NULL : why, f->arg);
out:
	free(f->version);
	free(f);
}

void
defs_fetch(struct defs *d, const char *version, defs_cb *cb, void *arg)
{
	struct fetch *f = util_xcalloc(1, sizeof(*f));

	f->defs = d;
	f->version = util_xstrdup(version);
	f->cb = cb;
	f->arg = arg;
	LIST_INSERT_HEAD(&d->fetches, f, entry);
	store_def_get(d->store, version, fetched, f);
}

static void
put_done(enum store_result res, size_t n, const char *err, void *arg)
{
	struct defs *d = arg;

	(void)n;
	(void)err;
	d->publishing--;
	if (d->dead) {
		if (d->publishing == 0)
			free(d);
		return;
	}
	if (res != STORE_OK)
		d->put_failed = 1;
	if (d->publishing == 0) {
		d->published = !d->put_failed && !d->stale;
		d->stale = 0;
	}
}

int
defs_publish(struct defs *d)
{
	if (d->published || d->publishing > 0)
		return d->published;
	if (!store_is_up(d->store))
		return 0;
	d->put_failed = 0;
	for (size_t i = 0; i < d->cfg->nflows; i++) {
		size_t	 len;
		uint8_t	*buf = flowdef_pack(d->cfg, &d->cfg->flows[i], &len);
		char	*hex = flowdef_hex(buf, len);

		d->publishing++;
		store_def_put(d->store, d->cfg->flows[i].version, hex,
		    put_done, d);
		free(hex);
		free(buf);
	}
	return 0;
}
