/*
 * config_int.h - what the files of the configuration loader share, and
 * nothing else includes: config_keys.c (the table of keys, the checks of
 * their values, the SIGHUP rule), config_scan.c (the scan for integer
 * literals libconfig reads wrong) and config.c (the loader). See config.c
 * for how a file is loaded.
 */
#ifndef SAGAD_CONFIG_INT_H
#define SAGAD_CONFIG_INT_H

#include <stddef.h>

#include <libconfig.h>

#include "config.h"

/* The groups a key can live in. */
enum key_scope {
	KS_MAIN,		/* the top level: struct config */
	KS_NATS,		/* nats = { }: struct config */
	KS_RABBITMQ,		/* rabbitmq = { }: struct config */
	KS_REDIS,		/* redis = { }: struct config */
	KS_CALLBACKS,		/* callbacks = { }: struct config */
	KS_LIMITS,		/* limits = { }: struct config */
	KS_TRACING,		/* tracing = { }: struct config (issue 14) */
	KS_HTTP,		/* http = { }: struct config (issue 14) */
	KS_AUTH,		/* auth = { }: struct config (issue 15) */
	KS_SERVICE,		/* services.NAME = { }: struct config_service */
	KS_NODE,		/* nodes.NAME = { }: struct config_node */
	KS_FLOW,		/* flows.NAME = { }: struct config_flow */
	KS_TLS,			/* tls = { }: struct config */
	KS_NATS_TLS,		/* nats.tls = { }: struct config */
	KS_SERVICE_TLS,		/* services.NAME.tls = { }: struct config_service */
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
	KT_RATIO,		/* a number from 0 to 1, stored as a double */
};

#define KEY_RESTART	0x01	/* SIGHUP cannot change it */
#define KEY_REQUIRED	0x02	/* no default: the file must say */
#define KEY_INHERIT	0x04	/* absent: the node's service's value */
#define KEY_SECRET	0x08	/* a URL whose password is never shown, or a
				   password never shown at all */
#define KEY_PRESENCE	0x10	/* KT_SECTION: an int at off says it is there */

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

#define HOSTLEN	256	/* the size of every host[] an address splits into */

/* The rows of config_keys[]; config_keys.c fails to build if they differ. */
#define CONFIG_NKEYS	91

extern const struct config_key config_keys[];	/* CONFIG_NKEYS rows */

/* config_keys.c: a KEY_SECRET value fit to show. */
const char	*config_secret_shown(const struct config_key *, const char *,
		    char *, size_t);

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

/* config_keys.c */
int		 config_is_token_char(char);
int		 config_valid_name(const char *);
int		 config_check_pod_id(const char *, char *, size_t);

/* config_scan.c */
char		*config_file_text(const char *, char *, size_t);
void		 config_scan(struct loader *, const char *, const char *);
const struct overflow *config_overflow_find(struct loader *,
		    const config_setting_t *, const char *);

/* config.c */
void		 config_strset(char **, const char *);

#endif
