/*
 * master.c - the sagad master: one libevent loop, after nginx's master cycle
 * and relayd's parent. Signals arrive as events (proc_signals_watch: no
 * work is done in a handler), and SIGHUP reloads through
 * proc_config_reload, as every worker does. One timer,
 * master_cron() at MASTER_HZ, does all periodic work, Redis serverCron
 * style; it wakes sooner when a respawn or a KILL falls due before the
 * next tick, so backoff delays are kept to the millisecond. The master owns the config and the worker supervisor; listeners
 * (the gRPC server) plug in through struct master_hooks.
 *
 * Around the loop: the pidfile (an flock held for the daemon's life, plus
 * a kill(pid, 0) check for a file someone else wrote) and daemonizing with
 * a notify pipe, so that `sagad` returns 0 only once the daemon is up, and
 * otherwise prints why it is not.
 */
#include "autoconf.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "otlp.h"
#include "master.h"
#include "options.h"
#include "proc.h"
#include "supervisor.h"
#include "util.h"

/* Room for every line config_load() may report. */
#define MASTER_CFG_ERRLEN	(8 * SAGAD_ERRLEN)

static void	master_stop(struct master *, const char *);

const char *
master_worker_path(void)
{
	const char *p = getenv("SAGAD_WORKER");

	return p != NULL && *p != '\0' ? p : SAGAD_LIBEXECDIR "/sagad-worker";
}

int
master_abspath(const char *path, char *buf, size_t buflen, char *err,
    size_t errlen)
{
	char	cwd[PATH_MAX];
	int	n;

	if (path[0] == '/')
		n = snprintf(buf, buflen, "%s", path);
	else if (getcwd(cwd, sizeof(cwd)) == NULL) {
		snprintf(err, errlen, "getcwd: %s", strerror(errno));
		return -1;
	} else
		n = snprintf(buf, buflen, "%s/%s", cwd, path);
	if (n < 0 || (size_t)n >= buflen) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	return 0;
}

/* Logs a multi-line error buffer, one log line per line. */
static void
log_lines(const char *what, char *buf)
{
	char *line, *save = NULL;

	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		log_warnx("%s: %s", what, line);
}

/* --- workers --------------------------------------------------------------- */

static void
master_sup_params(struct master *m, struct sup_params *p)
{
	memset(p, 0, sizeof(*p));
	p->worker_path = master_worker_path();
	p->config_path = m->config_path;
	p->pod_id = m->cfg->pod_id;
	p->foreground = m->foreground;
	p->verbose = m->verbose;
	p->stop_timeout_ms = m->cfg->shutdown_timeout_ms;
}

/* Makes the process table match the config's topics and the extra ones. */
static void
master_apply_topics(struct master *m)
{
	struct config_topic	*ct;
	struct sup_topic	*st;
	size_t			 i, n;

	n = config_topics(m->cfg, &ct);
	st = util_xcalloc(n + m->nextra, sizeof(*st));
	for (i = 0; i < n; i++) {
		st[i].name = ct[i].name;
		st[i].workers = ct[i].workers;
		st[i].concurrency = ct[i].concurrency;
	}
	for (i = 0; i < m->nextra; i++)
		st[n + i] = m->extra[i];
	sup_reconcile(m->sup, st, n + m->nextra);
	free(st);
	free(ct);
}

static void
extra_free(struct master *m)
{
	for (size_t i = 0; i < m->nextra; i++)
		free((char *)(uintptr_t)m->extra[i].name);
	free(m->extra);
	m->extra = NULL;
	m->nextra = 0;
}

void
master_set_extra(struct master *m, const struct sup_topic *t, size_t n)
{
	extra_free(m);
	m->extra = n > 0 ? util_xcalloc(n, sizeof(*m->extra)) : NULL;
	for (size_t i = 0; i < n; i++) {
		m->extra[i] = t[i];
		m->extra[i].name = util_xstrdup(t[i].name);
	}
	m->nextra = n;
	if (!m->stopping)
		master_apply_topics(m);
}

/* --- signals and the cron ---------------------------------------------------- */

/*
 * SIGHUP: parse the file again into a fresh config; only a whole one
 * replaces the running one (nginx's ngx_init_cycle). Keys that only a
 * restart can change keep their running values, with a warning.
 */
static void
master_reload(struct master *m)
{
	struct config	*new, *old;
	char		 err[MASTER_CFG_ERRLEN], notes[MASTER_CFG_ERRLEN];

	if (m->stopping)
		return;
	log_info("SIGHUP: reloading %s", m->config_path);
	new = proc_config_reload(m->cfg, m->config_path, m->pod_id, err,
	    sizeof(err), notes, sizeof(notes));
	if (new == NULL) {
		log_warnx("reload failed: keeping the running configuration");
		log_lines("reload", err);
		return;
	}
	if (notes[0] != '\0')
		log_lines("reload", notes);
	old = m->cfg;
	m->cfg = new;
	{
		struct sup_params p;

		master_sup_params(m, &p);
		sup_set_params(m->sup, &p);
	}
	/* Workers that stay reload too; new ones read the new file anyway. */
	sup_signal(m->sup, SIGHUP);
	master_apply_topics(m);
	if (m->hooks.reload != NULL)
		m->hooks.reload(m, m->hooks.arg, old);
	config_free(old);
	log_info("configuration reloaded");
}

static void
master_check_done(struct master *m)
{
	if (!m->stopping || sup_nalive(m->sup) > 0)
		return;
	if (m->hooks.busy != NULL && m->hooks.busy(m, m->hooks.arg))
		return;
	log_info("all workers stopped, nothing in flight");
	event_base_loopexit(m->base, NULL);
}

static void
master_stop(struct master *m, const char *why)
{
	if (m->stopping) {
		log_info("%s: already stopping", why);
		return;
	}
	m->stopping = 1;
	log_info("%s: stopping (%zu workers to stop, up to %d ms)", why,
	    sup_nalive(m->sup), m->cfg->shutdown_timeout_ms);
	if (m->hooks.stop != NULL)
		m->hooks.stop(m, m->hooks.arg);
	sup_shutdown(m->sup);
	/* KILL comes at the timeout; this is the master's own last resort. */
	m->stop_deadline_ms = util_mono_ms() + m->cfg->shutdown_timeout_ms +
	    2000;
	master_check_done(m);
}

static void
master_signal_cb(int sig, void *arg)
{
	struct master *m = arg;

	switch (sig) {
	case SIGHUP:
		master_reload(m);
		break;
	case SIGTERM:
		master_stop(m, "SIGTERM");
		break;
	case SIGINT:
		master_stop(m, "SIGINT");
		break;
	case SIGUSR1:
		/* Logged after the reopen: the line starts the new file. */
		if (log_reopen() == -1)
			log_warn("SIGUSR1: reopen log file");
		else
			log_info("SIGUSR1: log file reopened");
		sup_signal(m->sup, SIGUSR1);
		break;
	case SIGUSR2:
		/*
		 * Its default action would kill the master with no drain and
		 * leave the pidfile: a stray `kill -USR2` (tools send it to
		 * ask for a binary upgrade) must not do that.
		 */
		log_warnx("SIGUSR2: ignored (SIGHUP reloads, SIGUSR1 reopens "
		    "the log file, SIGTERM stops)");
		break;
	case SIGCHLD:
		sup_reap(m->sup);
		master_check_done(m);
		break;
	}
}

/* (Re)arms the one timer: every 1/MASTER_HZ s, sooner if something is due. */
static void
master_cron_arm(struct master *m, int64_t now, int64_t due)
{
	struct timeval	tv;
	int64_t		ms = 1000 / MASTER_HZ;

	if (due != INT64_MAX && due - now < ms)
		ms = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	event_add(m->ev_cron, &tv);
}

static void
master_cron(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED, void *arg)
{
	struct master	*m = arg;
	int64_t		 now = util_mono_ms();

	m->cronloops++;
	master_cron_arm(m, now, sup_cron(m->sup, now));
	if (m->hooks.cron != NULL)
		m->hooks.cron(m, m->hooks.arg);
	if (m->stopping) {
		master_check_done(m);
		if (now >= m->stop_deadline_ms) {
			log_warnx("shutdown_timeout_ms passed with %zu workers "
			    "not reaped: exiting anyway", sup_nalive(m->sup));
			event_base_loopexit(m->base, NULL);
		}
	}
}

/* --- life cycle ---------------------------------------------------------------- */

int
master_init(struct master *m, const struct options *opts,
    const char *config_path, struct config *cfg,
    const struct master_hooks *hooks, char *err, size_t errlen)
{
	static const int	 sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1,
				    SIGUSR2, SIGCHLD };
	struct sup_params	 p;
	struct timeval		 tv;

	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->config_path = config_path;
	m->pod_id = opts->pod_id;
	m->foreground = opts->foreground;
	m->verbose = opts->verbose;
	if (hooks != NULL)
		m->hooks = *hooks;

	if ((m->base = event_base_new()) == NULL) {
		snprintf(err, errlen, "cannot create the event base");
		return -1;
	}
	if (proc_signals_watch(&m->sigs, m->base, sigs,
	    sizeof(sigs) / sizeof(sigs[0]), master_signal_cb, m, err,
	    errlen) == -1)
		return -1;
	if (cfg->tracing.otlp_endpoint != NULL && otlp_start(m->base,
	    cfg->tracing.otlp_endpoint, cfg->pod_id, "master", log_saga, NULL,
	    err, errlen) == -1)
		return -1;
	m->ev_cron = event_new(m->base, -1, 0, master_cron, m);
	tv.tv_sec = 0;
	tv.tv_usec = 1000000 / MASTER_HZ;
	if (m->ev_cron == NULL || event_add(m->ev_cron, &tv) == -1) {
		snprintf(err, errlen, "cannot start the cron timer");
		return -1;
	}

	master_sup_params(m, &p);
	if ((m->sup = sup_new(m->base, &p, err, errlen)) == NULL)
		return -1;

	/* Listeners are bound here, before the workers exist. */
	if (m->hooks.start != NULL &&
	    m->hooks.start(m, m->hooks.arg, err, errlen) == -1)
		return -1;

	/*
	 * Then root is dropped for good, before any worker is forked: they
	 * inherit the user. Redis, NATS and the tokens are read already;
	 * a reload reads the config and tokens files as that user.
	 */
	if (m->cfg->user != NULL) {
		char	why[SAGAD_ERRLEN];
		int	rc = proc_drop_privileges(m->cfg->user, m->cfg->group,
			    why, sizeof(why));

		if (rc == -1) {
			snprintf(err, errlen, "user = \"%s\": %s",
			    m->cfg->user, why);
			return -1;
		}
		if (rc == 0)
			log_info("running as user %s%s%s", m->cfg->user,
			    m->cfg->group != NULL ? ", group " : "",
			    m->cfg->group != NULL ? m->cfg->group : "");
		else
			log_debug("user = \"%s\" ignored: not started as root",
			    m->cfg->user);
	}

	master_apply_topics(m);
	log_info("sagad %s started: pod %s, config %s, %zu workers", 
	    PACKAGE_VERSION, m->cfg->pod_id, m->config_path,
	    sup_nalive(m->sup));
	return 0;
}

int
master_run(struct master *m)
{
	if (event_base_dispatch(m->base) == -1) {
		log_warnx("event loop failed");
		return PROC_EXIT_ERROR;
	}
	log_info("exiting");
	return PROC_EXIT_OK;
}

void
master_free(struct master *m)
{
	proc_signals_close(&m->sigs);
	if (m->ev_cron != NULL) {
		event_free(m->ev_cron);
		m->ev_cron = NULL;
	}
	sup_free(m->sup);
	m->sup = NULL;
	extra_free(m);
	config_free(m->cfg);
	m->cfg = NULL;
	otlp_stop();
	if (m->base != NULL)
		event_base_free(m->base);
	m->base = NULL;
}

/* --- pidfile ------------------------------------------------------------------ */

static pid_t
pidfile_read(int fd)
{
	char	buf[32];
	ssize_t	n;
	long	pid;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 && pid < INT_MAX ? (pid_t)pid : 0;
}

int
master_pidfile_open(const char *path, char *err, size_t errlen)
{
	int	fd;
	pid_t	pid;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1 && errno == ENOENT) {
		const char *slash = strrchr(path, '/');

		snprintf(err, errlen, "pidfile %s: its directory %.*s does not "
		    "exist: create it (make install does, for the default), "
		    "or name another file with -p", path, slash != NULL &&
		    slash != path ? (int)(slash - path) : 1,
		    slash != NULL ? path : ".");
		return -1;
	}
	if (fd == -1) {
		snprintf(err, errlen, "pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "pidfile %s is locked: sagad is "
			    "already running (pid %d)", path,
			    (int)pidfile_read(fd));
		else
			snprintf(err, errlen, "pidfile %s: lock: %s", path,
			    strerror(errno));
		close(fd);
		return -1;
	}
	/* Unlocked but naming a live process: written by someone else. */
	pid = pidfile_read(fd);
	if (pid > 0 && pid != getpid() &&
	    (kill(pid, 0) == 0 || errno == EPERM)) {
		snprintf(err, errlen, "pidfile %s names pid %d, which is "
		    "alive: is sagad already running? (remove the file if "
		    "not)", path, (int)pid);
		close(fd);
		return -1;
	}
	return fd;
}

int
master_pidfile_write(int fd, pid_t pid, char *err, size_t errlen)
{
	char	buf[32];
	int	n;

	n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, n, 0) != n) {
		snprintf(err, errlen, "write pidfile: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void
master_pidfile_remove(const char *path, int fd)
{
	if (fd == -1)
		return;
	(void)unlink(path);
	close(fd);
}

/* --- daemonizing ------------------------------------------------------------ */

int
master_daemonize(int *notify, char *err, size_t errlen)
{
	char	buf[1024];
	size_t	got = 0;
	ssize_t	n;
	pid_t	pid;
	int	p[2], fd;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		/* The launcher: wait for the daemon's word, then go. */
		close(p[1]);
		while (got < sizeof(buf) - 1) {
			n = read(p[0], buf + got, sizeof(buf) - 1 - got);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		buf[got] = '\0';
		(void)waitpid(pid, NULL, 0);
		if (strcmp(buf, "OK") == 0)
			_exit(0);
		if (got > 0)
			fprintf(stderr, "sagad: %s\n", buf);
		else
			fprintf(stderr, "sagad: the daemon exited while "
			    "starting: see its log\n");
		_exit(1);
	}

	close(p[0]);
	if (setsid() == -1)
		_exit(1);
	if ((pid = fork()) == -1)
		_exit(1);
	if (pid > 0)
		_exit(0);	/* the session leader goes: no tty ever again */
	if (chdir("/") == -1)
		_exit(1);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		(void)dup2(fd, STDIN_FILENO);
		(void)dup2(fd, STDOUT_FILENO);
		(void)dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	*notify = p[1];
	return 0;
}

void
master_daemon_notify(int notify, const char *msg)
{
	const char	*s = msg != NULL ? msg : "OK";
	size_t		 len = strlen(s);

	if (notify == -1)
		return;
	(void)!write(notify, s, len);
	close(notify);
}
