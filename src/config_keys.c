/*
 * config_keys.c - the table of sagad.conf(5): every key the file may hold is
 * one row of config_keys[] below, with its scope, type, default, bounds and
 * whether a SIGHUP may change it (Redis does the same with
 * static_configs[]). Beside the rows: the checks of string values that the
 * rows name, and the SIGHUP rule that follows from the rows' KEY_RESTART
 * flag (config_reload_check, config_keep_restart_keys).
 *
 * It is not the loader: reading libconfig's tree, the errors with file, line
 * and key, and freeing are config.c's; a new key is one new row here (and
 * CONFIG_NKEYS in config_int.h).
 */
#include "autoconf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_int.h"
#include "util.h"

static int	check_nats_url(const char *, char *, size_t);
static int	check_queue(const char *, char *, size_t);
static int	check_amqp_url(const char *, char *, size_t);
static int	check_queue_type(const char *, char *, size_t);
static int	check_token(const char *, char *, size_t);
static int	check_host(const char *, char *, size_t);
static int	check_path(const char *, char *, size_t);
static int	check_method(const char *, char *, size_t);
static int	check_context_key(const char *, char *, size_t);
static int	check_hostport(const char *, char *, size_t);
static int	check_subject_prefix(const char *, char *, size_t);
static int	check_log_format(const char *, char *, size_t);
static int	check_otlp_endpoint(const char *, char *, size_t);
static int	check_account(const char *, char *, size_t);
static int	check_allow(const char *, char *, size_t);
static int	check_password(const char *, char *, size_t);

static const char *const callbacks_allow_default[] = {
	"127.0.0.1", "localhost", "::1", NULL
};

#define C(f)	offsetof(struct config, f)
#define S(f)	offsetof(struct config_service, f)
#define N(f)	offsetof(struct config_node, f)
#define F(f)	offsetof(struct config_flow, f)
#define HOUR_MS	3600000

_Static_assert(sizeof(((struct config *)0)->listen_host) == HOSTLEN &&
    sizeof(((struct config_service *)0)->host) == HOSTLEN,
    "KT_ADDRESS rows assume host buffers of HOSTLEN bytes");

/*
 * Every key of sagad.conf(5). The man page documents these rows; keep the
 * two in step. Within a scope, rows are parsed in order: services come before
 * nodes, which name them, and nodes before flows.
 */
const struct config_key config_keys[] = {
	{ "pod_id", KS_MAIN, KT_STRING, KEY_RESTART, C(pod_id), 0, 0,
	    0, 0, 0, NULL, NULL, config_check_pod_id, 0 },
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

	{ "url", KS_NATS, KT_STRING, KEY_RESTART | KEY_SECRET, C(nats.url),
	    0, 0, 0, 0, 0, "nats://127.0.0.1:4222", NULL, check_nats_url, 0 },
	{ "stream", KS_NATS, KT_STRING, KEY_RESTART, C(nats.stream), 0, 0,
	    0, 0, 0, "SAGA", NULL, check_token, 0 },
	{ "replicas", KS_NATS, KT_INT, KEY_RESTART, C(nats.replicas), 0, 0,
	    1, 5, 1, NULL, NULL, NULL, 0 },
	/* A renamed pod's consumers are deleted by nats-server (issue 11). */
	{ "consumer_ttl", KS_NATS, KT_INT, KEY_RESTART, C(nats.consumer_ttl),
	    0, 0, 0, 31536000, 86400, NULL, NULL, NULL, 0 },

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
	    check_allow, 0 },
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

	/*
	 * Issue 17: a NATS cluster, Redis behind Sentinel, writes that count
	 * once replicas have them (WAIT).
	 */
	{ "urls", KS_NATS, KT_STRLIST, KEY_RESTART, C(nats.urls),
	    C(nats.nurls), 0, 0, 0, 0, NULL, NULL, check_nats_url, 0 },
	{ "sentinels", KS_REDIS, KT_STRLIST, KEY_RESTART, C(redis.sentinels),
	    C(redis.nsentinels), 0, 0, 0, 0, NULL, NULL, check_hostport, 0 },
	{ "master_name", KS_REDIS, KT_STRING, KEY_RESTART,
	    C(redis.master_name), 0, 0, 0, 0, 0, "sagad", NULL, check_token, 0 },
	{ "min_replicas_ack", KS_REDIS, KT_INT, KEY_RESTART,
	    C(redis.min_replicas_ack), 0, 0, 0, 16, 0, NULL, NULL, NULL, 0 },
	{ "ack_timeout_ms", KS_REDIS, KT_INT, KEY_RESTART,
	    C(redis.ack_timeout_ms), 0, 0, 1, 60000, 200, NULL, NULL, NULL, 0 },
	/* Issue 14: structured logs and tracing. */
	{ "log_format", KS_MAIN, KT_STRING, KEY_RESTART, C(log_format), 0, 0,
	    0, 0, 0, "text", NULL, check_log_format, 0 },
	{ "tracing", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_TRACING },
	{ "otlp_endpoint", KS_TRACING, KT_STRING, KEY_RESTART,
	    C(tracing.otlp_endpoint), 0, 0, 0, 0, 0, NULL, NULL,
	    check_otlp_endpoint, 0 },
	{ "sample_ratio", KS_TRACING, KT_RATIO, 0, C(tracing.sample_ratio),
	    0, 0, 0, 0, 0, NULL, NULL, NULL, 0 },
	/*
	 * Issue 11: the first tokens of every bus subject (and, with RabbitMQ,
	 * of its exchanges), so that deployments sharing a broker, each with
	 * its own stream, never take each other's work.
	 */
	{ "subject_prefix", KS_NATS, KT_STRING, KEY_RESTART,
	    C(nats.subject_prefix), 0, 0, 0, 0, 0, "saga", NULL,
	    check_subject_prefix, 0 },

	/*
	 * Issue 14: the HTTP listener (metrics, probes, the JSON API). Unset
	 * listen: no listener. Its address needs a restart; its bounds apply
	 * on SIGHUP to the connections and requests that come next.
	 */
	{ "http", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_HTTP },
	{ "listen", KS_HTTP, KT_ADDRESS, KEY_RESTART, C(http.listen),
	    C(http.listen_host), C(http.listen_port), 0, 0, 0, NULL, NULL,
	    NULL, 0 },
	{ "max_connections", KS_HTTP, KT_INT, 0, C(http.max_connections),
	    0, 0, 1, 100000, 256, NULL, NULL, NULL, 0 },
	{ "max_body_kb", KS_HTTP, KT_INT, 0, C(http.max_body_kb), 0, 0,
	    1, 65536, 1024, NULL, NULL, NULL, 0 },
	{ "timeout_ms", KS_HTTP, KT_INT, 0, C(http.timeout_ms), 0, 0,
	    100, 600000, 10000, NULL, NULL, NULL, 0 },
	/*
	 * Issue 15 (secure by configuration): least privilege, tokens,
	 * credentials of Redis and NATS. Secrets are KEY_SECRET: neither a
	 * reload warning nor an error shows them.
	 */
	{ "user", KS_MAIN, KT_STRING, KEY_RESTART, C(user), 0, 0,
	    0, 0, 0, NULL, NULL, check_account, 0 },
	{ "group", KS_MAIN, KT_STRING, KEY_RESTART, C(group), 0, 0,
	    0, 0, 0, NULL, NULL, check_account, 0 },
	{ "auth", KS_MAIN, KT_SECTION, 0, 0, 0, 0, 0, 0, 0, NULL, NULL,
	    NULL, KS_AUTH },
	{ "tokens_file", KS_AUTH, KT_STRING, 0, C(auth.tokens_file), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "db", KS_REDIS, KT_INT, KEY_RESTART, C(redis.db), 0, 0,
	    0, 65535, 0, NULL, NULL, NULL, 0 },
	{ "username", KS_REDIS, KT_STRING, KEY_RESTART, C(redis.username),
	    0, 0, 0, 0, 0, NULL, NULL, check_account, 0 },
	{ "password", KS_REDIS, KT_STRING, KEY_RESTART | KEY_SECRET,
	    C(redis.password), 0, 0, 0, 0, 0, NULL, NULL, check_password, 0 },
	{ "password_file", KS_REDIS, KT_STRING, KEY_RESTART,
	    C(redis.password_file), 0, 0, 0, 0, 0, NULL, NULL, check_path, 0 },
	{ "creds", KS_NATS, KT_STRING, KEY_RESTART, C(nats.creds), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "user", KS_NATS, KT_STRING, KEY_RESTART, C(nats.user), 0, 0,
	    0, 0, 0, NULL, NULL, check_account, 0 },
	{ "password", KS_NATS, KT_STRING, KEY_RESTART | KEY_SECRET,
	    C(nats.password), 0, 0, 0, 0, 0, NULL, NULL, check_password, 0 },
	{ "password_file", KS_NATS, KT_STRING, KEY_RESTART,
	    C(nats.password_file), 0, 0, 0, 0, 0, NULL, NULL, check_path, 0 },
	/* Issue 18: retention by state. */
	{ "completed_ttl", KS_REDIS, KT_INT, KEY_RESTART,
	    C(redis.completed_ttl), 0, 0, 0, 31536000, 0, NULL, NULL, NULL, 0 },

	/*
	 * Issue 15, TLS: the listeners' (tls), the participants' per service
	 * (services.NAME.tls) and the bus's (nats.tls). A group that is there
	 * turns TLS on, even empty for a service (the system's CAs). The
	 * listeners' files are read again on SIGHUP; NATS's at a restart.
	 */
	{ "tls", KS_MAIN, KT_SECTION, KEY_PRESENCE, C(tls.on), 0, 0, 0, 0, 0,
	    NULL, NULL, NULL, KS_TLS },
	{ "cert", KS_TLS, KT_STRING, KEY_REQUIRED, C(tls.cert), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "key", KS_TLS, KT_STRING, KEY_REQUIRED, C(tls.key), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "client_ca", KS_TLS, KT_STRING, 0, C(tls.client_ca), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "tls", KS_NATS, KT_SECTION, KEY_PRESENCE, C(nats.tls.on), 0, 0,
	    0, 0, 0, NULL, NULL, NULL, KS_NATS_TLS },
	{ "ca", KS_NATS_TLS, KT_STRING, KEY_RESTART, C(nats.tls.ca), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "cert", KS_NATS_TLS, KT_STRING, KEY_RESTART, C(nats.tls.cert), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "key", KS_NATS_TLS, KT_STRING, KEY_RESTART, C(nats.tls.key), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "tls", KS_SERVICE, KT_SECTION, KEY_PRESENCE, S(tls.on), 0, 0,
	    0, 0, 0, NULL, NULL, NULL, KS_SERVICE_TLS },
	{ "ca", KS_SERVICE_TLS, KT_STRING, 0, S(tls.ca), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "cert", KS_SERVICE_TLS, KT_STRING, 0, S(tls.cert), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "key", KS_SERVICE_TLS, KT_STRING, 0, S(tls.key), 0, 0,
	    0, 0, 0, NULL, NULL, check_path, 0 },
	{ "server_name", KS_SERVICE_TLS, KT_STRING, 0, S(tls.server_name),
	    0, 0, 0, 0, 0, NULL, NULL, check_host, 0 },
};

_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) == CONFIG_NKEYS,
    "CONFIG_NKEYS in config_int.h must count the rows of config_keys[]");

/* The scope's name as a key prefix, for the scopes that have a fixed one. */
static const char *const scope_prefix[] = {
	[KS_MAIN] = "", [KS_NATS] = "nats", [KS_RABBITMQ] = "rabbitmq",
	[KS_REDIS] = "redis", [KS_CALLBACKS] = "callbacks", [KS_LIMITS] = "limits",
	[KS_TRACING] = "tracing",
	[KS_HTTP] = "http",
	[KS_AUTH] = "auth",
	[KS_TLS] = "tls", [KS_NATS_TLS] = "nats.tls",
};

/* --- value checks ---------------------------------------------------------- */

int
config_is_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A name that can be one token of a NATS subject and of a process title. */
int
config_valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!config_is_token_char(*s))
			return 0;
	return 1;
}

int
config_check_pod_id(const char *s, char *why, size_t len)
{
	if (config_valid_name(s))
		return 0;
	snprintf(why, len, "expected 1 to %d letters, digits, '-' or '_'",
	    CONFIG_NAME_MAX);
	return -1;
}

static int
check_token(const char *s, char *why, size_t len)
{
	return config_check_pod_id(s, why, len);
}

/*
 * One or more subject tokens joined by '.': "saga", "acme.saga". No
 * wildcard, no empty token, so "<prefix>.work.>" is a plain filter.
 */
static int
check_subject_prefix(const char *s, char *why, size_t len)
{
	const char	*p = s;
	size_t		 tok = 0;

	if (strlen(s) > CONFIG_NAME_MAX)
		goto bad;
	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (tok == 0)
				goto bad;
			tok = 0;
		} else if (config_is_token_char(*p))
			tok++;
		else
			goto bad;
	}
	if (tok > 0)
		return 0;
bad:
	snprintf(why, len, "expected up to %d characters: tokens of letters, "
	    "digits, '-' or '_' joined by '.'", CONFIG_NAME_MAX);
	return -1;
}

static int
check_nats_url(const char *s, char *why, size_t len)
{
	size_t n = strncmp(s, "tls://", 6) == 0 ? 6 : 7;

	if ((strncmp(s, "nats://", 7) == 0 || n == 6) && s[n] != '\0' &&
	    strpbrk(s, " \t\r\n") == NULL)
		return 0;
	snprintf(why, len, "expected a URL starting with nats:// or tls://");
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

static int
check_log_format(const char *s, char *why, size_t len)
{
	if (strcmp(s, "text") == 0 || strcmp(s, "json") == 0)
		return 0;
	snprintf(why, len, "expected \"text\" or \"json\"");
	return -1;
}

/*
 * OTLP/HTTP: http://host[:port][/path] (port 80 and /v1/traces when left
 * out). https is not spoken: a collector on another host sits behind a
 * local agent or sidecar.
 */
static int
check_otlp_endpoint(const char *s, char *why, size_t len)
{
	const char *host = s + 7;

	if (strncmp(s, "http://", 7) == 0 && strlen(s) < 1024 &&
	    *host != '\0' && *host != '/' && *host != ':' &&
	    strpbrk(s, " \t\r\n?#@") == NULL)
		return 0;
	snprintf(why, len, "expected an OTLP/HTTP URL "
	    "\"http://host[:port][/path]\" (https is not supported)");
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

/* "host:port" with a port from 1 to 65535: a Sentinel's address. */
static int
check_hostport(const char *s, char *why, size_t len)
{
	const char	*colon = strrchr(s, ':');
	char		*end;
	long		 port;

	if (colon != NULL && colon > s && (size_t)(colon - s) < 256 &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-_:") == strlen(s)) {
		port = strtol(colon + 1, &end, 10);
		if (colon[1] != '\0' && *end == '\0' && port >= 1 &&
		    port <= 65535)
			return 0;
	}
	snprintf(why, len, "expected \"host:port\"");
	return -1;
}

/* A callbacks.allow entry: host, host:port, [v6]:port or a bare v6. */
static int
check_allow(const char *s, char *why, size_t len)
{
	const char	*colon = strchr(s, ':');
	char		 host[HOSTLEN];
	int		 port;

	/* A name, an IPv4 address or a bare IPv6 one: ports 80 and 443. */
	if (check_host(s, why, len) == 0 && (colon == NULL ||
	    (strchr(colon + 1, ':') != NULL &&
	    strspn(s, "0123456789abcdefABCDEF:.") == strlen(s))))
		return 0;
	if (util_parse_hostport(s, host, sizeof(host), &port, why,
	    len) == 0 && host[0] != '\0' && check_host(host, why, len) == 0)
		return 0;
	snprintf(why, len, "expected a host name or address, with a port "
	    "as \"host:port\" or \"[v6]:port\" if not 80 or 443");
	return -1;
}

/* A user, group or ACL user name: no spaces, no control bytes. */
static int
check_account(const char *s, char *why, size_t len)
{
	size_t n = strlen(s);

	if (n > 0 && n <= 256 && strpbrk(s, " \t\r\n:") == NULL)
		return 0;
	snprintf(why, len, "expected a name of 1 to 256 bytes without "
	    "spaces or ':'");
	return -1;
}

/* Says nothing of the value: the error is shown, the password is not. */
static int
check_password(const char *s, char *why, size_t len)
{
	size_t n = strlen(s);

	if (n > 0 && n <= 1024 && strpbrk(s, "\r\n") == NULL)
		return 0;
	snprintf(why, len, "expected 1 to 1024 bytes on one line");
	return -1;
}

/*
 * A KEY_SECRET value fit to show: a password as "***", a URL without its
 * password.
 */
const char *
config_secret_shown(const struct config_key *k, const char *v, char *buf,
    size_t len)
{
	if (k->check != check_password)
		return util_url_redact(v, buf, len);
	snprintf(buf, len, "***");
	return buf;
}

/* --- SIGHUP ---------------------------------------------------------------- */

static const char *
restart_key_name(const struct config_key *k, char *buf, size_t len)
{
	const char *prefix = scope_prefix[k->scope];

	snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
	return buf;
}

/* A list of strings as a reload's message shows it: [ "a", "b" ]. */
static void
strlist_text(char *const *l, char *buf, size_t len)
{
	size_t	used;

	snprintf(buf, len, "[");
	for (size_t i = 0; l != NULL && l[i] != NULL; i++) {
		used = strlen(buf);
		snprintf(buf + used, len - used, "%s \"%s\"", i ? "," : "",
		    l[i]);
	}
	used = strlen(buf);
	snprintf(buf + used, len - used, " ]");
}

static void
strlist_copy(char ***dst, size_t *count, char *const *src)
{
	size_t n = 0;

	if (*dst != NULL)
		for (size_t i = 0; (*dst)[i] != NULL; i++)
			free((*dst)[i]);
	free(*dst);
	while (src != NULL && src[n] != NULL)
		n++;
	*dst = util_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		(*dst)[i] = util_xstrdup(src[i]);
	*count = n;
}

int
config_reload_check(const struct config *old, const struct config *new,
    char *err, size_t errlen)
{
	size_t	used = 0;
	int	changed = 0;
	char	key[64], a[1200], b[1200];

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key	*k = &config_keys[i];
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
		} else if (k->type == KT_STRLIST) {
			strlist_text(*(char **const *)po, a, sizeof(a));
			strlist_text(*(char **const *)pn, b, sizeof(b));
			if (strcmp(a, b) == 0)
				continue;
		} else {
			const char *so = *(char *const *)po;
			const char *sn = *(char *const *)pn;

			char	sa[1100], sb[1100];

			if ((so == NULL && sn == NULL) || (so != NULL &&
			    sn != NULL && strcmp(so, sn) == 0))
				continue;
			if ((k->flags & KEY_SECRET) && so != NULL)
				so = config_secret_shown(k, so, sa, sizeof(sa));
			if ((k->flags & KEY_SECRET) && sn != NULL)
				sn = config_secret_shown(k, sn, sb, sizeof(sb));
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
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key	*k = &config_keys[i];
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
			config_strset((char **)pn, *(char *const *)po);
			break;
		case KT_STRLIST:
			strlist_copy((char ***)pn, (size_t *)((char *)new +
			    k->off2), *(char **const *)po);
			break;
		default:
			break;
		}
	}
}
