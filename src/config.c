/*
 * config.c - loads sagad.conf(5) into a struct config. Every key the file may
 * hold is one row of keys[] below: its type, default, bounds and whether a
 * SIGHUP may change it. Loading, defaults, validation, freeing and the reload
 * check all walk that one table, so a new key is one new row (Redis does the
 * same with static_configs[]).
 *
 * libconfig does the syntax; this file does the meaning. It never logs: every
 * error found is collected, sorted by line and handed back in the caller's
 * buffer as "FILE:LINE: KEY: what was expected, got what". It is not the
 * place that decides what to do with a bad file; the process layer is.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "util.h"
#include "work.h"

/* The groups a key can live in. */
enum key_scope {
	KS_MAIN,		/* the top level: struct config */
	KS_NATS,		/* nats = { }: struct config */
	KS_RABBITMQ,		/* rabbitmq = { }: struct config */
	KS_REDIS,		/* redis = { }: struct config */
	KS_CALLBACKS,		/* callbacks = { }: struct config */
	KS_LIMITS,		/* limits = { }: struct config */
	KS_SERVICE,		/* services.NAME = { }: struct config_service */
	KS_NODE,		/* nodes.NAME = { }: struct config_node */
	KS_FLOW,		/* flows.NAME = { }: struct config_flow */
};

enum key_type {
	KT_INT,			/* an int from min to max */
	KT_STRING,		/* a string; check() says if it is a good one */
	KT_ADDRESS,		/* "host:port", also split into off2, off3 */
	KT_STRLIST,		/* an array of strings; off2 is the count */
	KT_MODE,		/* "sync", "async" or "throttling" */
	KT_SERVICE,		/* the name of a service, stored as its index */
	KT_STEPS,		/* an array of node names; off2 is the count */
	KT_SECTION,		/* a group of keys of scope sub */
	KT_NAMED,		/* a group of named groups of scope sub */
};

#define KEY_RESTART	0x01	/* SIGHUP cannot change it */
#define KEY_REQUIRED	0x02	/* no default: the file must say */
#define KEY_INHERIT	0x04	/* absent: the node's service's value */
#define KEY_SECRET	0x08	/* a URL whose password is never shown */

struct config_key {
	const char		 *name;
	enum key_scope		  scope;
	enum key_type		  type;
	int			  flags;
	size_t			  off;		/* the value in its struct */
	size_t			  off2;		/* host, or a count */
	size_t			  off3;		/* port */
	long long		  min, max;	/* KT_INT */
	long long		  idef;		/* KT_INT, KT_MODE */
	const char		 *sdef;		/* KT_STRING, KT_ADDRESS */
	const char *const	 *ldef;		/* KT_STRLIST, NULL-ended */
	int			(*check)(const char *, char *, size_t);
	enum key_scope		  sub;		/* KT_SECTION, KT_NAMED */
};

static int	check_pod_id(const char *, char *, size_t);
static int	check_nats_url(const char *, char *, size_t);
static int	check_queue(const char *, char *, size_t);
static int	check_amqp_url(const char *, char *, size_t);
static int	check_queue_type(const char *, char *, size_t);
static int	check_token(const char *, char *, size_t);
static int	check_host(const char *, char *, size_t);
static int	check_path(const char *, char *, size_t);
static int	check_method(const char *, char *, size_t);
static int	check_context_key(const char *, char *, size_t);

static const char *const callbacks_allow_default[] = {
	"127.0.0.1", "localhost", "::1", NULL
};

#define C(f)	offsetof(struct config, f)
#define S(f)	offsetof(struct config_service, f)
#define N(f)	offsetof(struct config_node, f)
#define F(f)	offsetof(struct config_flow, f)
#define HOUR_MS	3600000
#define CONFIG_FILE_MAX	(16 * 1024 * 1024)	/* bytes read of one file */
#define HOSTLEN	256	/* the size of every host[] an address splits into */

_Static_assert(sizeof(((struct config *)0)->listen_host) == HOSTLEN &&
    sizeof(((struct config_service *)0)->host) == HOSTLEN,
    "KT_ADDRESS rows assume host buffers of HOSTLEN bytes");

/*
 * Every key of sagad.conf(5). The man page documents these rows; keep the
 * two in step. Within a scope, rows are parsed in order: services come before
 * nodes, which name them, and nodes before flows.
 */
static const struct config_key keys[] = {
	{ "pod_id", KS_MAIN, KT_STRING, KEY_RESTART, C(pod_id), 0, 0,
	    0, 0, 0, NULL, NULL, check_pod_id, 0 },
	{ "listen", KS_MAIN, KT_ADDRESS, KEY_RESTART, C(listen),
	    C(listen_host), C(listen_port), 0, 0, 0, "127.0.0.1:10000",
	    NULL, NULL, 0 },
	{ "shutdown_timeout_ms", KS_MAIN, KT_INT, 0, C(shutdown_timeout_ms),
	    0, 0, 0, HOUR_MS, 10000, NULL, NULL, NULL, 0 },
	{ "log_file", KS_MAIN, KT_STRING, KEY_RESTART, C(log_file), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "queue", KS_MAIN, KT_STRING, KEY_RESTART, C(queue), 0, 0,
	    0, 0, 0, "nats", NULL, check_queue, 0 },
	{ "nats", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_NATS },
	{ "rabbitmq", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_RABBITMQ },
	{ "redis", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_REDIS },
	{ "callbacks", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_CALLBACKS },
	{ "limits", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_LIMITS },
	{ "services", KS_MAIN, KT_NAMED, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_SERVICE },
	{ "nodes", KS_MAIN, KT_NAMED, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_NODE },
	{ "flows", KS_MAIN, KT_NAMED, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_FLOW },

	{ "url", KS_NATS, KT_STRING, KEY_RESTART, C(nats.url), 0, 0,
	    0, 0, 0, "nats://127.0.0.1:4222", NULL, check_nats_url, 0 },
	{ "stream", KS_NATS, KT_STRING, KEY_RESTART, C(nats.stream), 0, 0,
	    0, 0, 0, "SAGA", NULL, check_token, 0 },
	{ "replicas", KS_NATS, KT_INT, KEY_RESTART, C(nats.replicas), 0, 0,
	    1, 5, 1, NULL, NULL, NULL, 0 },

	{ "url", KS_RABBITMQ, KT_STRING, KEY_RESTART | KEY_SECRET,
	    C(rabbitmq.url), 0, 0, 0, 0, 0, "amqp://127.0.0.1:5672", NULL,
	    check_amqp_url, 0 },
	{ "queue_type", KS_RABBITMQ, KT_STRING, KEY_RESTART,
	    C(rabbitmq.queue_type), 0, 0, 0, 0, 0, "quorum", NULL,
	    check_queue_type, 0 },

	{ "host", KS_REDIS, KT_STRING, KEY_RESTART, C(redis.host), 0, 0,
	    0, 0, 0, "127.0.0.1", NULL, check_host, 0 },
	{ "port", KS_REDIS, KT_INT, KEY_RESTART, C(redis.port), 0, 0,
	    1, 65535, 6379, NULL, NULL, NULL, 0 },
	{ "saga_ttl", KS_REDIS, KT_INT, KEY_RESTART, C(redis.saga_ttl), 0, 0,
	    1, 31536000, 86400, NULL, NULL, NULL, 0 },
	{ "lease_ms", KS_REDIS, KT_INT, KEY_RESTART, C(redis.lease_ms), 0, 0,
	    1000, 600000, 10000, NULL, NULL, NULL, 0 },

	{ "allow", KS_CALLBACKS, KT_STRLIST, 0, C(callbacks.allow),
	    C(callbacks.nallow), 0, 0, 0, 0, NULL, callbacks_allow_default,
	    check_host, 0 },
	{ "retries", KS_CALLBACKS, KT_INT, 0, C(callbacks.retries), 0, 0,
	    0, 100, 5, NULL, NULL, NULL, 0 },

	/*
	 * Resource control. max_connections sizes RLIMIT_NOFILE at start,
	 * hence a restart; the others apply on SIGHUP to what comes next.
	 */
	{ "max_connections", KS_LIMITS, KT_INT, KEY_RESTART,
	    C(limits.max_connections), 0, 0, 1, 1000000, 10000, NULL, NULL,
	    NULL, 0 },
	{ "max_connections_per_ip", KS_LIMITS, KT_INT, 0,
	    C(limits.max_connections_per_ip), 0, 0, 1, 1000000, 1000, NULL,
	    NULL, NULL, 0 },
	{ "idle_timeout_ms", KS_LIMITS, KT_INT, 0, C(limits.idle_timeout_ms),
	    0, 0, 0, 24 * HOUR_MS, 300000, NULL, NULL, NULL, 0 },
	{ "handshake_timeout_ms", KS_LIMITS, KT_INT, 0,
	    C(limits.handshake_timeout_ms), 0, 0, 100, 600000, 10000, NULL,
	    NULL, NULL, 0 },
	{ "max_context_entries", KS_LIMITS, KT_INT, 0,
	    C(limits.max_context_entries), 0, 0, 1, 1000000, 1024, NULL, NULL,
	    NULL, 0 },
	{ "memory_mb", KS_LIMITS, KT_INT, 0, C(limits.memory_mb), 0, 0,
	    16, 1048576, 1024, NULL, NULL, NULL, 0 },

	{ "address", KS_SERVICE, KT_ADDRESS, KEY_REQUIRED, S(address),
	    S(host), S(port), 0, 0, 0, NULL, NULL, NULL, 0 },
	{ "timeout_ms", KS_SERVICE, KT_INT, 0, S(timeout_ms), 0, 0,
	    1, HOUR_MS, 5000, NULL, NULL, NULL, 0 },
	{ "max_inflight", KS_SERVICE, KT_INT, 0, S(max_inflight), 0, 0,
	    1, 1000000, 1024, NULL, NULL, NULL, 0 },
	{ "max_queue", KS_SERVICE, KT_INT, 0, S(max_queue), 0, 0,
	    0, 10000000, 10000, NULL, NULL, NULL, 0 },

	{ "service", KS_NODE, KT_SERVICE, KEY_REQUIRED, N(service), 0, 0,
	    0, 0, 0, NULL, NULL, NULL, 0 },
	{ "action", KS_NODE, KT_STRING, KEY_REQUIRED, N(action), 0, 0,
	    0, 0, 0, NULL, NULL, check_method, 0 },
	{ "compensate", KS_NODE, KT_STRING, 0, N(compensate), 0, 0,
	    0, 0, 0, NULL, NULL, check_method, 0 },
	{ "retries", KS_NODE, KT_INT, 0, N(retries), 0, 0,
	    0, 100, 3, NULL, NULL, NULL, 0 },
	{ "compensate_retries", KS_NODE, KT_INT, 0, N(compensate_retries),
	    0, 0, 0, 1000, 10, NULL, NULL, NULL, 0 },
	{ "timeout_ms", KS_NODE, KT_INT, KEY_INHERIT, N(timeout_ms), 0, 0,
	    1, HOUR_MS, -1, NULL, NULL, NULL, 0 },
	{ "backoff_ms", KS_NODE, KT_INT, 0, N(backoff_ms), 0, 0,
	    0, 600000, 100, NULL, NULL, NULL, 0 },
	{ "workers", KS_NODE, KT_INT, 0, N(workers), 0, 0,
	    1, 256, 1, NULL, NULL, NULL, 0 },
	{ "concurrency", KS_NODE, KT_INT, 0, N(concurrency), 0, 0,
	    1, 10000, 16, NULL, NULL, NULL, 0 },
	{ "request", KS_NODE, KT_STRING, 0, N(request), 0, 0,
	    0, 0, 0, NULL, NULL, check_context_key, 0 },
	{ "reply", KS_NODE, KT_STRING, 0, N(reply), 0, 0,
	    0, 0, 0, NULL, NULL, check_context_key, 0 },
	{ "compensate_request", KS_NODE, KT_STRING, 0, N(compensate_request),
	    0, 0, 0, 0, 0, NULL, NULL, check_context_key, 0 },

	{ "mode", KS_FLOW, KT_MODE, 0, F(mode), 0, 0,
	    0, 0, SAGA_MODE_SYNC, NULL, NULL, NULL, 0 },
	{ "steps", KS_FLOW, KT_STEPS, KEY_REQUIRED, F(steps), F(nsteps), 0,
	    0, 0, 0, NULL, NULL, NULL, 0 },
	{ "max_queue", KS_FLOW, KT_INT, 0, F(max_queue), 0, 0,
	    1, 10000000, 1000, NULL, NULL, NULL, 0 },
};

#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

/* The scope's name as a key prefix, for the scopes that have a fixed one. */
static const char *const scope_prefix[] = {
	[KS_MAIN] = "", [KS_NATS] = "nats", [KS_RABBITMQ] = "rabbitmq",
	[KS_REDIS] = "redis", [KS_CALLBACKS] = "callbacks", [KS_LIMITS] = "limits",
};

/* One error, kept until the end so that they can go out in file order. */
struct load_error {
	char	*file;
	int	 line;
	size_t	 seq;
	char	*msg;
};

/* An integer literal libconfig read into 32 bits that does not fit them. */
struct overflow {
	char	*file;		/* as libconfig names it */
	int	 line;		/* the line of the key's name */
	char	*key;		/* "nodes.CreateOrder.retries" */
	char	*text;		/* the literal as written */
};

struct loader {
	const char		*path;
	char			*dir;		/* @include is relative to it */
	struct config		*cfg;
	struct load_error	*errs;
	size_t			 nerrs;
	struct overflow		*ovf;
	size_t			 novf;
};

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

/* --- value checks ---------------------------------------------------------- */

static int
is_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A name that can be one token of a NATS subject and of a process title. */
static int
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!is_token_char(*s))
			return 0;
	return 1;
}

static int
check_pod_id(const char *s, char *why, size_t len)
{
	if (valid_name(s))
		return 0;
	snprintf(why, len, "expected 1 to %d letters, digits, '-' or '_'",
	    CONFIG_NAME_MAX);
	return -1;
}

static int
check_token(const char *s, char *why, size_t len)
{
	return check_pod_id(s, why, len);
}

static int
check_nats_url(const char *s, char *why, size_t len)
{
	if (strncmp(s, "nats://", 7) == 0 && s[7] != '\0' &&
	    strpbrk(s, " \t\r\n") == NULL)
		return 0;
	snprintf(why, len, "expected a URL starting with nats://");
	return -1;
}

static int
check_queue(const char *s, char *why, size_t len)
{
	if (strcmp(s, "nats") == 0 || strcmp(s, "rabbitmq") == 0)
		return 0;
	snprintf(why, len, "expected \"nats\" or \"rabbitmq\"");
	return -1;
}

/* amqp://[user[:password]@]host[:port][/vhost]; amqps is not supported. */
static int
check_amqp_url(const char *s, char *why, size_t len)
{
	const char *host = s + 7, *at;

	if (strncmp(s, "amqp://", 7) == 0 && strlen(s) < 1024 &&
	    strpbrk(s, " \t\r\n") == NULL) {
		if ((at = strchr(host, '@')) != NULL &&
		    (strchr(host, '/') == NULL || at < strchr(host, '/')))
			host = at + 1;
		if (*host != '\0' && *host != '/' && *host != ':')
			return 0;
	}
	snprintf(why, len, "expected a URL "
	    "amqp://[user[:password]@]host[:port][/vhost]");
	return -1;
}

static int
check_queue_type(const char *s, char *why, size_t len)
{
	if (strcmp(s, "quorum") == 0 || strcmp(s, "classic") == 0)
		return 0;
	snprintf(why, len, "expected \"quorum\" or \"classic\"");
	return -1;
}

static int
check_host(const char *s, char *why, size_t len)
{
	size_t n = strlen(s);

	if (n > 0 && n < 256 && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:") == n)
		return 0;
	snprintf(why, len, "expected a host name or address");
	return -1;
}

static int
check_path(const char *s, char *why, size_t len)
{
	if (s[0] == '/' && strlen(s) < PATH_MAX)
		return 0;
	snprintf(why, len, "expected an absolute path");
	return -1;
}

/* "/package.Service/Method", as gRPC writes it in :path. */
static int
check_method(const char *s, char *why, size_t len)
{
	const char *slash;

	if (s[0] == '/' && (slash = strchr(s + 1, '/')) != NULL &&
	    slash > s + 1 && slash[1] != '\0' &&
	    strchr(slash + 1, '/') == NULL && strpbrk(s, " \t\r\n") == NULL)
		return 0;
	snprintf(why, len, "expected a method as \"/package.Service/Method\"");
	return -1;
}

static int
check_context_key(const char *s, char *why, size_t len)
{
	if (s[0] != '\0' && strlen(s) <= 256)
		return 0;
	snprintf(why, len, "expected a context key of 1 to 256 bytes");
	return -1;
}

/* --- the overflow scan ----------------------------------------------------- */

/*
 * libconfig 1.5 reads an integer literal without an L suffix with atoi():
 * 99999999999 silently becomes 1215752191. The parsed tree cannot tell, so
 * the file's text is scanned for integer literals that do not fit 32 bits,
 * each remembered with the dotted key it is the value of and the line of that
 * key's name, which is the line libconfig gives the setting. The scan runs
 * only on text libconfig accepted, so it can be lenient about syntax.
 */

#define SCAN_DEPTH	32

struct scan {
	struct loader	*l;
	const char	*file;		/* the name libconfig gives it */
	const char	*stack[SCAN_DEPTH];	/* "" for arrays and lists */
	size_t		 stacklen[SCAN_DEPTH];
	int		 depth;
	const char	*name;		/* a name followed by = or : */
	size_t		 namelen;
	int		 nameline;
};

static void	scan_run(struct scan *, const char *, int);

static char *
read_file(const char *path, char *why, size_t len)
{
	FILE	*fp;
	char	*buf = NULL;
	size_t	 n = 0, cap = 0, r;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(why, len, "cannot open: %s", strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = util_xrealloc(buf, cap);
		}
		r = fread(buf + n, 1, cap - n - 1, fp);
		n += r;
		if (r == 0)
			break;
		/* A device named by @include must not make us read forever. */
		if (n > CONFIG_FILE_MAX) {
			snprintf(why, len, "larger than %d MiB",
			    CONFIG_FILE_MAX / (1024 * 1024));
			fclose(fp);
			free(buf);
			return NULL;
		}
	}
	if (ferror(fp)) {
		snprintf(why, len, "cannot read: %s", strerror(errno));
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

static void
scan_number(struct scan *sc, const char *tok, size_t n)
{
	struct overflow	*o;
	char		 lit[64], key[512];
	long long	 v;
	size_t		 kl = 0;
	int		 i, hex;
	char		*end;

	if (n >= sizeof(lit) || sc->name == NULL)
		return;
	memcpy(lit, tok, n);
	lit[n] = '\0';
	if (lit[n - 1] == 'L')
		return;			/* 64 bits: libconfig reads it right */
	hex = strncmp(lit, "0x", 2) == 0 || strncmp(lit, "0X", 2) == 0;
	if (!hex && strpbrk(lit, ".eE") != NULL)
		return;			/* a float */
	errno = 0;
	v = strtoll(lit, &end, hex ? 16 : 10);
	if (*end != '\0' || (errno == 0 && v >= INT_MIN && v <= INT_MAX))
		return;
	for (i = 0; i < sc->depth; i++) {
		if (sc->stacklen[i] == 0)
			return;		/* inside an array: no key of ours */
		kl += snprintf(key + kl, sizeof(key) - kl, "%.*s.",
		    (int)sc->stacklen[i], sc->stack[i]);
		if (kl >= sizeof(key))
			return;
	}
	snprintf(key + kl, sizeof(key) - kl, "%.*s", (int)sc->namelen,
	    sc->name);
	sc->l->ovf = util_xrealloc(sc->l->ovf,
	    (sc->l->novf + 1) * sizeof(*sc->l->ovf));
	o = &sc->l->ovf[sc->l->novf++];
	o->file = util_xstrdup(sc->file);
	o->line = sc->nameline;
	o->key = util_xstrdup(key);
	o->text = util_xstrdup(lit);
}

static void
scan_include(struct scan *sc, const char *name, size_t n, int level)
{
	struct scan	 child;
	char		 file[PATH_MAX], full[PATH_MAX * 2], why[128];
	char		*text;

	if (n >= sizeof(file) || level > 10)
		return;
	memcpy(file, name, n);
	file[n] = '\0';
	snprintf(full, sizeof(full), "%s/%s", sc->l->dir, file);
	if ((text = read_file(full, why, sizeof(why))) == NULL)
		return;
	/* Included text continues the including file's nesting. */
	child = *sc;
	child.file = file;
	child.name = NULL;
	scan_run(&child, text, level + 1);
	free(text);
}

static void
scan_run(struct scan *sc, const char *p, int level)
{
	int line = 1;

	while (*p != '\0') {
		const char *t = p;

		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r' ||
		    *p == '\f' || *p == '\v') {
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p != '\0' && !(p[0] == '*' &&
			    p[1] == '/'); p++)
				if (*p == '\n')
					line++;
			if (*p != '\0')
				p += 2;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				if (*p == '\n')
					line++;
			}
			if (*p != '\0')
				p++;
			sc->name = NULL;
		} else if (*p == '@') {
			/* @include "file" */
			while (*p != '\0' && *p != '"' && *p != '\n')
				p++;
			if (*p == '"') {
				t = ++p;
				while (*p != '\0' && *p != '"' && *p != '\n')
					p++;
				scan_include(sc, t, p - t, level);
				if (*p == '"')
					p++;
			}
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
		    *p <= 'Z') || *p == '*') {
			while (is_token_char(*p) || *p == '*')
				p++;
			sc->name = t;
			sc->namelen = p - t;
			sc->nameline = line;
		} else if ((*p >= '0' && *p <= '9') || ((*p == '-' ||
		    *p == '+' || *p == '.') && p[1] != '\0')) {
			p++;
			while ((*p >= '0' && *p <= '9') || (*p >= 'a' &&
			    *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    *p == '.' || ((*p == '-' || *p == '+') &&
			    (p[-1] == 'e' || p[-1] == 'E')))
				p++;
			scan_number(sc, t, p - t);
			sc->name = NULL;
		} else if (*p == '{' || *p == '[' || *p == '(') {
			if (sc->depth < SCAN_DEPTH) {
				int named = *p == '{' && sc->name != NULL;

				sc->stack[sc->depth] = named ? sc->name : "";
				sc->stacklen[sc->depth] = named ?
				    sc->namelen : 0;
			}
			sc->depth++;
			sc->name = NULL;
			p++;
		} else if (*p == '}' || *p == ']' || *p == ')') {
			if (sc->depth > 0)
				sc->depth--;
			sc->name = NULL;
			p++;
		} else if (*p == '=' || *p == ':') {
			p++;			/* the name stays pending */
		} else {
			sc->name = NULL;	/* ; , and the rest */
			p++;
		}
	}
}

static const struct overflow *
overflow_find(struct loader *l, const config_setting_t *s, const char *key)
{
	const char	*f = config_setting_source_file(s);
	int		 line = config_setting_source_line(s);

	for (size_t i = 0; i < l->novf; i++)
		if (l->ovf[i].line == line && strcmp(l->ovf[i].key, key) == 0 &&
		    (f == NULL || strcmp(l->ovf[i].file, f) == 0))
			return &l->ovf[i];
	return NULL;
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
		if ((o = overflow_find(l, s, key)) != NULL) {
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

static void
set_string(char **dst, const char *s)
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
		set_string((char **)p, k->sdef);
		break;
	case KT_ADDRESS:
		set_string((char **)p, k->sdef);
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
	case KT_SECTION:
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
		if (!valid_name(name))
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
				v = util_url_redact(v, shown, sizeof(shown));
			lerr(l, s, key, "%s, got \"%s\"", why, v);
		} else
			set_string((char **)p, v);
		break;
	case KT_ADDRESS:
		if ((v = read_string(l, s, key, "a string \"host:port\"")) ==
		    NULL)
			break;
		if (util_parse_hostport(v, (char *)base + k->off2, HOSTLEN,
		    (int *)((char *)base + k->off3), why, sizeof(why)) == -1)
			lerr(l, s, key, "%s", why);
		else
			set_string((char **)p, v);
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
		} else
			parse_scope(l, s, k->sub, base, key);
		break;
	case KT_NAMED:
		parse_named(l, s, key, k->sub);
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
	const char	*names[NKEYS], *near;
	char		 key[600], why[128];
	size_t		 nnames = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key	*k = &keys[i];
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

	for (size_t i = 0; i < cfg->nnodes; i++) {
		struct config_node *n = &cfg->nodes[i];

		if (n->timeout_ms == -1)
			n->timeout_ms = n->service < cfg->nservices ?
			    cfg->services[n->service].timeout_ms : 5000;
	}
	if (pod_id != NULL) {
		if (check_pod_id(pod_id, why, sizeof(why)) == -1)
			lerr_at(l, l->path, 0, "pod_id (from -P or POD_ID): "
			    "%s, got \"%s\"", why, pod_id);
		set_string(&cfg->pod_id, pod_id);
	} else if (cfg->pod_id == NULL) {
		if (gethostname(host, sizeof(host)) == -1)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		if ((dot = strchr(host, '.')) != NULL)
			*dot = '\0';
		if (check_pod_id(host, why, sizeof(why)) == -1)
			lerr_at(l, l->path, 0, "pod_id: the host name \"%s\" "
			    "cannot be the default: %s; set pod_id", host,
			    why);
		cfg->pod_id = util_xstrdup(host);
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
	struct scan	 sc;
	config_t	 lc;
	char		*text, *slash, why[256];
	struct config	*cfg;

	memset(&l, 0, sizeof(l));
	l.path = path;
	l.dir = util_xstrdup(path);
	if ((slash = strrchr(l.dir, '/')) != NULL)
		*(slash == l.dir ? slash + 1 : slash) = '\0';
	else
		set_string(&l.dir, ".");

	if ((text = read_file(path, why, sizeof(why))) == NULL) {
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
	memset(&sc, 0, sizeof(sc));
	sc.l = &l;
	sc.file = path;
	scan_run(&sc, text, 0);
	free(text);

	cfg = l.cfg = util_xcalloc(1, sizeof(*cfg));
	cfg->path = util_xstrdup(path);
	parse_scope(&l, config_root_setting(&lc), KS_MAIN, cfg, "");
	resolve(&l, pod_id);
	config_destroy(&lc);

	if (l.nerrs > 0) {
		errors_flush(&l, err, errlen);
		config_free(cfg);
		cfg = NULL;
	} else if (err != NULL && errlen > 0)
		err[0] = '\0';
	loader_free(&l);
	return cfg;
}

/* Frees what key_default and parse_key allocated for one scope's keys. */
static void
free_scope(enum key_scope scope, void *base)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key	*k = &keys[i];
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

/* --- SIGHUP ---------------------------------------------------------------- */

static const char *
restart_key_name(const struct config_key *k, char *buf, size_t len)
{
	const char *prefix = scope_prefix[k->scope];

	snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
	return buf;
}

int
config_reload_check(const struct config *old, const struct config *new,
    char *err, size_t errlen)
{
	size_t	used = 0;
	int	changed = 0;
	char	key[64], a[300], b[300];

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key	*k = &keys[i];
		const char		*po, *pn;

		if (!(k->flags & KEY_RESTART))
			continue;
		po = (const char *)old + k->off;
		pn = (const char *)new + k->off;
		if (k->type == KT_INT) {
			if (*(const int *)po == *(const int *)pn)
				continue;
			snprintf(a, sizeof(a), "%d", *(const int *)po);
			snprintf(b, sizeof(b), "%d", *(const int *)pn);
		} else {
			const char *so = *(char *const *)po;
			const char *sn = *(char *const *)pn;

			char	sa[1100], sb[1100];

			if ((so == NULL && sn == NULL) || (so != NULL &&
			    sn != NULL && strcmp(so, sn) == 0))
				continue;
			if ((k->flags & KEY_SECRET) && so != NULL)
				so = util_url_redact(so, sa, sizeof(sa));
			if ((k->flags & KEY_SECRET) && sn != NULL)
				sn = util_url_redact(sn, sb, sizeof(sb));
			snprintf(a, sizeof(a), so ? "\"%s\"" : "(none)", so);
			snprintf(b, sizeof(b), sn ? "\"%s\"" : "(none)", sn);
		}
		changed++;
		if (err != NULL && used < errlen) {
			int n = snprintf(err + used, errlen - used,
			    "%s%s: %s: changed from %s to %s, but only a "
			    "restart can change it; keeping %s",
			    used ? "\n" : "", new->path,
			    restart_key_name(k, key, sizeof(key)), a, b, a);
			if (n > 0)
				used += (size_t)n;
		}
	}
	return changed;
}

void
config_keep_restart_keys(struct config *new, const struct config *old)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key	*k = &keys[i];
		const char		*po = (const char *)old + k->off;
		char			*pn = (char *)new + k->off;

		if (!(k->flags & KEY_RESTART))
			continue;
		switch (k->type) {
		case KT_INT:
			*(int *)pn = *(const int *)po;
			break;
		case KT_ADDRESS:
			memcpy((char *)new + k->off2,
			    (const char *)old + k->off2, HOSTLEN);
			*(int *)((char *)new + k->off3) =
			    *(const int *)((const char *)old + k->off3);
			/* FALLTHROUGH */
		case KT_STRING:
			set_string((char **)pn, *(char *const *)po);
			break;
		default:
			break;
		}
	}
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
	int			 async = 0;

	for (size_t i = 0; i < cfg->nflows; i++) {
		if (cfg->flows[i].mode == SAGA_MODE_ASYNC ||
		    cfg->flows[i].mode == SAGA_MODE_THROTTLING)
			n += cfg->flows[i].nsteps;
		if (cfg->flows[i].mode == SAGA_MODE_ASYNC)
			async = 1;
	}
	*out = t = util_xcalloc(n + (size_t)async, sizeof(*t));
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
		n++;
	}
	return n;
}
