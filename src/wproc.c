/*
 * wproc.c - the sagad-worker process (see wproc.h), the process the master
 * starts for each (topic, instance) of an async or throttling flow. It is
 * a real process with its whole life cycle: it loads the config and checks
 * that its topic is there, tells the master it is ready over the ready
 * pipe, and runs one libevent loop: SIGTERM drains and exits 0, SIGHUP
 * reloads the config (as the master does, through proc_config_reload),
 * SIGUSR1 reopens the log file, and EOF on the parent pipe (or
 * PR_SET_PDEATHSIG, or a changed getppid()) means the master died and the
 * worker must not outlive it. The mechanics of all that are proc.c's.
 *
 * Its work: it consumes its topic's durable JetStream consumer (through the
 * bus interface, src/bus.h) and hands every message to the worker engine
 * (wengine.h), which runs one step's call of a saga from the Redis store
 * (src/wengine.c), or, for the "callbacks" topic, one callback delivery
 * (src/wengine_callback.c); this file knows neither. NATS or Redis
 * down at start is not fatal: both reconnect by themselves and the worker
 * keeps trying to open its consumer. SIGTERM stops fetching and waits for
 * the messages in hand to finish (or shutdown_timeout_ms); anything not
 * acknowledged is redelivered by JetStream to another worker.
 */
#include "autoconf.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bus.h"
#include "bus_config.h"
#include "config.h"
#include "grpc/client.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "proc.h"
#include "store.h"
#include "util.h"
#include "wengine.h"
#include "work.h"
#include "wproc.h"

#define WPROC_CRON_MS		1000
#define WPROC_CONSUME_LOG	30	/* failed consumer opens between logs */
#define WPROC_CFG_ERRLEN	(8 * SAGAD_ERRLEN)

struct wproc {
	struct proc_worker_args	 args;
	struct config		*cfg;
	struct event_base	*base;
	struct proc_signals	 sigs;
	struct proc_parent	 parent;
	struct event		*ev_cron;
	int			 draining;
	struct event		*ev_drain;	/* the drain's deadline */

	int			 bus_inited;
	struct bus		*bus;
	struct store		*store;
	struct grpc_client	*client;
	struct wengine		*engine;
	struct bus_consumer	*consumer;
	int			 consume_fails;
	int			 store_up;
	int64_t			 started_ms;
	int			 nats_warned;	/* "not reachable yet" said */
};

static int
topic_exists(const struct config *cfg, const char *topic)
{
	struct config_topic	*t;
	size_t			 i, n;
	int			 found = 0;

	if (strcmp(topic, WORK_CALLBACK_TOPIC) == 0)
		return 1;
	/* A topic gone from the config, read until it is empty. */
	if (strchr(topic, WENGINE_LINGER_SEP) != NULL)
		return 1;
	n = config_topics(cfg, &t);
	for (i = 0; i < n && !found; i++)
		found = strcmp(t[i].name, topic) == 0;
	free(t);
	return found;
}

/*
 * Appends "config: LINE\n" to out for each line of err, so that each is
 * one log line.
 */
static void
config_lines(char *out, size_t outlen, char *err)
{
	char	*line, *save = NULL;
	size_t	 used = strlen(out);
	int	 n;

	for (line = strtok_r(err, "\n", &save); line != NULL && used < outlen;
	    line = strtok_r(NULL, "\n", &save)) {
		n = snprintf(out + used, outlen - used, "config: %s\n", line);
		if (n > 0)
			used += (size_t)n;
	}
}

static int
topic_check(const struct wproc *w, const struct config *cfg, char *err,
    size_t errlen)
{
	if (topic_exists(cfg, w->args.topic))
		return 0;
	snprintf(err, errlen, "%s: no topic %s (no async or throttling flow "
	    "has that node)", w->args.config_path, w->args.topic);
	return -1;
}

/* Logs each line of buf as a warning. */
static void
log_lines(char *buf)
{
	char *line, *save = NULL;

	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		log_warnx("%s", line);
}

static void
drained_cb(struct bus_consumer *c SAGAD_UNUSED, void *arg)
{
	struct wproc *w = arg;

	w->consumer = NULL;
	log_info("drained: exiting");
	event_base_loopexit(w->base, NULL);
}

static void
drain_timeout_cb(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED,
    void *arg)
{
	struct wproc *w = arg;

	log_warnx("drain timed out with %d in flight: exiting (JetStream "
	    "delivers the unacknowledged work again after its ack wait)",
	    wengine_inflight(w->engine));
	event_base_loopexit(w->base, NULL);
}

/*
 * Stops fetching and exits once the messages in hand are done, or at the
 * deadline: shutdown_timeout_ms less a tenth (at most 500 ms), so that the
 * worker leaves on its own, connections closed, before the master's
 * SIGKILL at shutdown_timeout_ms.
 */
static void
wproc_drain(struct wproc *w, const char *why)
{
	int		ms = w->cfg->shutdown_timeout_ms;
	struct timeval	tv;

	if (w->draining)
		return;
	w->draining = 1;
	ms -= ms / 10 > 500 ? 500 : ms / 10;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	w->ev_drain = evtimer_new(w->base, drain_timeout_cb, w);
	if (w->ev_drain == NULL || evtimer_add(w->ev_drain, &tv) == -1)
		log_warnx("cannot arm the drain's deadline: the master's "
		    "SIGKILL will end a drain that does not finish");
	log_info("%s: draining %d in flight", why,
	    wengine_inflight(w->engine));
	if (w->consumer != NULL)
		bus_consumer_stop(w->consumer, drained_cb, w);
	else {
		log_info("drained: exiting");
		event_base_loopexit(w->base, NULL);
	}
}

/*
 * Opens the topic's consumer once the bus is connected. It fails while the
 * master has not declared the stream yet, or NATS is away: the cron and the
 * bus's state callback try again.
 */
static void
wproc_consume(struct wproc *w)
{
	struct bus_consumer_opts	 o;
	char				 err[SAGAD_ERRLEN];

	if (w->consumer != NULL || w->draining || !bus_is_connected(w->bus))
		return;
	wengine_consumer_opts(w->engine, w->args.concurrency, &o);
	w->consumer = bus_consume(w->bus, &o, wengine_handle, w->engine, err,
	    sizeof(err));
	if (w->consumer == NULL) {
		if (w->consume_fails++ % WPROC_CONSUME_LOG == 0)
			log_warnx("consumer %s on %s: %s (trying again)",
			    o.durable, o.filter, err);
		return;
	}
	w->consume_fails = 0;
	log_info("consuming %s as %s: concurrency %d, max ack pending %d, "
	    "ack wait %d ms", o.filter, o.durable, o.concurrency,
	    o.max_ack_pending, o.ack_wait_ms);
}

static void
bus_state_changed(struct bus *bus, enum bus_state st, void *arg)
{
	struct wproc *w = arg;

	switch (st) {
	case BUS_CONNECTED:
	case BUS_RECONNECTED:
		w->nats_warned = 1;
		log_info("%s: %s", bus_config_name(w->cfg),
		    st == BUS_CONNECTED ? "connected" : "reconnected");
		wproc_consume(w);
		break;
	case BUS_DISCONNECTED: {
		const char	*name = bus_config_name(w->cfg);
		const char	*why = bus_state_why(bus);
		size_t		 len = strlen(name);

		/* The driver's reasons may start with its name already. */
		if (strncmp(why, name, len) == 0 && strncmp(why + len, ": ",
		    2) == 0)
			why += len + 2;
		log_warnx("%s: connection lost%s%s: reconnecting", name,
		    *why != '\0' ? ": " : "", why);
		break;
	}
	case BUS_CLOSED:
		log_warnx("%s: connection closed for good (%s)",
		    bus_config_name(w->cfg), bus_state_why(bus)[0] != '\0' ?
		    bus_state_why(bus) : "no reason given");
		break;
	}
}

static void
bus_warned(struct bus *bus, const char *msg, void *arg)
{
	(void)bus;
	(void)arg;
	log_warnx("%s", msg);
}

static void
store_status(int up, const char *why, void *arg)
{
	struct wproc *w = arg;

	/* A refusal of the credentials is said even while down (once each). */
	if (up == w->store_up && (up || why == NULL ||
	    strstr(why, " refused ") == NULL))
		return;
	w->store_up = up;
	if (up)
		log_info("Redis connected");
	else
		log_warnx("Redis unavailable: %s", why != NULL ? why : "");
}

/*
 * The master is gone. Nothing taken from the queue is acknowledged before
 * it is done, so leaving now only means JetStream redelivers it.
 */
static void
orphaned(const char *how, void *arg)
{
	struct wproc *w = arg;

	log_warnx("master gone (%s): exiting", how);
	event_base_loopbreak(w->base);
}

/*
 * SIGHUP: the same reload as the master's (proc_config_reload: keys only a
 * restart can change keep their running values), then the topic must still
 * be there and the engine must take the new config; otherwise the running
 * one stays. The master logs the restart-only keys; a worker only says them
 * with -v, once per worker would be noise.
 */
static void
wproc_reload(struct wproc *w)
{
	struct config	*cfg;
	char		 err[WPROC_CFG_ERRLEN], notes[WPROC_CFG_ERRLEN];
	char		 lines[WPROC_CFG_ERRLEN];

	cfg = proc_config_reload(w->cfg, w->args.config_path,
	    w->args.pod_id, err, sizeof(err), notes, sizeof(notes));
	if (cfg == NULL) {
		lines[0] = '\0';
		config_lines(lines, sizeof(lines), err);
		log_lines(lines);
		log_warnx("reload failed: keeping the running configuration");
		return;
	}
	if (topic_check(w, cfg, err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		log_warnx("reload failed: keeping the running configuration");
		config_free(cfg);
		return;
	}
	if (notes[0] != '\0')
		log_debug("reload: %s", notes);
	if (wengine_set_config(w->engine, cfg, err, sizeof(err)) == -1) {
		log_warnx("reload: %s: keeping the running configuration",
		    err);
		config_free(cfg);
		return;
	}
	config_free(w->cfg);
	w->cfg = cfg;
	log_debug("configuration reloaded");
}

static void
signal_cb(int sig, void *arg)
{
	struct wproc *w = arg;

	switch (sig) {
	case SIGTERM:
		wproc_drain(w, "SIGTERM");
		break;
	case SIGINT:
		wproc_drain(w, "SIGINT");
		break;
	case SIGHUP:
		wproc_reload(w);
		break;
	case SIGUSR1:
		if (log_reopen() == -1)
			log_warn("SIGUSR1: reopen log file");
		else
			log_info("SIGUSR1: log file reopened");
		break;
	case SIGUSR2:
		log_warnx("SIGUSR2: ignored");
		break;
	}
}

static void
cron_cb(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED, void *arg)
{
	struct wproc *w = arg;

	if (!proc_parent_check(&w->parent))
		return;
	if (!w->nats_warned && !bus_is_connected(w->bus) &&
	    util_mono_ms() - w->started_ms >= 5000) {
		char where[1100];

		w->nats_warned = 1;
		log_warnx("%s %s is not reachable yet: no work until it is",
		    bus_config_name(w->cfg),
		    bus_config_where(w->cfg, where, sizeof(where)));
	}
	wproc_consume(w);
	wengine_cron(w->engine);
}

/*
 * Redis, NATS, the gRPC client and the engine; none needs its peer up.
 * -1 with err and *exit_code when one cannot even be made.
 */
static int
wproc_open(struct wproc *w, int *exit_code, char *err, size_t errlen)
{
	struct store_params	 sp;
	struct bus_opts		 bo;
	struct wengine_params	 ep;
	char			 e[SAGAD_ERRLEN], name[300];

	*exit_code = PROC_EXIT_ERROR;
	memset(&sp, 0, sizeof(sp));
	sp.host = w->cfg->redis.host;
	sp.port = w->cfg->redis.port;
	sp.saga_ttl = w->cfg->redis.saga_ttl;
	sp.db = w->cfg->redis.db;
	sp.username = w->cfg->redis.username;
	sp.password = w->cfg->redis.password;
	sp.password_file = w->cfg->redis.password_file;
	sp.completed_ttl = w->cfg->redis.completed_ttl;
	sp.sentinels = (const char *const *)w->cfg->redis.sentinels;
	sp.master_name = w->cfg->redis.master_name;
	sp.min_replicas_ack = w->cfg->redis.min_replicas_ack;
	sp.ack_timeout_ms = w->cfg->redis.ack_timeout_ms;
	if ((w->store = store_new(w->base, &sp, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "redis: %s", e);
		return -1;
	}
	store_set_status_cb(w->store, store_status, w);
	if ((w->client = grpc_client_new(w->base, NULL, e,
	    sizeof(e))) == NULL) {
		snprintf(err, errlen, "gRPC client: %s", e);
		return -1;
	}
	memset(&bo, 0, sizeof(bo));
	bus_config_opts(w->cfg, &bo);
	snprintf(name, sizeof(name), "sagad-worker %s %s #%d",
	    w->args.pod_id, w->args.topic, w->args.instance);
	bo.name = name;
	bo.state_cb = bus_state_changed;
	bo.warn_cb = bus_warned;
	bo.state_arg = w;
	if ((w->bus = bus_open(w->base, &bo, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "nats: %s", e);
		return -1;
	}
	memset(&ep, 0, sizeof(ep));
	ep.base = w->base;
	ep.bus = w->bus;
	ep.store = w->store;
	ep.client = w->client;
	ep.cfg = w->cfg;
	ep.topic = w->args.topic;
	ep.log = log_saga;
	ep.log_arg = w;
	if ((w->engine = wengine_new(&ep, err, errlen)) == NULL) {
		*exit_code = PROC_EXIT_FATAL;
		return -1;
	}
	return 0;
}

struct wproc *
wproc_new(const struct proc_worker_args *a, pid_t ppid, int *exit_code,
    char *err, size_t errlen)
{
	static const int	 sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1,
				    SIGUSR2 };
	struct wproc		*w = util_xcalloc(1, sizeof(*w));
	struct timeval		 tv = { WPROC_CRON_MS / 1000, 0 };
	char			 e[WPROC_CFG_ERRLEN];

	w->args = *a;
	err[0] = '\0';
	*exit_code = PROC_EXIT_FATAL;
	if ((w->cfg = config_load(a->config_path, a->pod_id, e,
	    sizeof(e))) == NULL) {
		config_lines(err, errlen, e);
		goto fail;
	}
	if (topic_check(w, w->cfg, err, errlen) == -1)
		goto fail;
	if (proc_refuse_root(w->cfg, err, errlen) == -1)
		goto fail;
	log_setformat(strcmp(w->cfg->log_format, "json") == 0,
	    w->cfg->pod_id);
	if (w->cfg->log_file != NULL && log_open_file(w->cfg->log_file) == -1)
		log_warn("log_file %s", w->cfg->log_file);

	*exit_code = PROC_EXIT_ERROR;
	/* The pod's metrics (issue 14): the master's segment, if any. */
	if (a->metrics_fd >= 0 && metrics_attach(a->metrics_fd, err,
	    errlen) == -1)
		goto fail;
	/* cnats hands messages over from its threads: before the base. */
	if (bus_init(err, errlen) == -1)
		goto fail;
	w->bus_inited = 1;
	if ((w->base = event_base_new()) == NULL) {
		snprintf(err, errlen, "cannot create the event base");
		goto fail;
	}
	if (proc_signals_watch(&w->sigs, w->base, sigs,
	    sizeof(sigs) / sizeof(sigs[0]), signal_cb, w, err, errlen) == -1 ||
	    proc_parent_watch(&w->parent, w->base, ppid, a->parent_fd,
	    orphaned, w, err, errlen) == -1)
		goto fail;
	if (w->cfg->tracing.otlp_endpoint != NULL) {
		char proc[300];

		snprintf(proc, sizeof(proc), "worker %s #%d", a->topic,
		    a->instance);
		if (otlp_start(w->base, w->cfg->tracing.otlp_endpoint,
		    w->cfg->pod_id, proc, log_saga, NULL, err, errlen) == -1)
			goto fail;
	}
	w->ev_cron = event_new(w->base, -1, EV_PERSIST, cron_cb, w);
	if (w->ev_cron == NULL || event_add(w->ev_cron, &tv) == -1) {
		snprintf(err, errlen, "cannot add an event");
		goto fail;
	}
	w->store_up = 1;		/* log the first loss */

	/* The master may have gone while we started. */
	if (!proc_parent_alive(&w->parent)) {
		err[0] = '\0';
		goto fail;
	}

	w->started_ms = util_mono_ms();
	if (wproc_open(w, exit_code, err, errlen) == -1)
		goto fail;
	if (proc_ready_send(a->ready_fd, e, sizeof(e)) == -1)
		log_warnx("%s", e);
	log_debug("ready: concurrency %d, pod %s", a->concurrency,
	    a->pod_id);
	wproc_consume(w);
	return w;

fail:
	wproc_free(w);
	return NULL;
}

int
wproc_run(struct wproc *w)
{
	event_base_dispatch(w->base);
	return PROC_EXIT_OK;
}

void
wproc_free(struct wproc *w)
{
	struct wengine_stats st;

	if (w == NULL)
		return;
	/* In this order: nothing of the engine may run once the bus is gone. */
	if (w->engine != NULL) {
		wengine_stats(w->engine, &st);
		log_debug("exiting: %llu messages (%llu without a read), "
		    "%llu calls, %llu republished, %llu sagas ended, %llu "
		    "callbacks delivered, %llu given up",
		    (unsigned long long)st.messages,
		    (unsigned long long)st.unread,
		    (unsigned long long)st.calls,
		    (unsigned long long)st.republished,
		    (unsigned long long)st.ended,
		    (unsigned long long)st.delivered,
		    (unsigned long long)st.given_up);
		wengine_close(w->engine);
	}
	if (w->bus != NULL)
		bus_close(w->bus);
	if (w->store != NULL)
		store_free(w->store);
	if (w->engine != NULL)
		wengine_free(w->engine);
	if (w->client != NULL)
		grpc_client_free(w->client);
	if (w->bus_inited)
		bus_fini();
	proc_signals_close(&w->sigs);
	proc_parent_close(&w->parent);
	if (w->ev_cron != NULL)
		event_free(w->ev_cron);
	if (w->ev_drain != NULL)
		event_free(w->ev_drain);
	otlp_stop();
	if (w->base != NULL)
		event_base_free(w->base);
	config_free(w->cfg);
	free(w);
}
