/*
 * auth.h - bearer tokens with roles (sagad.conf(5) auth.tokens_file): the
 * tokens file read into a table, and the one check both listeners make, gRPC
 * (the server's authorize hook, service.c) and HTTP (a 401/403 from the same
 * answer). Library code: it neither logs nor exits; a load fails with a
 * sentence naming FILE:LINE and never the token.
 *
 * Roles are ordered: read (Get, Watch, List, ListFlows) < run (+ Run) <
 * operate (+ Cancel, Retry, Resolve). Health, /livez, /readyz, /metrics and
 * the dashboard page / need none: they hold no saga data.
 */
#ifndef SAGAD_AUTH_H
#define SAGAD_AUTH_H

#include <stddef.h>

#define AUTH_TOKEN_MAX	256	/* bytes of a token; longer is refused */
#define AUTH_NAME_MAX	64	/* bytes of a NAME */
#define AUTH_TOKENS_MAX	10000	/* lines of tokens in one file */

enum auth_role {
	AUTH_ROLE_NONE = 0,	/* an open method: Health */
	AUTH_ROLE_READ,
	AUTH_ROLE_RUN,
	AUTH_ROLE_OPERATE,
};

enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING,		/* no Authorization, or not "Bearer X" */
	AUTH_UNKNOWN,		/* a token that is not in the file */
	AUTH_FORBIDDEN,		/* a known token of too weak a role */
};

struct auth;

/*
 * Reads a tokens file: lines "TOKEN ROLE [NAME]", '#' comments and blank
 * lines allowed. Refuses a file that others may read or write (mode & 007),
 * a bad line ("FILE:LINE: ..." without the token), a token twice, an empty
 * file. warn gets a sentence (or "") for what is allowed but unwise: a
 * group-writable file, a token shorter than 16 bytes. Returns the table or
 * NULL with err.
 */
struct auth	*auth_load(const char *path, char *warn, size_t warnlen,
		    char *err, size_t errlen);
void		 auth_free(struct auth *);
size_t		 auth_count(const struct auth *);

/*
 * The check. value is the Authorization header's value as received (NULL
 * or len 0: none), need the role the request needs. On AUTH_OK and
 * AUTH_FORBIDDEN *name is the token's NAME (the caller's name in logs). The
 * time it takes depends on the number of tokens only: every token is
 * compared in full, so neither which token nor how much of one matched
 * shows. With a == NULL (no tokens_file) every request is AUTH_OK and *name
 * NULL.
 */
enum auth_result auth_check(const struct auth *, const char *value,
		    size_t len, enum auth_role need, const char **name);

/*
 * A password file (redis.password_file, nats.password_file): its first
 * line, without the newline, into buf. Refuses a file others may read, an
 * empty one, one longer than len - 1. Returns 0, or -1 with err (which
 * never holds the file's content).
 */
int		 auth_read_secret(const char *path, char *buf, size_t len,
		    char *err, size_t errlen);
/* Zeroes n bytes in a way the compiler keeps. */
void		 auth_wipe(void *, size_t n);

/* The role a gRPC method needs, by its path; unknown paths need operate. */
enum auth_role	 auth_role_for_grpc(const char *path);
/* The role an HTTP request needs (DESIGN.md's endpoints); method "GET"... */
enum auth_role	 auth_role_for_http(const char *method, const char *path);
/* 200, 401 or 403; and the gRPC status (0, 16, 7). */
int		 auth_http_status(enum auth_result);
int		 auth_grpc_status(enum auth_result);
/* A sentence for the caller: never names the token. */
const char	*auth_result_text(enum auth_result, enum auth_role need);
const char	*auth_role_name(enum auth_role);

#endif
