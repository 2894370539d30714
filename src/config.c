/*
 * config.c - loads sagad.conf(5) into a struct config. Every key the file may
 * hold is one row of config_keys[] (config_keys.c): its type, default, bounds
 * and whether a SIGHUP may change it. Loading, defaults, validation and
 * freeing walk that one table here, as the reload check does there, so a new
 * key is one new row (Redis does the same with static_configs[]).
 *
 * libconfig does the syntax; this file does the meaning. It never logs: every
 * error found is collected, sorted by line and handed back in the caller's
 * buffer as "FILE:LINE: KEY: what was expected, got what". It is not the
 * place that decides what to do with a bad file; the process layer is. Nor
 * does it hold the rows or the checks of their values (config_keys.c), or
 * the scan for integer literals libconfig reads wrong (config_scan.c).
 */
#include "autoconf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "flowdef.h"
#include "config_int.h"
#include "util.h"
#include "work.h"

/* --- errors ---------------------------------------------------------------- */

static void
lerr_at(struct loader *l, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
lerr_at(struct loader *l, const char *file, int line, const char *fmt, ...)
{
	struct load_error	*e;
	va_list			 ap;
	char			 buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	l->errs = util_xrealloc(l->errs, (l->nerrs + 1) * sizeof(*l->errs));
	e = &l->errs[l->nerrs];
	e->file = util_xstrdup(file);
	e->line = line;
	e->seq = l->nerrs++;
	e->msg = util_xstrdup(buf);
}

/*
 * The file a setting came from. libconfig names included files as written
 * in @include; they are relative to the configuration's directory.
 */
static void
setting_file(struct loader *l, const config_setting_t *s, char *buf,
    size_t len)
{
	const char *f = s != NULL ? config_setting_source_file(s) : NULL;

	if (f == NULL || strcmp(f, l->path) == 0 || f[0] == '/')
		snprintf(buf, len, "%s", f != NULL ? f : l->path);
	else
		snprintf(buf, len, "%s/%s", l->dir, f);
}

/* An error about the setting s (or its group, when s is absent). */
static void
lerr(struct loader *l, const config_setting_t *s, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
lerr(struct loader *l, const config_setting_t *s, const char *key,
    const char *fmt, ...)
{
	va_list	ap;
	char	file[PATH_MAX + 64], buf[900];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	setting_file(l, s, file, sizeof(file));
	lerr_at(l, file, s != NULL ? (int)config_setting_source_line(s) : 0,
	    "%s: %s", key, buf);
}

static int
error_cmp(const void *a, const void *b)
{
	const struct load_error *x = a, *y = b;
	int c;

	if ((c = strcmp(x->file, y->file)) != 0)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Writes the errors into err, one per line, in file order. When they do not
 * all fit, the last line says how many were left out.
 */
static void
errors_flush(struct loader *l, char *err, size_t errlen)
{
	size_t	 used = 0, reserve = 48, i;
	char	 line[1400];
	int	 n;

	if (err == NULL || errlen == 0)
		return;
	err[0] = '\0';
	qsort(l->errs, l->nerrs, sizeof(*l->errs), error_cmp);
	if (errlen < reserve * 2)
		reserve = 0;
	for (i = 0; i < l->nerrs; i++) {
		struct load_error *e = &l->errs[i];

		if (e->line > 0)
			n = snprintf(line, sizeof(line), "%s%s:%d: %s",
			    i ? "\n" : "", e->file, e->line, e->msg);
		else
			n = snprintf(line, sizeof(line), "%s%s: %s",
			    i ? "\n" : "", e->file, e->msg);
		if (n < 0)
			break;
		if ((size_t)n >= sizeof(line))
			n = sizeof(line) - 1;
		if (used + n + (i + 1 < l->nerrs ? reserve : 0) >= errlen)
			break;
		memcpy(err + used, line, n + 1);
		used += n;
	}
	if (i < l->nerrs)
		snprintf(err + used, errlen - used, "%s(%zu more errors)",
		    used ? "\n" : "", l->nerrs - i);
}

/* --- reading values -------------------------------------------------------- */

/* What a setting holds, for "got ...". */
static const char *
describe(const config_setting_t *s, char *buf, size_t len)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		snprintf(buf, len, "%d", config_setting_get_int(s));
		break;
	case CONFIG_TYPE_INT64:
		snprintf(buf, len, "%lld", config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		snprintf(buf, len, "%g (a float)",
		    config_setting_get_float(s));
		break;
	case CONFIG_TYPE_STRING:
		snprintf(buf, len, "\"%.64s%s\"", config_setting_get_string(s),
		    strlen(config_setting_get_string(s)) > 64 ? "..." : "");
		break;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, len, "%s",
		    config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_GROUP:
		snprintf(buf, len, "a group { }");
		break;
	case CONFIG_TYPE_ARRAY:
		snprintf(buf, len, "an array [ ]");
		break;
	case CONFIG_TYPE_LIST:
		snprintf(buf, len, "a list ( )");
		break;
	default:
		snprintf(buf, len, "nothing");
	}
	return buf;
}

static int
read_int(struct loader *l, const config_setting_t *s, const char *key,
    const struct config_key *k, int *out)
{
	const struct overflow	*o;
	long long		 v;
	char			 got[128];

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		if ((o = config_overflow_find(l, s, key)) != NULL) {
			snprintf(got, sizeof(got), "%s", o->text);
			goto bad;
		}
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		break;
	default:
		describe(s, got, sizeof(got));
		goto bad;
	}
	if (v < k->min || v > k->max) {
		snprintf(got, sizeof(got), "%lld", v);
		goto bad;
	}
	*out = (int)v;
	return 0;
bad:
	lerr(l, s, key, "expected an integer from %lld to %lld, got %s",
	    k->min, k->max, got);
	return -1;
}

static const char *
read_string(struct loader *l, const config_setting_t *s, const char *key,
    const char *what)
{
	char got[128];

	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return config_setting_get_string(s);
	lerr(l, s, key, "expected %s, got %s", what, describe(s, got,
	    sizeof(got)));
	return NULL;
}

/* The name in names[] nearest to name, if near enough to be a typo. */
static const char *
nearest(const char *name, const char *const *names, size_t n)
{
	const char	*best = NULL;
	int		 bestd = INT_MAX, d;

	for (size_t i = 0; i < n; i++) {
		d = util_edit_distance(name, names[i]);
		if (d < bestd) {
			bestd = d;
			best = names[i];
		}
	}
	if (best != NULL && (bestd <= 2 || bestd * 3 <= (int)strlen(name)) &&
	    bestd < (int)strlen(best))
		return best;
	return NULL;
}

/* *dst becomes a copy of s (NULL: none), what it held freed. */
void
config_strset(char **dst, const char *s)
{
	free(*dst);
	*dst = s != NULL ? util_xstrdup(s) : NULL;
}

static void	parse_scope(struct loader *, const config_setting_t *,
		    enum key_scope, void *, const char *);

/* A dotted key, "prefix.name", or "prefix[i]" when name is NULL. */
static void
key_join(char *buf, size_t len, const char *prefix, const char *name, int i)
{
	int n;

	if (name == NULL)
		n = snprintf(buf, len, "%s[%d]", prefix, i);
	else
		n = snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "",
		    name);
	if (n < 0 || (size_t)n >= len)
		buf[len - 1] = '\0';
}

static void
key_default(const struct config_key *k, void *base)
{
	char		*p = (char *)base + k->off, why[128];
	size_t		 n;

	switch (k->type) {
	case KT_INT:
		*(int *)p = (int)k->idef;
		break;
	case KT_MODE:
		*(enum saga_mode *)p = (enum saga_mode)k->idef;
		break;
	case KT_STRING:
		config_strset((char **)p, k->sdef);
		break;
	case KT_ADDRESS:
		config_strset((char **)p, k->sdef);
		if (k->sdef != NULL)
			(void)util_parse_hostport(k->sdef,
			    (char *)base + k->off2, HOSTLEN,
			    (int *)((char *)base + k->off3), why, sizeof(why));
		break;
	case KT_STRLIST:
		for (n = 0; k->ldef != NULL && k->ldef[n] != NULL; n++)
			;
		*(char ***)p = util_xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			(*(char ***)p)[i] = util_xstrdup(k->ldef[i]);
		*(size_t *)((char *)base + k->off2) = n;
		break;
	case KT_SERVICE:
		*(size_t *)p = 0;
		break;
	case KT_STEPS:
		*(size_t **)p = NULL;
		*(size_t *)((char *)base + k->off2) = 0;
		break;
	case KT_RATIO:
		*(double *)p = 1.0;
		break;
	case KT_SECTION:
		if (k->flags & KEY_PRESENCE)
			*(int *)p = 0;
		break;
	case KT_NAMED:
		break;
	}
}

static void
parse_strlist(struct loader *l, const config_setting_t *s, const char *key,
    const struct config_key *k, void *base)
{
	char	***list = (char ***)((char *)base + k->off);
	size_t	 *count = (size_t *)((char *)base + k->off2);
	char	  got[128], why[128], ekey[600];
	int	  n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		lerr(l, s, key, "expected an array of strings [ \"...\" ], "
		    "got %s", describe(s, got, sizeof(got)));
		return;
	}
	for (size_t i = 0; i < *count; i++)
		free((*list)[i]);
	n = config_setting_length(s);
	*list = util_xrealloc(*list, (n + 1) * sizeof(char *));
	*count = 0;
	for (int i = 0; i < n; i++) {
		const config_setting_t	*e = config_setting_get_elem(s, i);
		const char		*v;

		key_join(ekey, sizeof(ekey), key, NULL, i);
		if ((v = read_string(l, e, ekey, "a string")) == NULL)
			continue;
		if (k->check != NULL && k->check(v, why, sizeof(why)) == -1) {
			lerr(l, e, ekey, "%s, got \"%s\"", why, v);
			continue;
		}
		(*list)[(*count)++] = util_xstrdup(v);
	}
	(*list)[*count] = NULL;
}

static void
parse_steps(struct loader *l, const config_setting_t *s, const char *key,
    const struct config_key *k, void *base)
{
	struct config	 *cfg = l->cfg;
	size_t		**steps = (size_t **)((char *)base + k->off);
	size_t		 *count = (size_t *)((char *)base + k->off2);
	const char	**names;
	char		  got[128], ekey[600];
	int		  n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		lerr(l, s, key, "expected an array of node names "
		    "[ \"Node\", ... ], got %s", describe(s, got, sizeof(got)));
		return;
	}
	if ((n = config_setting_length(s)) == 0) {
		lerr(l, s, key, "expected at least one node, got an empty "
		    "array");
		return;
	}
	names = util_xcalloc(cfg->nnodes, sizeof(char *));
	for (size_t i = 0; i < cfg->nnodes; i++)
		names[i] = cfg->nodes[i].name;
	*steps = util_xcalloc(n, sizeof(size_t));
	*count = 0;
	for (int i = 0; i < n; i++) {
		const config_setting_t	*e = config_setting_get_elem(s, i);
		const char		*v, *near;
		size_t			 j;

		key_join(ekey, sizeof(ekey), key, NULL, i);
		if ((v = read_string(l, e, ekey, "the name of a node")) ==
		    NULL)
			continue;
		for (j = 0; j < cfg->nnodes; j++)
			if (strcmp(cfg->nodes[j].name, v) == 0)
				break;
		if (j == cfg->nnodes) {
			near = nearest(v, names, cfg->nnodes);
			lerr(l, e, ekey, "expected the name of a node, got "
			    "\"%s\"%s%s%s", v, near ? "; did you mean '" : "",
			    near ? near : "", near ? "'?" : "");
			continue;
		}
		for (size_t m = 0; m < *count; m++)
			if ((*steps)[m] == j) {
				lerr(l, e, ekey, "expected each node once in "
				    "a flow, got \"%s\" again", v);
				j = SIZE_MAX;
				break;
			}
		if (j != SIZE_MAX)
			(*steps)[(*count)++] = j;
	}
	free(names);
}

static void
parse_service_ref(struct loader *l, const config_setting_t *s,
    const char *key, const struct config_key *k, void *base)
{
	struct config	 *cfg = l->cfg;
	const char	 *v, *near, **names;
	size_t		  i;

	if ((v = read_string(l, s, key, "the name of a service")) == NULL)
		return;
	for (i = 0; i < cfg->nservices; i++)
		if (strcmp(cfg->services[i].name, v) == 0) {
			*(size_t *)((char *)base + k->off) = i;
			return;
		}
	names = util_xcalloc(cfg->nservices, sizeof(char *));
	for (i = 0; i < cfg->nservices; i++)
		names[i] = cfg->services[i].name;
	near = nearest(v, names, cfg->nservices);
	free(names);
	lerr(l, s, key, "expected the name of a service, got \"%s\"%s%s%s", v,
	    near ? "; did you mean '" : "", near ? near : "",
	    near ? "'?" : "");
}

/* services, nodes, flows: a group of named groups. */
static void
parse_named(struct loader *l, const config_setting_t *s, const char *key,
    enum key_scope sub)
{
	struct config	*cfg = l->cfg;
	char		 got[128], ikey[600];
	int		 n;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		lerr(l, s, key, "expected a group of named groups "
		    "{ NAME = { ... }; }, got %s", describe(s, got,
		    sizeof(got)));
		return;
	}
	n = config_setting_length(s);
	switch (sub) {
	case KS_SERVICE:
		cfg->services = util_xcalloc(n, sizeof(*cfg->services));
		break;
	case KS_NODE:
		cfg->nodes = util_xcalloc(n, sizeof(*cfg->nodes));
		break;
	default:
		cfg->flows = util_xcalloc(n, sizeof(*cfg->flows));
		break;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t	*e = config_setting_get_elem(s, i);
		const char		*name = config_setting_name(e);
		void			*item;
		char			*dup = util_xstrdup(name);

		key_join(ikey, sizeof(ikey), key, name, 0);
		if (!config_valid_name(name))
			lerr(l, e, ikey, "expected a name of 1 to %d letters, "
			    "digits, '-' or '_'", CONFIG_NAME_MAX);
		switch (sub) {
		case KS_SERVICE:
			item = &cfg->services[cfg->nservices++];
			((struct config_service *)item)->name = dup;
			break;
		case KS_NODE:
			item = &cfg->nodes[cfg->nnodes++];
			((struct config_node *)item)->name = dup;
			break;
		default:
			item = &cfg->flows[cfg->nflows++];
			((struct config_flow *)item)->name = dup;
			break;
		}
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			lerr(l, e, ikey, "expected a group { ... }, got %s",
			    describe(e, got, sizeof(got)));
			parse_scope(l, NULL, sub, item, ikey);
			continue;
		}
		parse_scope(l, e, sub, item, ikey);
	}
}

static void
parse_key(struct loader *l, const config_setting_t *s, const char *key,
    const struct config_key *k, void *base)
{
	char		*p = (char *)base + k->off, why[256], got[128];
	const char	*v;
	int		 iv;

	switch (k->type) {
	case KT_INT:
		if (read_int(l, s, key, k, &iv) == 0)
			*(int *)p = iv;
		break;
	case KT_STRING:
		if ((v = read_string(l, s, key, "a string")) == NULL)
			break;
		if (k->check != NULL && k->check(v, why, sizeof(why)) == -1) {
			char	shown[1100];

			if (k->flags & KEY_SECRET)
				v = config_secret_shown(k, v, shown,
				    sizeof(shown));
			lerr(l, s, key, "%s, got \"%s\"", why, v);
		} else
			config_strset((char **)p, v);
		break;
	case KT_ADDRESS:
		if ((v = read_string(l, s, key, "a string \"host:port\"")) ==
		    NULL)
			break;
		if (util_parse_hostport(v, (char *)base + k->off2, HOSTLEN,
		    (int *)((char *)base + k->off3), why, sizeof(why)) == -1)
			lerr(l, s, key, "%s", why);
		else
			config_strset((char **)p, v);
		break;
	case KT_MODE:
		if ((v = read_string(l, s, key, "a mode")) == NULL)
			break;
		if (strcmp(v, "sync") == 0)
			*(enum saga_mode *)p = SAGA_MODE_SYNC;
		else if (strcmp(v, "async") == 0)
			*(enum saga_mode *)p = SAGA_MODE_ASYNC;
		else if (strcmp(v, "throttling") == 0)
			*(enum saga_mode *)p = SAGA_MODE_THROTTLING;
		else
			lerr(l, s, key, "expected \"sync\", \"async\" or "
			    "\"throttling\", got \"%s\"", v);
		break;
	case KT_STRLIST:
		parse_strlist(l, s, key, k, base);
		break;
	case KT_SERVICE:
		parse_service_ref(l, s, key, k, base);
		break;
	case KT_STEPS:
		parse_steps(l, s, key, k, base);
		break;
	case KT_SECTION:
		if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
			lerr(l, s, key, "expected a group { ... }, got %s",
			    describe(s, got, sizeof(got)));
			parse_scope(l, NULL, k->sub, base, key);
		} else {
			if (k->flags & KEY_PRESENCE)
				*(int *)((char *)base + k->off) = 1;
			parse_scope(l, s, k->sub, base, key);
		}
		break;
	case KT_NAMED:
		parse_named(l, s, key, k->sub);
		break;
	case KT_RATIO:
		switch (config_setting_type(s)) {
		case CONFIG_TYPE_FLOAT:
			*(double *)p = config_setting_get_float(s);
			break;
		case CONFIG_TYPE_INT:
		case CONFIG_TYPE_INT64:
			*(double *)p = (double)config_setting_get_int64(s);
			break;
		default:
			lerr(l, s, key, "expected a number from 0 to 1, got %s",
			    describe(s, got, sizeof(got)));
			return;
		}
		if (!(*(double *)p >= 0.0 && *(double *)p <= 1.0)) {
			lerr(l, s, key, "expected a number from 0 to 1, got %s",
			    describe(s, got, sizeof(got)));
			*(double *)p = 1.0;
		}
		break;
	}
}

/* What a required key expects, for "missing: expected ...". */
static const char *
key_expect(const struct config_key *k, char *buf, size_t len)
{
	switch (k->type) {
	case KT_ADDRESS:
		snprintf(buf, len, "a string \"host:port\"");
		break;
	case KT_SERVICE:
		snprintf(buf, len, "the name of a service");
		break;
	case KT_STEPS:
		snprintf(buf, len, "an array of node names [ \"Node\", ... ]");
		break;
	case KT_STRING:
		/* A check says what it expects of any string it refuses. */
		if (k->check != NULL && k->check("", buf, len) == -1 &&
		    strncmp(buf, "expected ", 9) == 0) {
			memmove(buf, buf + 9, strlen(buf + 9) + 1);
			break;
		}
		/* FALLTHROUGH */
	default:
		snprintf(buf, len, "a value");
	}
	return buf;
}

/*
 * Reads the keys of one scope from group (NULL: none given) into base: the
 * defaults first, then what the file says, then a complaint for each member
 * the scope has no row for.
 */
static void
parse_scope(struct loader *l, const config_setting_t *group,
    enum key_scope scope, void *base, const char *prefix)
{
	const char	*names[CONFIG_NKEYS], *near;
	char		 key[600], why[128];
	size_t		 nnames = 0;

	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key	*k = &config_keys[i];
		const config_setting_t	*s;

		if (k->scope != scope)
			continue;
		names[nnames++] = k->name;
		key_join(key, sizeof(key), prefix, k->name, 0);
		key_default(k, base);
		s = group != NULL ? config_setting_get_member(group, k->name) :
		    NULL;
		if (s != NULL)
			parse_key(l, s, key, k, base);
		else if (k->type == KT_SECTION)
			parse_scope(l, NULL, k->sub, base, key);
		else if ((k->flags & KEY_REQUIRED) && group != NULL)
			lerr(l, group, key, "missing: expected %s",
			    key_expect(k, why, sizeof(why)));
	}
	if (group == NULL)
		return;
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t	*s = config_setting_get_elem(group, i);
		const char		*name = config_setting_name(s);
		size_t			 j;

		for (j = 0; j < nnames; j++)
			if (strcmp(names[j], name) == 0)
				break;
		if (j < nnames)
			continue;
		key_join(key, sizeof(key), prefix, name, 0);
		if ((near = nearest(name, names, nnames)) != NULL)
			lerr(l, s, key, "unknown key; did you mean '%s'?",
			    near);
		else {
			char	list[400];
			size_t	len = 0;

			list[0] = '\0';
			for (j = 0; j < nnames && len < sizeof(list); j++)
				len += snprintf(list + len, sizeof(list) - len,
				    "%s%s", j ? ", " : "", names[j]);
			lerr(l, s, key, "unknown key; expected one of: %s",
			    list);
		}
	}
}

/* What no single key can check: defaults that depend on other keys. */
static void
resolve(struct loader *l, const char *pod_id)
{
	struct config	*cfg = l->cfg;
	char		 host[256], why[128];
	char		*dot;

	if (cfg->redis.password != NULL && cfg->redis.password_file != NULL)
		lerr_at(l, l->path, 0, "redis: password and password_file: "
		    "expected one of them");
	if (cfg->redis.username != NULL && cfg->redis.password == NULL &&
	    cfg->redis.password_file == NULL)
		lerr_at(l, l->path, 0, "redis.username: expected a password "
		    "or password_file with it");
	if (cfg->nats.password != NULL && cfg->nats.password_file != NULL)
		lerr_at(l, l->path, 0, "nats: password and password_file: "
		    "expected one of them");
	if ((cfg->nats.password != NULL || cfg->nats.password_file != NULL) !=
	    (cfg->nats.user != NULL))
		lerr_at(l, l->path, 0, "nats: user and password (or "
		    "password_file) go together");
	if (cfg->nats.creds != NULL && cfg->nats.user != NULL)
		lerr_at(l, l->path, 0, "nats: creds and user: expected one of "
		    "them");
	if (cfg->group != NULL && cfg->user == NULL)
		lerr_at(l, l->path, 0, "group: expected a user with it");
	for (size_t i = 0; i < cfg->nnodes; i++) {
		struct config_node *n = &cfg->nodes[i];

		if (n->timeout_ms == -1)
			n->timeout_ms = n->service < cfg->nservices ?
			    cfg->services[n->service].timeout_ms : 5000;
	}
	if (cfg->nats.nurls > 0) {
		size_t	 len = 1, at = 0, n;
		char	*list;

		/* One comma list, as the bus takes it (see bus_nats.c). */
		for (size_t i = 0; i < cfg->nats.nurls; i++)
			len += strlen(cfg->nats.urls[i]) + 1;
		list = util_xcalloc(1, len);
		for (size_t i = 0; i < cfg->nats.nurls; i++) {
			if (i > 0)
				list[at++] = ',';
			n = strlen(cfg->nats.urls[i]);
			memcpy(list + at, cfg->nats.urls[i], n);
			at += n;
		}
		free(cfg->nats.url);
		cfg->nats.url = list;
	}
	if (pod_id != NULL) {
		if (config_check_pod_id(pod_id, why, sizeof(why)) == -1)
			lerr_at(l, l->path, 0, "pod_id (from -P or POD_ID): "
			    "%s, got \"%s\"", why, pod_id);
		config_strset(&cfg->pod_id, pod_id);
	} else if (cfg->pod_id == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		if ((dot = strchr(host, '.')) != NULL)
			*dot = '\0';
		if (config_check_pod_id(host, why, sizeof(why)) == -1)
			lerr_at(l, l->path, 0, "pod_id: the host name \"%s\" "
			    "cannot be the default: %s; set pod_id", host,
			    why);
		cfg->pod_id = util_xstrdup(host);
	}
}

/*
 * Issue 15: a certificate goes with its key. Both given or neither, for
 * the bus and for each service's client certificate.
 */
static void
check_tls_pairs(struct loader *l, config_t *lc)
{
	const struct config	*cfg = l->cfg;
	char			 path[600];

	if ((cfg->nats.tls.cert == NULL) != (cfg->nats.tls.key == NULL))
		lerr(l, config_lookup(lc, "nats.tls"), "nats.tls",
		    "cert and key go together: give both or neither");
	for (size_t i = 0; i < cfg->nservices; i++) {
		const struct config_service *cs = &cfg->services[i];

		if ((cs->tls.cert == NULL) == (cs->tls.key == NULL))
			continue;
		snprintf(path, sizeof(path), "services.%s.tls", cs->name);
		lerr(l, config_lookup(lc, path), path, "cert and key go "
		    "together: give both or neither");
	}
}

static void
loader_free(struct loader *l)
{
	for (size_t i = 0; i < l->nerrs; i++) {
		free(l->errs[i].file);
		free(l->errs[i].msg);
	}
	free(l->errs);
	for (size_t i = 0; i < l->novf; i++) {
		free(l->ovf[i].file);
		free(l->ovf[i].key);
		free(l->ovf[i].text);
	}
	free(l->ovf);
	free(l->dir);
}

struct config *
config_load(const char *path, const char *pod_id, char *err, size_t errlen)
{
	struct loader	 l;
	config_t	 lc;
	char		*text, *slash, why[256];
	struct config	*cfg;

	memset(&l, 0, sizeof(l));
	l.path = path;
	l.dir = util_xstrdup(path);
	if ((slash = strrchr(l.dir, '/')) != NULL)
		*(slash == l.dir ? slash + 1 : slash) = '\0';
	else
		config_strset(&l.dir, ".");

	if ((text = config_file_text(path, why, sizeof(why))) == NULL) {
		lerr_at(&l, path, 0, "%s", why);
		errors_flush(&l, err, errlen);
		loader_free(&l);
		return NULL;
	}
	config_init(&lc);
	config_set_include_dir(&lc, l.dir);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		const char *f = config_error_file(&lc);

		lerr_at(&l, f != NULL ? f : path, config_error_line(&lc),
		    "%s", config_error_text(&lc));
		errors_flush(&l, err, errlen);
		config_destroy(&lc);
		loader_free(&l);
		free(text);
		return NULL;
	}
	config_scan(&l, path, text);
	free(text);

	cfg = l.cfg = util_xcalloc(1, sizeof(*cfg));
	cfg->path = util_xstrdup(path);
	parse_scope(&l, config_root_setting(&lc), KS_MAIN, cfg, "");
	resolve(&l, pod_id);
	check_tls_pairs(&l, &lc);
	config_destroy(&lc);

	if (l.nerrs > 0) {
		errors_flush(&l, err, errlen);
		config_free(cfg);
		cfg = NULL;
	} else {
		flowdef_version_all(cfg);
		if (err != NULL && errlen > 0)
			err[0] = '\0';
	}
	loader_free(&l);
	return cfg;
}

/* Frees what key_default and parse_key allocated for one scope's keys. */
static void
free_scope(enum key_scope scope, void *base)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key	*k = &config_keys[i];
		char			*p = (char *)base + k->off;

		if (k->scope != scope)
			continue;
		switch (k->type) {
		case KT_STRING:
		case KT_ADDRESS:
		case KT_STEPS:
			free(*(void **)p);
			break;
		case KT_STRLIST:
			if (*(char ***)p != NULL)
				for (size_t j = 0; (*(char ***)p)[j] != NULL;
				    j++)
					free((*(char ***)p)[j]);
			free(*(char ***)p);
			break;
		case KT_SECTION:
			free_scope(k->sub, base);
			break;
		default:
			break;
		}
	}
}

struct config *
config_ref(struct config *cfg)
{
	cfg->refs++;
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	if (cfg->refs > 0) {
		cfg->refs--;
		return;
	}
	if (cfg->parent != NULL) {
		/* A view (flowdef.c): its arrays and strings, then its base. */
		for (size_t i = 0; i < cfg->nowned; i++)
			free(cfg->owned[i]);
		free(cfg->owned);
		for (size_t i = 0; i < cfg->nflows; i++)
			free(cfg->flows[i].steps);
		free(cfg->services);
		free(cfg->nodes);
		free(cfg->flows);
		config_free(cfg->parent);
		free(cfg);
		return;
	}
	for (size_t i = 0; i < cfg->nservices; i++) {
		free(cfg->services[i].name);
		free_scope(KS_SERVICE, &cfg->services[i]);
	}
	for (size_t i = 0; i < cfg->nnodes; i++) {
		free(cfg->nodes[i].name);
		free_scope(KS_NODE, &cfg->nodes[i]);
	}
	for (size_t i = 0; i < cfg->nflows; i++) {
		free(cfg->flows[i].name);
		free_scope(KS_FLOW, &cfg->flows[i]);
	}
	free(cfg->services);
	free(cfg->nodes);
	free(cfg->flows);
	free_scope(KS_MAIN, cfg);
	free(cfg->path);
	free(cfg);
}

/* --- lookups ------------------------------------------------------------- */

const char *
config_mode_name(enum saga_mode mode)
{
	switch (mode) {
	case SAGA_MODE_SYNC:
		return "sync";
	case SAGA_MODE_ASYNC:
		return "async";
	case SAGA_MODE_THROTTLING:
		return "throttling";
	default:
		return "unspecified";
	}
}

const struct config_flow *
config_flow_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nflows; i++)
		if (strcmp(cfg->flows[i].name, name) == 0)
			return &cfg->flows[i];
	return NULL;
}

const struct config_node *
config_node_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nnodes; i++)
		if (strcmp(cfg->nodes[i].name, name) == 0)
			return &cfg->nodes[i];
	return NULL;
}

const struct config_service *
config_service_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nservices; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	return NULL;
}

size_t
config_topics(const struct config *cfg, struct config_topic **out)
{
	struct config_topic	*t;
	size_t			 n = 0;
	int			 async = 0, queued = 0;

	for (size_t i = 0; i < cfg->nflows; i++) {
		if (cfg->flows[i].mode == SAGA_MODE_ASYNC ||
		    cfg->flows[i].mode == SAGA_MODE_THROTTLING) {
			n += cfg->flows[i].nsteps;
			queued = 1;
		}
		if (cfg->flows[i].mode == SAGA_MODE_ASYNC)
			async = 1;
	}
	*out = t = util_xcalloc(n + (size_t)async + (size_t)queued, sizeof(*t));
	for (size_t i = 0; i < cfg->nflows; i++) {
		const struct config_flow *f = &cfg->flows[i];

		if (f->mode != SAGA_MODE_ASYNC &&
		    f->mode != SAGA_MODE_THROTTLING)
			continue;
		for (size_t j = 0; j < f->nsteps; j++, t++) {
			const struct config_node *nd = &cfg->nodes[f->steps[j]];

			t->flow = i;
			t->step = j;
			t->node = f->steps[j];
			t->mode = f->mode;
			snprintf(t->name, sizeof(t->name), "%s/%s", f->name,
			    nd->name);
			t->workers = nd->workers;
			t->concurrency = nd->concurrency;
		}
	}
	if (async) {
		/* Async sagas report their end by callback: its deliverer. */
		t->flow = t->step = t->node = CONFIG_TOPIC_NONE;
		t->mode = SAGA_MODE_ASYNC;
		snprintf(t->name, sizeof(t->name), "%s", WORK_CALLBACK_TOPIC);
		t->workers = CONFIG_CALLBACK_WORKERS;
		t->concurrency = CONFIG_CALLBACK_CONCURRENCY;
		t->callbacks = 1;
		t++;
		n++;
	}
	if (queued) {
		/*
		 * Work of sagas that run an older definition of their flow
		 * (flowdef.h): any node, from the definition they started with.
		 */
		t->flow = t->step = t->node = CONFIG_TOPIC_NONE;
		t->mode = SAGA_MODE_ASYNC;
		snprintf(t->name, sizeof(t->name), "%s", WORK_LEGACY_TOPIC);
		t->workers = CONFIG_LEGACY_WORKERS;
		t->concurrency = CONFIG_LEGACY_CONCURRENCY;
		t->legacy = 1;
		n++;
	}
	return n;
}
