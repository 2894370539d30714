/*
 * service.c - the master's gRPC side, started and stopped through the
 * master's hooks: the server on `listen` (Health, Orchestrator), the client
 * and the store the sync engine uses, and the bus (NATS JetStream or
 * RabbitMQ, as `queue` says) that async and throttling sagas travel on: it
 * declares the work stream at every (re)connection and logs each change of
 * the connection. saga.v1.Orchestrator reports NOT_SERVING only while Redis
 * is down; the empty service name also while the bus is, when a flow needs
 * it; a bus down refuses async and throttling Runs only. On stop it reports NOT_SERVING, refuses new sagas,
 * sends GOAWAY and keeps the loop busy until the sagas in flight have ended
 * or shutdown_timeout_ms has passed. It also applies the `limits` section to
 * the server (and on SIGHUP), sizes RLIMIT_NOFILE for max_connections, logs
 * what the server reports (accept failures, refused connections) and hands
 * freed heap back to the system once a burst is over. With a `tls` group
 * the listener speaks TLS (tls.h), its certificate read again on SIGHUP (a
 * bad one keeps the running one); the services' TLS files are checked at
 * start, so a typo stops sagad rather than every saga.
 */
#include "autoconf.h"

#include <sys/resource.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth.h"
#include "bus.h"
#include "bus_config.h"
#include "config.h"
#include "grpc/client.h"
#include "grpc/server.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "orch.h"
#include "service.h"
#include "store.h"
#include "supervisor.h"
#include "tls.h"
#include "util.h"
#include "work.h"

#define SERVICE_CONNS_PER_TARGET	8
#define SERVICE_FD_RESERVE	256	/* Redis, NATS, workers, participants */
#define SERVICE_WATCHES		1024	/* the store's max_watches */
#define SERVICE_WATCH_SHARE	8	/* one address holds 1/8 of them at most */
#define SERVICE_TRIM_MB		32	/* bursts worth a malloc_trim() */
#define ORCH_SERVICE	"saga.v1.Orchestrator"

struct service {
	struct master		*m;
	struct grpc_server	*srv;
	struct health		*health;
	struct grpc_client	*client;
	struct store		*store;
	struct bus		*bus;
	struct orch		*orch;
	struct tls		*tls;		/* the listener's; NULL: h2c */
	char			 owner[192];
	char			 where[1100];	/* the bus URL, no password */
	int			 shut;		/* GOAWAY done */
	int			 max_conns;	/* max_connections, maybe clamped */
	size_t			 mem_peak;	/* of the server's buffers, since a trim */
	uint64_t		 cron_ticks;
	int			 redis_up;
	int			 stopping;	/* health stays NOT_SERVING */
	unsigned		 extra_gen;	/* the extra topics the sup has */
	struct http_server	*http;		/* http.listen; NULL: none */
	int			 probing;	/* a readiness probe is out */
	int64_t			 probe_sent;	/* mono ms */
	int			 probe_late;	/* Redis is slower than READY_MS */
	struct auth		*auth;		/* NULL: no auth.tokens_file */
	int64_t			 authlog_ms;	/* the last refusal logged */
	unsigned long		 authlog_held;	/* refusals not logged since */
};

#define SERVICE_READY_MS	700	/* a probe unanswered this long: not ready */

/* The server's side of the limits section. */
static void
service_limits(const struct service *sv, const struct config *cfg,
    struct grpc_server_opts *o)
{
	memset(o, 0, sizeof(*o));
	/* Half the budget for buffers; half for what they decode into. */
	o->memory_max = (size_t)cfg->limits.memory_mb * 1024 * 1024 / 2;
	o->max_connections = sv->max_conns;
	o->max_connections_per_ip = cfg->limits.max_connections_per_ip;
	o->max_streaming_per_ip = SERVICE_WATCHES / SERVICE_WATCH_SHARE;
	o->handshake_timeout_ms = cfg->limits.handshake_timeout_ms;
	o->idle_timeout_ms = cfg->limits.idle_timeout_ms > 0 ?
	    cfg->limits.idle_timeout_ms : -1;
}

static void
server_event(int kind SAGAD_UNUSED, const char *what, unsigned long n,
    void *arg SAGAD_UNUSED)
{
	if (n > 1)
		log_warnx("grpc: %s (%lu times since the last report)", what,
		    n);
	else
		log_warnx("grpc: %s", what);
}

/*
 * Every connection is a descriptor: raise RLIMIT_NOFILE to what
 * max_connections needs; when the hard limit forbids it, say so and serve
 * fewer connections rather than fail accept() forever.
 */
static void
service_nofile(struct service *sv, const struct config *cfg)
{
	struct rlimit	rl;
	rlim_t		need = (rlim_t)cfg->limits.max_connections +
	    SERVICE_FD_RESERVE;

	sv->max_conns = cfg->limits.max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ?
	    rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur >= need)
		return;
	sv->max_conns = rl.rlim_cur > SERVICE_FD_RESERVE + 16 ?
	    (int)(rl.rlim_cur - SERVICE_FD_RESERVE) : 16;
	log_warnx("RLIMIT_NOFILE is %llu and cannot be raised to the %llu "
	    "that limits.max_connections = %d needs: serving %d connections "
	    "at most (raise LimitNOFILE or ulimit -n)",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)need,
	    cfg->limits.max_connections, sv->max_conns);
}

/*
 * A refused call, for the log: with the peer's address and what it asked
 * (a gRPC path, an HTTP request line), never the token; at most one line
 * a second, with the count of those held back. Both listeners come here.
 */
static void
auth_refused(struct service *sv, const char *peer, const char *what,
    enum auth_result r, const char *name, enum auth_role need)
{
	int64_t now = util_mono_ms();

	if (now - sv->authlog_ms < 1000) {
		sv->authlog_held++;
		return;
	}
	if (r == AUTH_FORBIDDEN)
		log_warnx("auth: %s from %s: %s refused: the %s role is needed"
		    " (%lu more refusals not logged)", name, peer, what,
		    auth_role_name(need), sv->authlog_held);
	else
		log_warnx("auth: %s from %s: %s refused (%lu more refusals not "
		    "logged)", r == AUTH_MISSING ? "no token" : "a wrong token",
		    peer, what, sv->authlog_held);
	sv->authlog_ms = now;
	sv->authlog_held = 0;
}

/*
 * The gRPC server's authorize hook: the token of `authorization: Bearer`
 * against auth.tokens_file; the token's name becomes the caller's name.
 */
static int
service_authorize(struct grpc_call *c, void *arg, char *msg, size_t msglen)
{
	struct service			*sv = arg;
	const struct grpc_metadata	*md = grpc_call_metadata(c);
	const struct grpc_md		*hdr = NULL;
	enum auth_role			 need;
	enum auth_result		 r;
	const char			*name;

	if (sv->auth == NULL)
		return GRPC_STATUS_OK;
	need = auth_role_for_grpc(grpc_call_path(c));
	for (size_t i = 0; i < md->n && hdr == NULL; i++)
		if (strcmp(md->items[i].key, "authorization") == 0)
			hdr = &md->items[i];
	r = auth_check(sv->auth, hdr != NULL ? (const char *)hdr->value : NULL,
	    hdr != NULL ? hdr->len : 0, need, &name);
	if (name != NULL)
		grpc_call_set_caller(c, name);
	if (r == AUTH_OK)
		return GRPC_STATUS_OK;
	snprintf(msg, msglen, "%s", auth_result_text(r, need));
	auth_refused(sv, grpc_call_peer(c), grpc_call_path(c), r, name, need);
	return auth_grpc_status(r);
}

_Static_assert((int)HTTP_ROLE_NONE == (int)AUTH_ROLE_NONE &&
    (int)HTTP_ROLE_READ == (int)AUTH_ROLE_READ &&
    (int)HTTP_ROLE_RUN == (int)AUTH_ROLE_RUN &&
    (int)HTTP_ROLE_OPERATE == (int)AUTH_ROLE_OPERATE,
    "http.h's roles are auth.h's, value for value");

int
service_http_authorize(void *arg, const char *authorization, int role,
    const char *peer, const char *what, int *status, char *msg, size_t msglen)
{
	struct service		*sv = arg;
	enum auth_role		 need = (enum auth_role)role;
	enum auth_result	 r;
	const char		*name;

	r = auth_check(sv->auth, authorization, authorization != NULL ?
	    strlen(authorization) : 0, need, &name);
	if (r == AUTH_OK)
		return 1;
	*status = auth_http_status(r);
	snprintf(msg, msglen, "%s", auth_result_text(r, need));
	auth_refused(sv, peer, what, r, name, need);
	return 0;
}

/*
 * Loads auth.tokens_file (at start, on SIGHUP). A file that cannot be
 * used keeps the tokens already loaded on SIGHUP, and stops the start.
 */
static int
service_auth_load(struct service *sv, const struct config *cfg, int reload,
    char *err, size_t errlen)
{
	struct auth	*a;
	char		 warn[SAGAD_ERRLEN];

	if (cfg->auth.tokens_file == NULL) {
		if (sv->auth != NULL)
			log_warnx("auth: auth.tokens_file is unset now: every "
			    "client may call every method");
		auth_free(sv->auth);
		sv->auth = NULL;
		return 0;
	}
	if ((a = auth_load(cfg->auth.tokens_file, warn, sizeof(warn), err,
	    errlen)) == NULL) {
		if (reload)
			log_warnx("auth: %s; keeping the %zu tokens loaded "
			    "before", err, auth_count(sv->auth));
		return -1;
	}
	if (warn[0] != '\0')
		log_warnx("auth: %s", warn);
	auth_free(sv->auth);
	sv->auth = a;
	log_info("auth: %zu tokens from %s", auth_count(a),
	    cfg->auth.tokens_file);
	return 0;
}

/* Whether a flow of the running config travels on the bus. */
static int
needs_bus(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nflows; i++)
		if (cfg->flows[i].mode != SAGA_MODE_SYNC)
			return 1;
	return 0;
}

/*
 * The empty service name: ready while Redis is up and, when a flow needs
 * the bus, the bus is connected (as /readyz in DESIGN.md).
 */
static void
ready_update(struct service *sv)
{
	int	ready;

	if (sv->health == NULL || sv->stopping)
		return;
	ready = sv->redis_up && !sv->probe_late && (sv->bus == NULL ||
	    !needs_bus(sv->m->cfg) || bus_is_connected(sv->bus));
	health_set(sv->health, "", ready ? HEALTH_SERVING :
	    HEALTH_NOT_SERVING);
}

/*
 * The readiness probe: a read of a key that never exists, on the store's
 * own connection, ten times a second. A connection that is up but whose
 * Redis stopped answering (SIGSTOP, a partition) is only noticed by the
 * store after its command timeout; the probe notices within READY_MS.
 */
static void
probe_done(enum store_result res SAGAD_UNUSED, struct store_saga *rec,
    const char *err SAGAD_UNUSED, void *arg)
{
	struct service *sv = arg;

	(void)rec;
	sv->probing = 0;
	if (sv->probe_late) {
		sv->probe_late = 0;
		ready_update(sv);
	}
}

static void
probe_cron(struct service *sv)
{
	int64_t now = util_mono_ms();

	if (sv->store == NULL || sv->stopping)
		return;
	if (sv->probing) {
		if (!sv->probe_late && now - sv->probe_sent > SERVICE_READY_MS) {
			sv->probe_late = 1;
			ready_update(sv);
		}
		return;
	}
	if (!store_is_up(sv->store))
		return;
	sv->probing = 1;
	sv->probe_sent = now;
	store_get(sv->store, "sagad-readiness-probe", probe_done, sv);
}

/* /readyz: as the empty service name of grpc.health.v1.Health. */
static int
http_ready(void *arg, char *why, size_t whylen)
{
	struct service *sv = arg;

	if (sv->stopping) {
		snprintf(why, whylen, "shutting down");
		return 0;
	}
	if (!sv->redis_up || sv->probe_late) {
		snprintf(why, whylen, "redis is unreachable");
		return 0;
	}
	if (sv->bus != NULL && needs_bus(sv->m->cfg) &&
	    !bus_is_connected(sv->bus)) {
		snprintf(why, whylen, "%s is unreachable",
		    bus_config_name(sv->m->cfg));
		return 0;
	}
	return 1;
}

/* /metrics: the shared segment, the dependencies, the processes. */
static void
http_metrics(struct evbuffer *out, void *arg)
{
	struct service		*sv = arg;
	struct metrics_proc	 mp;
	const char		*bus = bus_config_name(sv->m->cfg);
	struct sup		*sup = sv->m->sup;
	char			*buf = NULL;
	size_t			 len = 0;
	FILE			*fp = open_memstream(&buf, &len);

	if (fp == NULL)
		return;
	metrics_render(fp);
	fputs("# HELP sagad_dependency_up Whether the master reaches a "
	    "server it needs (1) or not (0).\n"
	    "# TYPE sagad_dependency_up gauge\n", fp);
	fprintf(fp, "sagad_dependency_up{dep=\"redis\"} %d\n",
	    sv->redis_up && !sv->probe_late);
	fprintf(fp, "sagad_dependency_up{dep=\"%s\"} %d\n",
	    strcmp(bus, "rabbitmq") == 0 ? "rabbitmq" : "nats",
	    sv->bus != NULL && bus_is_connected(sv->bus));
	memset(&mp, 0, sizeof(mp));
	(void)metrics_proc_read(getpid(), &mp);
	for (size_t i = 0; sup != NULL && i < sup->nslots; i++)
		if (sup->slots[i]->pid > 0)
			(void)metrics_proc_read(sup->slots[i]->pid, &mp);
	metrics_proc_render(fp, &mp);
	fclose(fp);
	evbuffer_add(out, buf, len);
	free(buf);
}

static void
http_opts_of(const struct config *cfg, struct http_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_connections = cfg->http.max_connections;
	o->max_body = (size_t)cfg->http.max_body_kb * 1024;
	o->timeout_ms = cfg->http.timeout_ms;
}

static int
http_start(struct service *sv, const struct config *cfg, char *err,
    size_t errlen)
{
	struct http_hooks	hk;
	struct http_opts	ho;

	if (cfg->http.listen == NULL)
		return 0;
	memset(&hk, 0, sizeof(hk));
	hk.ready = http_ready;
	hk.metrics = http_metrics;
	hk.authorize = service_http_authorize;
	hk.arg = sv;
	hk.grpc = sv->srv;
	hk.tls = sv->tls;	/* the same certificate, reloaded with it */
	http_opts_of(cfg, &ho);
	if ((sv->http = http_new(sv->m->base, &ho, &hk, err, errlen)) == NULL)
		return -1;
	if (http_listen(sv->http, cfg->http.listen_host, cfg->http.listen_port,
	    err, errlen) == -1)
		return -1;
	log_info("listening on %s (HTTP%s: /metrics, /readyz, /api/v1/sagas)",
	    cfg->http.listen, sv->tls == NULL ? "" : tls_mtls(sv->tls) ?
	    "S, client certificates required" : "S");
	return 0;
}

static void
store_status(int up, const char *why, void *arg)
{
	struct service *sv = arg;

	sv->redis_up = up;
	if (up)
		log_info("redis: connected");
	else
		log_warnx("redis: unavailable: %s; new sagas are refused "
		    "until it is back", why != NULL ? why : "");
	if (sv->health != NULL)
		health_set(sv->health, ORCH_SERVICE,
		    up ? HEALTH_SERVING : HEALTH_NOT_SERVING);
	ready_update(sv);
}

/*
 * Creates or updates the stream; at start and at every (re)connection.
 * With err (at start) a failure is the caller's to report: sagad refuses to
 * start rather than serve Runs that another deployment's workers might take
 * or that nothing consumes. Without, it is logged.
 */
static int
declare_stream(struct service *sv, char *err, size_t errlen)
{
	char		 subject[WORK_SUBJECT_MAX], why[SAGAD_ERRLEN];
	const char	*subjects[] = { subject };

	(void)work_stream_subjects(subject, sizeof(subject),
	    sv->m->cfg->nats.subject_prefix);
	if (bus_declare_stream(sv->bus, subjects, 1, why, sizeof(why)) == 0) {
		log_debug("%s: work stream ready", bus_config_name(sv->m->cfg));
		return 0;
	}
	if (err != NULL)
		snprintf(err, errlen, "%s: cannot make the work stream: %s",
		    bus_config_name(sv->m->cfg), why);
	else
		log_warnx("%s: declare the work stream: %s; async and "
		    "throttling Runs will fail until it exists",
		    bus_config_name(sv->m->cfg), why);
	return -1;
}

static void
bus_status(struct bus *bus, enum bus_state state, void *arg)
{
	struct service *sv = arg;

	const char *name = bus_config_name(sv->m->cfg);

	switch (state) {
	case BUS_CONNECTED:
	case BUS_RECONNECTED:
		log_info("%s: %s to %s", name, state == BUS_CONNECTED ?
		    "connected" : "reconnected", sv->where);
		(void)declare_stream(sv, NULL, 0);
		break;
	case BUS_DISCONNECTED:
		log_warnx("%s: disconnected from %s; async and throttling "
		    "Runs are refused until it is back", name, sv->where);
		break;
	case BUS_CLOSED:
		log_warnx("%s: connection to %s closed for good (%s); async "
		    "and throttling Runs are refused until sagad restarts",
		    name, sv->where, bus_state_why(bus)[0] != '\0' ?
		    bus_state_why(bus) : "no reason given");
		break;
	}
	ready_update(sv);
}

static void
bus_warned(struct bus *bus, const char *msg, void *arg)
{
	struct service *sv = arg;

	(void)bus;
	log_warnx("%s: %s", bus_config_name(sv->m->cfg), msg);
}

int
service_tls_check(const struct config *cfg, char *err, size_t errlen)
{
	struct tls	*t;
	char		 why[SAGAD_ERRLEN];

	for (size_t i = 0; i < cfg->nservices; i++) {
		const struct config_service *cs = &cfg->services[i];

		if (!cs->tls.on)
			continue;
		if ((t = tls_client_new(cs->tls.ca, cs->tls.cert, cs->tls.key,
		    why, sizeof(why))) == NULL) {
			snprintf(err, errlen, "services.%s.tls: %s", cs->name,
			    why);
			return -1;
		}
		tls_free(t);
	}
	/* cnats reads the same PEM files: OpenSSL's verdict is its. */
	if (cfg->nats.tls.on && (cfg->nats.tls.ca != NULL ||
	    cfg->nats.tls.cert != NULL)) {
		if ((t = tls_client_new(cfg->nats.tls.ca, cfg->nats.tls.cert,
		    cfg->nats.tls.key, why, sizeof(why))) == NULL) {
			snprintf(err, errlen, "nats.tls: %s", why);
			return -1;
		}
		tls_free(t);
	}
	if (cfg->tls.on) {
		if ((t = tls_server_new(cfg->tls.cert, cfg->tls.key,
		    cfg->tls.client_ca, why, sizeof(why))) == NULL) {
			snprintf(err, errlen, "tls: %s", why);
			return -1;
		}
		tls_free(t);
	}
	return 0;
}

/*
 * The listener's TLS context (issue 15), after a check of every TLS file:
 * one that does not load stops the start with its reason.
 */
static int
service_tls(struct service *sv, const struct config *cfg, char *err,
    size_t errlen)
{
	char why[SAGAD_ERRLEN];

	if (service_tls_check(cfg, err, errlen) == -1)
		return -1;
	if (!cfg->tls.on)
		return 0;
	if ((sv->tls = tls_server_new(cfg->tls.cert, cfg->tls.key,
	    cfg->tls.client_ca, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "tls: %s", why);
		return -1;
	}
	grpc_server_set_tls(sv->srv, sv->tls);
	return 0;
}

static int
service_start(struct master *m, void *arg, char *err, size_t errlen)
{
	struct service		*sv = arg;
	struct config		*cfg = m->cfg;
	struct store_params	 sp;
	struct bus_opts		 bo;
	struct grpc_client_opts	 copts;

	struct grpc_server_opts	 so;

	memset(&copts, 0, sizeof(copts));
	sv->m = m;
	snprintf(sv->owner, sizeof(sv->owner), "%s/%ld", cfg->pod_id,
	    (long)getpid());
	/*
	 * Big buffers (replies, requests of megabytes) come from mmap and go
	 * back to the system when freed, whatever glibc's sliding threshold
	 * would have decided.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	/*
	 * The pod's metrics segment, before any worker starts: they get its
	 * descriptor. Only with an HTTP listener to serve it.
	 */
	if (cfg->http.listen != NULL && metrics_create(err, errlen) == -1)
		return -1;
	service_nofile(sv, cfg);
	service_limits(sv, cfg, &so);
	so.on_event = server_event;
	so.event_arg = sv;
	if (service_auth_load(sv, cfg, 0, err, errlen) == -1)
		return -1;
	so.authorize = service_authorize;
	so.authorize_arg = sv;
	if ((sv->srv = grpc_server_new(m->base, &so, err, errlen)) == NULL)
		return -1;
	if ((sv->health = health_new(sv->srv, err, errlen)) == NULL)
		return -1;
	if (service_tls(sv, cfg, err, errlen) == -1)
		return -1;
	/*
	 * The step client: a participant's server takes ~1000 streams per
	 * connection, and sync sagas may hold far more calls open (10,000 at 1 s
	 * latency), so each service gets a few connections. The queue behind
	 * them never sheds on its own: max_inflight and max_queue bound it.
	 */
	copts.conns_per_target = SERVICE_CONNS_PER_TARGET;
	copts.max_queued = 1000000;
	if ((sv->client = grpc_client_new(m->base, &copts, err, errlen)) ==
	    NULL)
		return -1;
	memset(&sp, 0, sizeof(sp));
	sp.host = cfg->redis.host;
	sp.port = cfg->redis.port;
	sp.saga_ttl = cfg->redis.saga_ttl;
	sp.db = cfg->redis.db;
	sp.username = cfg->redis.username;
	sp.password = cfg->redis.password;
	sp.password_file = cfg->redis.password_file;
	sp.sentinels = (const char *const *)cfg->redis.sentinels;
	sp.master_name = cfg->redis.master_name;
	sp.min_replicas_ack = cfg->redis.min_replicas_ack;
	sp.ack_timeout_ms = cfg->redis.ack_timeout_ms;
	/* Credentials Redis refuses stop the start, loudly. */
	if (store_probe(&sp, 2000, err, errlen) == -1)
		return -1;
	sp.completed_ttl = cfg->redis.completed_ttl;
	if ((sv->store = store_new(m->base, &sp, err, errlen)) == NULL)
		return -1;
	sv->redis_up = store_is_up(sv->store);
	health_set(sv->health, ORCH_SERVICE, sv->redis_up ?
	    HEALTH_SERVING : HEALTH_NOT_SERVING);
	store_set_status_cb(sv->store, store_status, sv);
	memset(&bo, 0, sizeof(bo));
	bus_config_opts(cfg, &bo);
	bus_config_where(cfg, sv->where, sizeof(sv->where));
	bo.name = sv->owner;
	bo.state_cb = bus_status;
	bo.warn_cb = bus_warned;
	bo.state_arg = sv;
	if ((sv->bus = bus_open(m->base, &bo, err, errlen)) == NULL)
		return -1;
	if (bus_is_connected(sv->bus)) {
		log_info("%s: connected to %s", bus_config_name(cfg),
		    sv->where);
		if (needs_bus(cfg) && declare_stream(sv, err, errlen) == -1)
			return -1;
		if (!needs_bus(cfg))
			(void)declare_stream(sv, NULL, 0);
	} else
		log_warnx("%s: %s is not reachable yet; async and throttling "
		    "Runs are refused until it is", bus_config_name(cfg),
		    sv->where);
	ready_update(sv);
	sv->orch = orch_new(m->base, cfg, sv->srv, sv->client, sv->store,
	    sv->owner, err, errlen);
	if (sv->orch == NULL)
		return -1;
	orch_set_log(sv->orch, log_saga, NULL);
	orch_set_bus(sv->orch, sv->bus);
	if (grpc_server_listen(sv->srv, cfg->listen_host, cfg->listen_port,
	    err, errlen) == -1)
		return -1;
	log_info("listening on %s (gRPC%s), pod %s", cfg->listen,
	    sv->tls == NULL ? "" : tls_mtls(sv->tls) ? " over TLS, client "
	    "certificates required" : " over TLS", cfg->pod_id);
	return http_start(sv, cfg, err, errlen);
}

static void
service_reload(struct master *m, void *arg,
    const struct config *old SAGAD_UNUSED)
{
	struct service *sv = arg;
	struct grpc_server_opts so;
	const struct config *cfg = m->cfg;
	char err[SAGAD_ERRLEN];

	/*
	 * The listener's certificate: new connections get the new one; a
	 * file that does not load keeps the running one. Turning TLS on or
	 * off takes a restart: clients would fail either way.
	 */
	if (cfg->tls.on != (sv->tls != NULL))
		log_warnx("reload: %s: tls: only a restart can turn TLS %s; "
		    "keeping it %s", cfg->path, cfg->tls.on ? "on" : "off",
		    cfg->tls.on ? "off" : "on");
	else if (sv->tls != NULL) {
		if (tls_reload(sv->tls, cfg->tls.client_ca, cfg->tls.cert,
		    cfg->tls.key, err, sizeof(err)) == -1)
			log_warnx("reload: tls: %s; keeping the running "
			    "certificate", err);
		else
			log_info("reload: tls: certificate %s loaded%s",
			    cfg->tls.cert, cfg->tls.client_ca != NULL ?
			    ", client certificates required" : "");
	}

	(void)service_auth_load(sv, m->cfg, 1, err, sizeof(err));
	orch_set_config(sv->orch, m->cfg);
	service_limits(sv, m->cfg, &so);
	grpc_server_set_limits(sv->srv, &so);
	if (sv->http != NULL) {
		struct http_opts ho;

		http_opts_of(m->cfg, &ho);
		http_set_limits(sv->http, &ho);
	}
	ready_update(sv);
}

static void
server_down(struct grpc_server *srv SAGAD_UNUSED, void *arg)
{
	struct service *sv = arg;

	sv->shut = 1;
	log_info("gRPC server drained");
}

static void
service_stop(struct master *m SAGAD_UNUSED, void *arg)
{
	struct service *sv = arg;

	if (sv->srv == NULL)
		return;
	sv->stopping = 1;
	health_set_all_not_serving(sv->health);
	health_shutdown(sv->health);
	if (sv->orch != NULL) {
		orch_drain(sv->orch);
		log_info("waiting for %zu sagas in flight",
		    orch_running(sv->orch));
	}
	grpc_server_shutdown(sv->srv, server_down, sv);
}

static void
service_cron(struct master *m, void *arg)
{
	struct service	*sv = arg;
	size_t		 mem;

	if (sv->orch != NULL) {
		struct orch_topic	*t;
		struct sup_topic	*st;
		unsigned		 gen;
		size_t			 n;

		orch_cron(sv->orch);
		/* Workers on adopted pods' and removed topics, or no more. */
		n = orch_extra_topics(sv->orch, &t, &gen);
		if (gen != sv->extra_gen) {
			sv->extra_gen = gen;
			st = util_xcalloc(n + 1, sizeof(*st));
			for (size_t i = 0; i < n; i++) {
				st[i].name = t[i].name;
				st[i].workers = 1;
				st[i].concurrency = t[i].concurrency;
			}
			master_set_extra(m, st, n);
			free(st);
		}
		free(t);
	}
	probe_cron(sv);
	if (sv->srv == NULL || ++sv->cron_ticks % MASTER_HZ != 0)
		return;
	/*
	 * Once a second: after a burst of big buffers has drained, give the
	 * heap's free pages back, so that an idle master is small again.
	 */
	mem = grpc_server_memory(sv->srv);
	if (mem > sv->mem_peak)
		sv->mem_peak = mem;
	if ((sv->mem_peak >= (size_t)SERVICE_TRIM_MB * 1024 * 1024 &&
	    mem < sv->mem_peak / 8) || (sv->cron_ticks % (10 * MASTER_HZ) ==
	    0 && mem < (size_t)SERVICE_TRIM_MB * 1024 * 1024 / 8)) {
		malloc_trim(0);
		sv->mem_peak = mem;
	}
}

static int
service_busy(struct master *m SAGAD_UNUSED, void *arg)
{
	struct service *sv = arg;

	return (sv->orch != NULL && orch_running(sv->orch) > 0) ||
	    (sv->srv != NULL && !sv->shut);
}

struct service *
service_new(struct master_hooks *h)
{
	struct service *sv = util_xcalloc(1, sizeof(*sv));

	memset(h, 0, sizeof(*h));
	h->start = service_start;
	h->reload = service_reload;
	h->stop = service_stop;
	h->cron = service_cron;
	h->busy = service_busy;
	h->arg = sv;
	return sv;
}

void
service_free(struct service *sv)
{
	if (sv == NULL)
		return;
	if (sv->orch != NULL && orch_running(sv->orch) > 0)
		log_warnx("%zu sagas still in flight at exit: their leases "
		    "run out and another master compensates them",
		    orch_running(sv->orch));
	http_free(sv->http);		/* its calls end before the orch's */
	if (sv->orch != NULL)
		orch_close(sv->orch);
	bus_close(sv->bus);
	store_free(sv->store);
	orch_free(sv->orch);
	grpc_server_free(sv->srv);
	health_free(sv->health);
	grpc_client_free(sv->client);
	tls_free(sv->tls);
	auth_free(sv->auth);
	free(sv);
}
