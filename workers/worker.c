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
#include "bus_config.h"
#include "config.h"
#include "grpc/client.h"
#include "log.h"
#include "proctitle.h"
#include "store.h"
#include "util.h"
#include "wengine.h"
#include "work.h"

#define WORKER_EXIT_FATAL	2	/* the master will not respawn us */
#define WORKER_CRON_MS		1000
#define WORKER_CONSUME_LOG	30	/* failed consumer opens between logs */

struct worker {
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

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: sagad-worker --topic FLOW/NODE --instance N "
	    "--concurrency N --pod-id ID\n"
	    "                    --config FILE --ready-fd FD --parent-fd FD "
	    "[--foreground] [--verbose]\n"
	    "\n"
	    "sagad-worker is started by sagad(8), one process per instance "
	    "of each topic\n"
	    "(a node of an async or throttling flow); it is not meant to be "
	    "run by hand.\n"
	    "It checks its arguments and its topic in the config, reports "
	    "ready to the\n"
	    "master on --ready-fd, and exits when the master goes (EOF on "
	    "--parent-fd).\n"
	    "\n"
	    "It consumes its topic from NATS JetStream (nats.url) with at most "
	    "--concurrency\n"
	    "messages in hand: for FLOW/NODE each message is one call of the "
	    "node's action\n"
	    "or compensation for a saga kept in Redis; for \"callbacks\" each "
	    "message POSTs an\n"
	    "ended async saga to its callback URL. SIGTERM stops taking work "
	    "and finishes\n"
	    "what is in hand; SIGHUP reloads the config for new messages.\n"
	    "\n"
	    "  --topic FLOW/NODE   the topic this process serves, or "
	    "\"callbacks\"\n"
	    "  --instance N        its instance number, from 1\n"
	    "  --concurrency N     most messages in flight at once\n"
	    "  --pod-id ID         this pod's id (throttling subjects)\n"
	    "  --config FILE       the configuration file (sagad.conf(5))\n"
	    "  --ready-fd FD       write \"ready\\n\" here once initialised\n"
	    "  --parent-fd FD      read end of the master's pipe: EOF = "
	    "master gone\n"
	    "  --foreground        log to stderr (the master runs with -d)\n"
	    "  --verbose           more verbose logs (repeatable)\n"
	    "  --version           print the version and exit\n"
	    "  --help              print this help and exit\n"
	    "\n"
	    "Exit status: 0 after a drain, 1 on a runtime error, 2 on bad "
	    "arguments or\n"
	    "config (the master does not respawn it).\n"
	    "\n"
	    "Test only: SAGAD_WORKER_CRASH_AT_START=1 in the environment "
	    "makes it exit 1\n"
	    "at once, to exercise the master's respawn backoff.\n");
}

/* A decimal in [min, max], or -1. */
static long
parse_num(const char *s, long min, long max)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	return v;
}

static int
fd_valid(int fd)
{
	return fd > STDERR_FILENO && fcntl(fd, F_GETFD) != -1;
}

static void
argfail(const char *fmt, const char *arg)
{
	fprintf(stderr, "sagad-worker: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(WORKER_EXIT_FATAL);
}

static void
parse_args(struct worker *w, int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "topic",	 required_argument, NULL, 't' },
		{ "instance",	 required_argument, NULL, 'i' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "pod-id",	 required_argument, NULL, 'P' },
		{ "config",	 required_argument, NULL, 'f' },
		{ "ready-fd",	 required_argument, NULL, 'r' },
		{ "parent-fd",	 required_argument, NULL, 'p' },
		{ "foreground",	 no_argument,	    NULL, 'd' },
		{ "verbose",	 no_argument,	    NULL, 'v' },
		{ "version",	 no_argument,	    NULL, 'V' },
		{ "help",	 no_argument,	    NULL, 'h' },
		{ NULL,		 0,		    NULL, 0 }
	};
	long	v;
	int	c;

	memset(w, 0, sizeof(*w));
	w->instance = w->concurrency = w->ready_fd = w->parent_fd = -1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (strcmp(optarg, WORK_CALLBACK_TOPIC) != 0 &&
			    (strchr(optarg, '/') == NULL || optarg[0] == '/'))
				argfail("--topic %s: expected FLOW/NODE or "
				    WORK_CALLBACK_TOPIC, optarg);
			w->topic = optarg;
			break;
		case 'i':
			if ((v = parse_num(optarg, 1, 100000)) == -1)
				argfail("--instance %s: expected a number "
				    "from 1 to 100000", optarg);
			w->instance = (int)v;
			break;
		case 'c':
			if ((v = parse_num(optarg, 1, 1000000)) == -1)
				argfail("--concurrency %s: expected a number "
				    "from 1 to 1000000", optarg);
			w->concurrency = (int)v;
			break;
		case 'P':
			if (*optarg == '\0')
				argfail("--pod-id%s: expected a non-empty id",
				    "");
			w->pod_id = optarg;
			break;
		case 'f':
			w->config_path = optarg;
			break;
		case 'r':
		case 'p':
			if ((v = parse_num(optarg, 3, INT_MAX)) == -1 ||
			    !fd_valid((int)v))
				argfail(c == 'r' ? "--ready-fd %s: not an open "
				    "file descriptor" : "--parent-fd %s: not "
				    "an open file descriptor", optarg);
			if (c == 'r')
				w->ready_fd = (int)v;
			else
				w->parent_fd = (int)v;
			break;
		case 'd':
			w->foreground = 1;
			break;
		case 'v':
			w->verbose++;
			break;
		case 'V':
			printf("sagad-worker %s\n", PACKAGE_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			argfail("%s needs an argument", argv[optind - 1]);
			break;
		default:
			argfail("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		argfail("unexpected argument \"%s\"", argv[optind]);
	if (w->topic == NULL)
		argfail("%s is required", "--topic");
	if (w->instance == -1)
		argfail("%s is required", "--instance");
	if (w->concurrency == -1)
		argfail("%s is required", "--concurrency");
	if (w->pod_id == NULL)
		argfail("%s is required", "--pod-id");
	if (w->config_path == NULL)
		argfail("%s is required", "--config");
	if (w->ready_fd == -1)
		argfail("%s is required", "--ready-fd");
	if (w->parent_fd == -1)
		argfail("%s is required", "--parent-fd");
}

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
engine_log(enum wengine_level lv, const char *id, const char *msg, void *arg)
{
	switch (lv) {
	case WENGINE_WARN:
		log_warnx("%s%s%s", id != NULL ? id : "", id != NULL ? ": " :
		    "", msg);
		break;
	case WENGINE_INFO:
		log_info("%s%s%s", id != NULL ? id : "", id != NULL ? ": " :
		    "", msg);
		break;
	default:
		log_debug("%s%s%s", id != NULL ? id : "", id != NULL ? ": " :
		    "", msg);
		break;
	}
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
		char where[1100];

		w->nats_warned = 1;
		log_warnx("%s %s is not reachable yet: no work until it is",
		    bus_config_name(w->cfg),
		    bus_config_where(w->cfg, where, sizeof(where)));
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
	bus_config_opts(w->cfg, &bo);
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
	ep.log = engine_log;
	ep.log_arg = w;
	if ((w->engine = wengine_new(&ep, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		exit(WORKER_EXIT_FATAL);
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
	parse_args(&w, argc, argv);
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
		exit(WORKER_EXIT_FATAL);
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
