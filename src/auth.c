/*
 * auth.c - bearer tokens with roles (see auth.h): the tokens file read into
 * a table, the check of an Authorization value against it, and which role
 * each gRPC method and HTTP endpoint needs. It is not the listeners' side:
 * service.c calls auth_check from the gRPC server's authorize hook and logs
 * what it answers (rate-limited, with the peer and never the token); the
 * HTTP listener maps the same answer to 401/403.
 *
 * Tokens live in fixed AUTH_TOKEN_MAX-byte slots, zero-padded, with their
 * length: a check compares the candidate with every slot over the whole
 * slot and keeps the match with masks, so its time does not depend on
 * where a candidate first differs from a token, nor on which token it is.
 * The memory of a table is wiped before it is freed.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "util.h"

#define AUTH_LINE_MAX	1024
#define AUTH_SHORT	16	/* fewer bytes than this: a warning */

#define AUTH_WORDS	(AUTH_TOKEN_MAX / 8)

struct auth_token {
	union {
		unsigned char	 b[AUTH_TOKEN_MAX];
		uint64_t	 w[AUTH_WORDS];	/* compared 8 at a time */
	} tok;
	size_t		 len;
	enum auth_role	 role;
	char		 name[AUTH_NAME_MAX + 1];
};

struct auth {
	struct auth_token	*t;
	size_t			 n;
};

static const char *const role_names[] = {
	[AUTH_ROLE_NONE] = "none", [AUTH_ROLE_READ] = "read",
	[AUTH_ROLE_RUN] = "run", [AUTH_ROLE_OPERATE] = "operate",
};

const char *
auth_role_name(enum auth_role r)
{
	return (unsigned)r <= AUTH_ROLE_OPERATE ? role_names[r] : "?";
}

static int
role_parse(const char *s, enum auth_role *r)
{
	for (int i = AUTH_ROLE_READ; i <= AUTH_ROLE_OPERATE; i++)
		if (strcmp(s, role_names[i]) == 0) {
			*r = (enum auth_role)i;
			return 0;
		}
	return -1;
}

/* Printable ASCII without spaces: what fits an HTTP header's token68. */
static int
token_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

static int
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > AUTH_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-_.@", *s) != NULL))
			return 0;
	return 1;
}

/* 1 when a and t hold the same bytes; the time depends on neither. */
static uint64_t
slot_equal(const uint64_t *a, size_t alen, const struct auth_token *t)
{
	uint64_t	d = (uint64_t)(alen ^ t->len);

	for (size_t i = 0; i < AUTH_WORDS; i++)
		d |= a[i] ^ t->tok.w[i];
	/* d == 0 -> 1, else 0, without a branch. */
	d |= d >> 32;
	d &= 0xffffffffu;
	return 1u & ((d - 1u) >> 63);
}

/* Index of the slot holding tok, or (size_t)-1; every slot is compared. */
static size_t
find(const struct auth *a, const uint64_t *slot, size_t len)
{
	size_t	found = (size_t)-1;

	for (size_t i = 0; i < a->n; i++) {
		size_t m = (size_t)0 - (size_t)slot_equal(slot, len, &a->t[i]);

		found = (found & ~m) | (i & m);
	}
	return found;
}

#define wipe auth_wipe

void
auth_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	if (a->t != NULL) {
		wipe(a->t, a->n * sizeof(*a->t));
		free(a->t);
	}
	free(a);
}

size_t
auth_count(const struct auth *a)
{
	return a != NULL ? a->n : 0;
}

/* One line; -1 with err naming FILE:LINE (and never the token). */
static int
parse_line(struct auth *a, char *line, const char *path, int lineno,
    size_t *nshort, char *err, size_t errlen)
{
	char			*save = NULL, *tok, *role, *name, *extra;
	struct auth_token	 t;
	size_t			 len;

	if ((tok = strtok_r(line, " \t", &save)) == NULL || tok[0] == '#')
		return 0;
	role = strtok_r(NULL, " \t", &save);
	name = role != NULL ? strtok_r(NULL, " \t", &save) : NULL;
	extra = name != NULL ? strtok_r(NULL, " \t", &save) : NULL;
	if (role == NULL || role[0] == '#') {
		snprintf(err, errlen, "%s:%d: expected \"TOKEN ROLE [NAME]\", "
		    "got a token without a role", path, lineno);
		return -1;
	}
	memset(&t, 0, sizeof(t));
	if (role_parse(role, &t.role) == -1) {
		snprintf(err, errlen, "%s:%d: role: expected read, run or "
		    "operate, got \"%.32s\"", path, lineno, role);
		return -1;
	}
	if (extra != NULL && extra[0] != '#') {
		snprintf(err, errlen, "%s:%d: expected \"TOKEN ROLE [NAME]\", "
		    "got more fields", path, lineno);
		return -1;
	}
	if (name != NULL && name[0] == '#')
		name = NULL;
	if (name != NULL && !name_ok(name)) {
		snprintf(err, errlen, "%s:%d: name: expected 1 to %d letters, "
		    "digits or -_.@", path, lineno, AUTH_NAME_MAX);
		return -1;
	}
	len = strlen(tok);
	if (len > AUTH_TOKEN_MAX || !token_ok(tok, len)) {
		snprintf(err, errlen, "%s:%d: token: expected 1 to %d "
		    "printable bytes without spaces", path, lineno,
		    AUTH_TOKEN_MAX);
		wipe(tok, len);
		return -1;
	}
	memcpy(t.tok.b, tok, len);
	t.len = len;
	wipe(tok, len);
	if (name != NULL)
		snprintf(t.name, sizeof(t.name), "%s", name);
	else
		snprintf(t.name, sizeof(t.name), "token-line-%d", lineno);
	if (find(a, t.tok.w, t.len) != (size_t)-1) {
		snprintf(err, errlen, "%s:%d: this token is already on an "
		    "earlier line", path, lineno);
		wipe(&t, sizeof(t));
		return -1;
	}
	if (a->n == AUTH_TOKENS_MAX) {
		snprintf(err, errlen, "%s:%d: more than %d tokens", path,
		    lineno, AUTH_TOKENS_MAX);
		wipe(&t, sizeof(t));
		return -1;
	}
	if (len < AUTH_SHORT)
		(*nshort)++;
	a->t = util_xrealloc(a->t, (a->n + 1) * sizeof(*a->t));
	a->t[a->n++] = t;
	wipe(&t, sizeof(t));
	return 0;
}

struct auth *
auth_load(const char *path, char *warn, size_t warnlen, char *err,
    size_t errlen)
{
	struct auth	*a;
	struct stat	 st;
	FILE		*fp;
	char		 line[AUTH_LINE_MAX + 2];
	size_t		 nshort = 0;
	int		 fd, lineno = 0, rc = 0;

	if (warn != NULL && warnlen > 0)
		warn[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "%s: others may %s it (mode %04o): "
		    "refusing a tokens file anyone can read; chmod o-rw it",
		    path, st.st_mode & S_IROTH ? "read" : "write",
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return NULL;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	a = util_xcalloc(1, sizeof(*a));
	while (rc == 0 && fgets(line, sizeof(line), fp) != NULL) {
		size_t n = strlen(line);

		lineno++;
		if (n > 0 && line[n - 1] != '\n' && !feof(fp)) {
			snprintf(err, errlen, "%s:%d: line longer than %d "
			    "bytes", path, lineno, AUTH_LINE_MAX);
			rc = -1;
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		rc = parse_line(a, line, path, lineno, &nshort, err, errlen);
	}
	wipe(line, sizeof(line));
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errlen, "%s: read error", path);
		rc = -1;
	}
	fclose(fp);
	if (rc == 0 && a->n == 0) {
		snprintf(err, errlen, "%s: no tokens: every call would be "
		    "refused (unset auth.tokens_file to turn auth off)", path);
		rc = -1;
	}
	if (rc == -1) {
		auth_free(a);
		return NULL;
	}
	if (warn != NULL && warnlen > 0) {
		if (st.st_mode & S_IWGRP)
			snprintf(warn, warnlen, "%s: its group may write it "
			    "(mode %04o)", path,
			    (unsigned)(st.st_mode & 07777));
		else if (nshort > 0)
			snprintf(warn, warnlen, "%s: %zu tokens shorter than "
			    "%d bytes: easy to guess", path, nshort,
			    AUTH_SHORT);
	}
	return a;
}

int
auth_read_secret(const char *path, char *buf, size_t len, char *err,
    size_t errlen)
{
	struct stat	st;
	ssize_t		n;
	size_t		end;
	int		fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "%s: others may %s it (mode %04o): "
		    "refusing a password file anyone can read; chmod o-rw it",
		    path, st.st_mode & S_IROTH ? "read" : "write",
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	end = strcspn(buf, "\r\n");
	if ((size_t)n == len - 1 && end == (size_t)n) {
		wipe(buf, len);
		snprintf(err, errlen, "%s: longer than %zu bytes", path,
		    len - 2);
		return -1;
	}
	wipe(buf + end, (size_t)n - end);
	if (end == 0) {
		snprintf(err, errlen, "%s: empty first line: expected the "
		    "password", path);
		return -1;
	}
	return 0;
}

enum auth_result
auth_check(const struct auth *a, const char *value, size_t len,
    enum auth_role need, const char **name)
{
	uint64_t	slot[AUTH_WORDS];
	size_t		i;

	*name = NULL;
	if (a == NULL || need == AUTH_ROLE_NONE)
		return AUTH_OK;
	if (value == NULL || len < 7 || strncasecmp(value, "Bearer ", 7) != 0)
		return AUTH_MISSING;
	value += 7;
	len -= 7;
	while (len > 0 && *value == ' ') {
		value++;
		len--;
	}
	while (len > 0 && value[len - 1] == ' ')
		len--;
	if (len == 0)
		return AUTH_MISSING;
	if (len > AUTH_TOKEN_MAX)
		return AUTH_UNKNOWN;
	memset(slot, 0, sizeof(slot));
	memcpy(slot, value, len);
	i = find(a, slot, len);
	wipe(slot, sizeof(slot));
	if (i == (size_t)-1)
		return AUTH_UNKNOWN;
	*name = a->t[i].name;
	return a->t[i].role >= need ? AUTH_OK : AUTH_FORBIDDEN;
}

enum auth_role
auth_role_for_grpc(const char *path)
{
	static const struct {
		const char	*path;
		enum auth_role	 role;
	} m[] = {
		{ "/saga.v1.Orchestrator/Get", AUTH_ROLE_READ },
		{ "/saga.v1.Orchestrator/Watch", AUTH_ROLE_READ },
		{ "/saga.v1.Orchestrator/List", AUTH_ROLE_READ },
		{ "/saga.v1.Orchestrator/ListFlows", AUTH_ROLE_READ },
		{ "/saga.v1.Orchestrator/Run", AUTH_ROLE_RUN },
		{ "/saga.v1.Orchestrator/Cancel", AUTH_ROLE_OPERATE },
		{ "/saga.v1.Orchestrator/Retry", AUTH_ROLE_OPERATE },
		{ "/saga.v1.Orchestrator/Resolve", AUTH_ROLE_OPERATE },
	};

	if (strncmp(path, "/grpc.health.v1.Health/", 23) == 0)
		return AUTH_ROLE_NONE;
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (strcmp(path, m[i].path) == 0)
			return m[i].role;
	return AUTH_ROLE_OPERATE;
}

enum auth_role
auth_role_for_http(const char *method, const char *path)
{
	size_t n = strcspn(path, "?");

	/* Probes, the pod's counters, the dashboard's page: no saga data. */
	if ((n == 6 && strncmp(path, "/livez", 6) == 0) ||
	    (n == 7 && strncmp(path, "/readyz", 7) == 0) ||
	    (n == 8 && strncmp(path, "/metrics", 8) == 0) ||
	    (n == 1 && path[0] == '/'))
		return AUTH_ROLE_NONE;
	if (strcmp(method, "POST") != 0)
		return AUTH_ROLE_READ;
	if (n == 13 && strncmp(path, "/api/v1/sagas", 13) == 0)
		return AUTH_ROLE_RUN;
	return AUTH_ROLE_OPERATE;	/* :cancel, :retry, :resolve */
}

int
auth_http_status(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:
		return 200;
	case AUTH_FORBIDDEN:
		return 403;
	default:
		return 401;
	}
}

int
auth_grpc_status(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:
		return 0;
	case AUTH_FORBIDDEN:
		return 7;	/* PERMISSION_DENIED */
	default:
		return 16;	/* UNAUTHENTICATED */
	}
}

const char *
auth_result_text(enum auth_result r, enum auth_role need)
{
	switch (r) {
	case AUTH_OK:
		return "";
	case AUTH_MISSING:
		return "missing credentials: send \"authorization: Bearer "
		    "TOKEN\"";
	case AUTH_UNKNOWN:
		return "unknown token";
	case AUTH_FORBIDDEN:
		switch (need) {
		case AUTH_ROLE_RUN:
			return "this token's role may not do this: it needs "
			    "the run role";
		case AUTH_ROLE_OPERATE:
			return "this token's role may not do this: it needs "
			    "the operate role";
		default:
			return "this token's role may not do this: it needs "
			    "the read role";
		}
	}
	return "";
}
