/*
 * worker.c - sagad-worker, the process the master starts for each
 * (topic, instance) of an async or throttling flow. It is a real process
 * with its whole life cycle: it validates its arguments (a bad one is exit
 * status 2, which the master reads as "do not respawn"), loads the config
 * and checks that its topic is there, sets its title, tells the master it
 * is ready over the ready pipe, and runs one libevent loop: SIGTERM drains
 * and exits 0, SIGHUP reloads the config, SIGUSR1 reopens the log file,
 * and EOF on the parent pipe (or PR_SET_PDEATHSIG, or a changed getppid())
 * means the master died and the worker must not outlive it.
 *
 * Its work: it consumes its topic's durable JetStream consumer (through the
 * bus interface, src/bus.h) and hands every message to the engine
 * (src/wengine.c), which runs one step's call of a saga from the Redis
 * store, or, for the "callbacks" topic, one callback delivery. NATS or Redis
 * down at start is not fatal: both reconnect by themselves and the worker
 * keeps trying to open its consumer. SIGTERM stops fetching and waits for
 * the messages in hand to finish (or shutdown_timeout_ms); anything not
 * acknowledged is redelivered by JetStream to another worker.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bus.h"
#include "config.h"
#include "grpc/client.h"
#include "log.h"
#include "proc.h"
#include "proctitle.h"
#include "store.h"
#include "util.h"
#include "wengine.h"
#include "work.h"

#define WORKER_CRON_MS		1000
#define WORKER_CONSUME_LOG	30	/* failed consumer opens between logs */

struct worker {
	struct proc_worker_args	 args;
	const char		*topic;
	int			 instance;
	int			 concurrency;
	const char		*pod_id;
	const char		*config_path;
	int			 ready_fd;
	int			 parent_fd;
	int			 foreground;
	int			 verbose;

	pid_t			 ppid;
	struct config		*cfg;
	struct event_base	*base;
	struct event		*ev_term, *ev_int, *ev_hup, *ev_usr1;
	struct event		*ev_parent, *ev_cron;
	int			 draining;
	struct event		*ev_drain;	/* the drain's deadline */

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
	n = config_topics(cfg, &t);
	for (i = 0; i < n && !found; i++)
		found = strcmp(t[i].name, topic) == 0;
	free(t);
	return found;
}

/* Loads the config; logs each error line and returns NULL if it fails. */
static struct config *
load_config(struct worker *w)
{
	struct config	*cfg;
	char		 err[8 * SAGAD_ERRLEN], *line, *save = NULL;

	cfg = config_load(w->config_path, w->pod_id, err, sizeof(err));
	if (cfg == NULL) {
		for (line = strtok_r(err, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_warnx("config: %s", line);
		return NULL;
	}
	if (!topic_exists(cfg, w->topic)) {
		log_warnx("%s: no topic %s (no async or throttling flow has "
		    "that node)", w->config_path, w->topic);
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
drained_cb(struct bus_consumer *c, void *arg)
{
	struct worker *w = arg;

	w->consumer = NULL;
	log_info("drained: exiting");
	event_base_loopexit(w->base, NULL);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
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
worker_drain(struct worker *w, const char *why)
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
worker_consume(struct worker *w)
{
	struct bus_consumer_opts	 o;
	char				 err[SAGAD_ERRLEN];

	if (w->consumer != NULL || w->draining || !bus_is_connected(w->bus))
		return;
	wengine_consumer_opts(w->engine, w->concurrency, &o);
	w->consumer = bus_consume(w->bus, &o, wengine_handle, w->engine, err,
	    sizeof(err));
	if (w->consumer == NULL) {
		if (w->consume_fails++ % WORKER_CONSUME_LOG == 0)
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
	struct worker *w = arg;

	switch (st) {
	case BUS_CONNECTED:
	case BUS_RECONNECTED:
		w->nats_warned = 1;
		log_info("NATS %s", st == BUS_CONNECTED ? "connected" :
		    "reconnected");
		worker_consume(w);
		break;
	case BUS_DISCONNECTED:
		log_warnx("NATS connection lost: reconnecting");
		break;
	case BUS_CLOSED:
		log_warnx("NATS connection closed for good");
		break;
	}
}

static void
store_status(int up, const char *why, void *arg)
{
	struct worker *w = arg;

	if (up == w->store_up)
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
worker_orphaned(struct worker *w, const char *how)
{
	log_warnx("master gone (%s): exiting", how);
	event_base_loopbreak(w->base);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker	*w = arg;
	struct config	*cfg;
	char		 err[SAGAD_ERRLEN];

	switch (sig) {
	case SIGTERM:
		worker_drain(w, "SIGTERM");
		break;
	case SIGINT:
		worker_drain(w, "SIGINT");
		break;
	case SIGHUP:
		if ((cfg = load_config(w)) == NULL) {
			log_warnx("reload failed: keeping the running "
			    "configuration");
			break;
		}
		if (wengine_set_config(w->engine, cfg, err,
		    sizeof(err)) == -1) {
			log_warnx("reload: %s: keeping the running "
			    "configuration", err);
			config_free(cfg);
			break;
		}
		config_free(w->cfg);
		w->cfg = cfg;
		log_debug("configuration reloaded");
		break;
	case SIGUSR1:
		if (log_reopen() == -1)
			log_warn("SIGUSR1: reopen log file");
		else
			log_info("SIGUSR1: log file reopened");
		break;
	}
}

static void
parent_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;
	char		 buf[64];
	ssize_t		 n;

	n = read(fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		worker_orphaned(w, "its pipe closed");
}

static void
cron_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	if (getppid() != w->ppid) {
		worker_orphaned(w, "reparented");
		return;
	}
	if (!w->nats_warned && !bus_is_connected(w->bus) &&
	    util_mono_ms() - w->started_ms >= 5000) {
		w->nats_warned = 1;
		log_warnx("NATS %s is not reachable yet: no work until it is",
		    w->cfg->nats.url);
	}
	worker_consume(w);
}

static struct event *
add_event(struct worker *w, evutil_socket_t fd, short what,
    event_callback_fn cb, const struct timeval *tv)
{
	struct event *ev;

	ev = event_new(w->base, fd, what, cb, w);
	if (ev == NULL || event_add(ev, tv) == -1)
		fatalx("cannot add an event");
	return ev;
}

/* Redis, NATS, the gRPC client and the engine; none needs its peer up. */
static void
worker_open(struct worker *w)
{
	struct store_params	 sp;
	struct bus_opts		 bo;
	struct wengine_params	 ep;
	char			 err[SAGAD_ERRLEN], name[300];

	memset(&sp, 0, sizeof(sp));
	sp.host = w->cfg->redis.host;
	sp.port = w->cfg->redis.port;
	sp.saga_ttl = w->cfg->redis.saga_ttl;
	if ((w->store = store_new(w->base, &sp, err, sizeof(err))) == NULL)
		fatalx("redis: %s", err);
	store_set_status_cb(w->store, store_status, w);
	if ((w->client = grpc_client_new(w->base, NULL, err,
	    sizeof(err))) == NULL)
		fatalx("gRPC client: %s", err);
	memset(&bo, 0, sizeof(bo));
	bo.url = w->cfg->nats.url;
	bo.stream = w->cfg->nats.stream;
	bo.replicas = w->cfg->nats.replicas;
	snprintf(name, sizeof(name), "sagad-worker %s %s #%d", w->pod_id,
	    w->topic, w->instance);
	bo.name = name;
	bo.state_cb = bus_state_changed;
	bo.state_arg = w;
	if ((w->bus = bus_open(w->base, &bo, err, sizeof(err))) == NULL)
		fatalx("nats: %s", err);
	memset(&ep, 0, sizeof(ep));
	ep.base = w->base;
	ep.bus = w->bus;
	ep.store = w->store;
	ep.client = w->client;
	ep.cfg = w->cfg;
	ep.topic = w->topic;
	ep.log = log_saga;
	ep.log_arg = w;
	if ((w->engine = wengine_new(&ep, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		exit(PROC_EXIT_FATAL);
	}
}

/* In this order: nothing of the engine may run once the bus is gone. */
static void
worker_close(struct worker *w)
{
	struct wengine_stats st;

	wengine_stats(w->engine, &st);
	log_debug("exiting: %llu messages (%llu without a read), %llu calls, "
	    "%llu republished, %llu sagas ended, %llu callbacks delivered, "
	    "%llu given up",
	    (unsigned long long)st.messages, (unsigned long long)st.unread,
	    (unsigned long long)st.calls,
	    (unsigned long long)st.republished, (unsigned long long)st.ended,
	    (unsigned long long)st.delivered, (unsigned long long)st.given_up);
	wengine_close(w->engine);
	bus_close(w->bus);
	store_free(w->store);
	wengine_free(w->engine);
	grpc_client_free(w->client);
	bus_fini();
}

int
main(int argc, char *argv[])
{
	struct worker	 w;
	struct timeval	 tv = { WORKER_CRON_MS / 1000, 0 };
	const char	*crash;
	char		 prefix[300], err[SAGAD_ERRLEN];

	(void)proctitle_init(argc, argv);
	memset(&w, 0, sizeof(w));
	if (proc_worker_parse(&w.args, argc, argv, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagad-worker: %s\n", err);
		proc_worker_usage(stderr);
		return PROC_EXIT_FATAL;
	}
	if (w.args.help) {
		proc_worker_usage(stdout);
		return PROC_EXIT_OK;
	}
	if (w.args.version) {
		printf("sagad-worker %s\n", PACKAGE_VERSION);
		return PROC_EXIT_OK;
	}
	w.topic = w.args.topic;
	w.instance = w.args.instance;
	w.concurrency = w.args.concurrency;
	w.pod_id = w.args.pod_id;
	w.config_path = w.args.config_path;
	w.ready_fd = w.args.ready_fd;
	w.parent_fd = w.args.parent_fd;
	w.foreground = w.args.foreground;
	w.verbose = w.args.verbose;
	w.ppid = getppid();

	crash = getenv("SAGAD_WORKER_CRASH_AT_START");
	if (crash != NULL && strcmp(crash, "1") == 0)
		exit(1);

	log_init("sagad-worker", w.foreground ? LOG_TO_STDERR : LOG_TO_SYSLOG,
	    w.verbose);
	snprintf(prefix, sizeof(prefix), "%s #%d", w.topic, w.instance);
	log_setprefix(prefix);
	proctitle_set("sagad: worker %s #%d", w.topic, w.instance);

	if ((w.cfg = load_config(&w)) == NULL)
		exit(PROC_EXIT_FATAL);
	if (w.cfg->log_file != NULL && log_open_file(w.cfg->log_file) == -1)
		log_warn("log_file %s", w.cfg->log_file);

	signal(SIGPIPE, SIG_IGN);
	/* cnats hands messages over from its threads: before the base. */
	if (bus_init(err, sizeof(err)) == -1)
		fatalx("%s", err);
	if ((w.base = event_base_new()) == NULL)
		fatalx("cannot create the event base");
	w.ev_term = add_event(&w, SIGTERM, EV_SIGNAL | EV_PERSIST, signal_cb,
	    NULL);
	w.ev_int = add_event(&w, SIGINT, EV_SIGNAL | EV_PERSIST, signal_cb,
	    NULL);
	w.ev_hup = add_event(&w, SIGHUP, EV_SIGNAL | EV_PERSIST, signal_cb,
	    NULL);
	w.ev_usr1 = add_event(&w, SIGUSR1, EV_SIGNAL | EV_PERSIST, signal_cb,
	    NULL);
	(void)fcntl(w.parent_fd, F_SETFL, O_NONBLOCK);
	(void)fcntl(w.parent_fd, F_SETFD, FD_CLOEXEC);
	w.ev_parent = add_event(&w, w.parent_fd, EV_READ | EV_PERSIST,
	    parent_cb, NULL);
	w.ev_cron = add_event(&w, -1, EV_PERSIST, cron_cb, &tv);
	w.store_up = 1;		/* log the first loss */

	/* The master may have gone while we started. */
	if (w.ppid == 1 || kill(w.ppid, 0) == -1)
		exit(1);

	w.started_ms = util_mono_ms();
	worker_open(&w);
	if (write(w.ready_fd, "ready\n", 6) != 6)
		log_warn("ready pipe");
	close(w.ready_fd);
	log_debug("ready: concurrency %d, pod %s", w.concurrency, w.pod_id);
	worker_consume(&w);

	event_base_dispatch(w.base);

	worker_close(&w);
	event_free(w.ev_term);
	event_free(w.ev_int);
	event_free(w.ev_hup);
	event_free(w.ev_usr1);
	event_free(w.ev_parent);
	event_free(w.ev_cron);
	if (w.ev_drain != NULL)
		event_free(w.ev_drain);
	event_base_free(w.base);
	config_free(w.cfg);
	return 0;
}
