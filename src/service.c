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
 * or shutdown_timeout_ms has passed.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bus.h"
#include "bus_config.h"
#include "config.h"
#include "grpc/client.h"
#include "grpc/server.h"
#include "health.h"
#include "log.h"
#include "master.h"
#include "orch.h"
#include "service.h"
#include "store.h"
#include "util.h"
#include "work.h"

#define SERVICE_CONNS_PER_TARGET	8
#define ORCH_SERVICE	"saga.v1.Orchestrator"

struct service {
	struct master		*m;
	struct grpc_server	*srv;
	struct health		*health;
	struct grpc_client	*client;
	struct store		*store;
	struct bus		*bus;
	struct orch		*orch;
	char			 owner[192];
	char			 where[1100];	/* the bus URL, no password */
	int			 shut;		/* GOAWAY done */
	int			 redis_up;
	int			 stopping;	/* health stays NOT_SERVING */
};

static void
orch_log(int warn, const char *id, const char *msg, void *arg)
{
	if (warn)
		log_warnx("saga %s: %s", id != NULL ? id : "-", msg);
	else
		log_info("saga %s: %s", id != NULL ? id : "-", msg);
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
	ready = sv->redis_up && (sv->bus == NULL || !needs_bus(sv->m->cfg) ||
	    bus_is_connected(sv->bus));
	health_set(sv->health, "", ready ? HEALTH_SERVING :
	    HEALTH_NOT_SERVING);
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

/* Creates or updates the stream; at start and at every (re)connection. */
static void
declare_stream(struct service *sv)
{
	const char	*subjects[] = { WORK_STREAM_SUBJECTS };
	char		 err[SAGAD_ERRLEN];

	if (bus_declare_stream(sv->bus, subjects, 1, err, sizeof(err)) == -1)
		log_warnx("%s: declare the work stream: %s; async and "
		    "throttling Runs will fail until it exists",
		    bus_config_name(sv->m->cfg), err);
	else
		log_debug("%s: work stream ready", bus_config_name(sv->m->cfg));
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
		declare_stream(sv);
		break;
	case BUS_DISCONNECTED:
		log_warnx("%s: disconnected from %s; async and throttling "
		    "Runs are refused until it is back", name, sv->where);
		break;
	case BUS_CLOSED:
		log_warnx("%s: connection to %s closed for good; async and "
		    "throttling Runs are refused until sagad restarts", name,
		    sv->where);
		break;
	}
	ready_update(sv);
}

static int
service_start(struct master *m, void *arg, char *err, size_t errlen)
{
	struct service		*sv = arg;
	struct config		*cfg = m->cfg;
	struct store_params	 sp;
	struct bus_opts		 bo;
	struct grpc_client_opts	 copts;

	memset(&copts, 0, sizeof(copts));
	sv->m = m;
	snprintf(sv->owner, sizeof(sv->owner), "%s/%ld", cfg->pod_id,
	    (long)getpid());
	if ((sv->srv = grpc_server_new(m->base, NULL, err, errlen)) == NULL)
		return -1;
	if ((sv->health = health_new(sv->srv, err, errlen)) == NULL)
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
	bo.state_arg = sv;
	if ((sv->bus = bus_open(m->base, &bo, err, errlen)) == NULL)
		return -1;
	if (bus_is_connected(sv->bus)) {
		log_info("%s: connected to %s", bus_config_name(cfg),
		    sv->where);
		declare_stream(sv);
	} else
		log_warnx("%s: %s is not reachable yet; async and throttling "
		    "Runs are refused until it is", bus_config_name(cfg),
		    sv->where);
	ready_update(sv);
	sv->orch = orch_new(m->base, cfg, sv->srv, sv->client, sv->store,
	    sv->owner, err, errlen);
	if (sv->orch == NULL)
		return -1;
	orch_set_log(sv->orch, orch_log, sv);
	orch_set_bus(sv->orch, sv->bus);
	if (grpc_server_listen(sv->srv, cfg->listen_host, cfg->listen_port,
	    err, errlen) == -1)
		return -1;
	log_info("listening on %s (gRPC), pod %s", cfg->listen, cfg->pod_id);
	return 0;
}

static void
service_reload(struct master *m, void *arg, const struct config *old)
{
	struct service *sv = arg;

	orch_set_config(sv->orch, m->cfg);
	ready_update(sv);
}

static void
server_down(struct grpc_server *srv, void *arg)
{
	struct service *sv = arg;

	sv->shut = 1;
	log_info("gRPC server drained");
}

static void
service_stop(struct master *m, void *arg)
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
	struct service *sv = arg;

	if (sv->orch != NULL)
		orch_cron(sv->orch);
}

static int
service_busy(struct master *m, void *arg)
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
	if (sv->orch != NULL)
		orch_close(sv->orch);
	bus_close(sv->bus);
	store_free(sv->store);
	orch_free(sv->orch);
	grpc_server_free(sv->srv);
	health_free(sv->health);
	grpc_client_free(sv->client);
	free(sv);
}
