/*
 * proc.c - the life every sagad process shares (see proc.h), after relayd's
 * proc.c: one place for the worker's command line both ways, the fork+exec
 * that starts a worker, the two pipes between master and worker, signals as
 * libevent events, and the reload of the config. The master's supervision
 * policy (backoff, respawn, retirement) stays in supervisor.c and the
 * worker's loop in wproc.c; this file only does the mechanics, and reports
 * what fails in the caller's buffer.
 */
#include "autoconf.h"

#include <sys/types.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "proc.h"
#include "util.h"
#include "work.h"

extern char	**environ;

/* --- sagad-worker's command line ------------------------------------------ */

void
proc_worker_usage(FILE *fp)
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
	    "  --metrics-fd FD     the pod's shared metrics segment "
	    "(optional)\n"
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

void
proc_worker_argv(struct proc_argv *out, const char *path,
    const struct proc_worker_args *a)
{
	int argc = 0;

	snprintf(out->digits[0], sizeof(out->digits[0]), "%d", a->instance);
	snprintf(out->digits[1], sizeof(out->digits[1]), "%d",
	    a->concurrency);
	snprintf(out->digits[2], sizeof(out->digits[2]), "%d", a->ready_fd);
	snprintf(out->digits[3], sizeof(out->digits[3]), "%d", a->parent_fd);
	snprintf(out->digits[4], sizeof(out->digits[4]), "%d", a->metrics_fd);
	out->argv[argc++] = (char *)(uintptr_t)path;
	out->argv[argc++] = (char *)(uintptr_t)"--topic";
	out->argv[argc++] = (char *)(uintptr_t)a->topic;
	out->argv[argc++] = (char *)(uintptr_t)"--instance";
	out->argv[argc++] = out->digits[0];
	out->argv[argc++] = (char *)(uintptr_t)"--concurrency";
	out->argv[argc++] = out->digits[1];
	out->argv[argc++] = (char *)(uintptr_t)"--pod-id";
	out->argv[argc++] = (char *)(uintptr_t)a->pod_id;
	out->argv[argc++] = (char *)(uintptr_t)"--config";
	out->argv[argc++] = (char *)(uintptr_t)a->config_path;
	out->argv[argc++] = (char *)(uintptr_t)"--ready-fd";
	out->argv[argc++] = out->digits[2];
	out->argv[argc++] = (char *)(uintptr_t)"--parent-fd";
	out->argv[argc++] = out->digits[3];
	if (a->metrics_fd > STDERR_FILENO) {
		out->argv[argc++] = (char *)(uintptr_t)"--metrics-fd";
		out->argv[argc++] = out->digits[4];
	}
	if (a->foreground)
		out->argv[argc++] = (char *)(uintptr_t)"--foreground";
	for (int v = 0; v < a->verbose && v < 2; v++)
		out->argv[argc++] = (char *)(uintptr_t)"--verbose";
	out->argv[argc] = NULL;
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

/* An fd the worker may use: open, and not stdin, stdout or stderr. */
static int
fd_valid(int fd)
{
	return fd > STDERR_FILENO && fcntl(fd, F_GETFD) != -1;
}

int
proc_worker_parse(struct proc_worker_args *a, int argc, char *argv[],
    char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "topic",	 required_argument, NULL, 't' },
		{ "instance",	 required_argument, NULL, 'i' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "pod-id",	 required_argument, NULL, 'P' },
		{ "config",	 required_argument, NULL, 'f' },
		{ "ready-fd",	 required_argument, NULL, 'r' },
		{ "parent-fd",	 required_argument, NULL, 'p' },
		{ "metrics-fd",	 required_argument, NULL, 'm' },
		{ "foreground",	 no_argument,	    NULL, 'd' },
		{ "verbose",	 no_argument,	    NULL, 'v' },
		{ "version",	 no_argument,	    NULL, 'V' },
		{ "help",	 no_argument,	    NULL, 'h' },
		{ NULL,		 0,		    NULL, 0 }
	};
	const char	*missing = NULL;
	long		 v;
	int		 c;

	memset(a, 0, sizeof(*a));
	a->instance = a->concurrency = a->ready_fd = a->parent_fd = -1;
	a->metrics_fd = -1;
	optind = 0;		/* GNU: start over, as if never called */
	opterr = 0;		/* we word the messages ourselves */
	while ((c = getopt_long(argc, argv, "+:", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (strcmp(optarg, WORK_CALLBACK_TOPIC) != 0 &&
			    strcmp(optarg, WORK_LEGACY_TOPIC) != 0 &&
			    (strchr(optarg, '/') == NULL || optarg[0] == '/')) {
				snprintf(err, errlen, "--topic %s: expected "
				    "FLOW/NODE, " WORK_CALLBACK_TOPIC " or "
				    WORK_LEGACY_TOPIC, optarg);
				return -1;
			}
			a->topic = optarg;
			break;
		case 'i':
			if ((v = parse_num(optarg, 1,
			    PROC_INSTANCE_MAX)) == -1) {
				snprintf(err, errlen, "--instance %s: "
				    "expected a number from 1 to %d", optarg,
				    PROC_INSTANCE_MAX);
				return -1;
			}
			a->instance = (int)v;
			break;
		case 'c':
			if ((v = parse_num(optarg, 1,
			    PROC_CONCURRENCY_MAX)) == -1) {
				snprintf(err, errlen, "--concurrency %s: "
				    "expected a number from 1 to %d", optarg,
				    PROC_CONCURRENCY_MAX);
				return -1;
			}
			a->concurrency = (int)v;
			break;
		case 'P':
			if (*optarg == '\0') {
				snprintf(err, errlen, "--pod-id: expected a "
				    "non-empty id");
				return -1;
			}
			a->pod_id = optarg;
			break;
		case 'f':
			a->config_path = optarg;
			break;
		case 'r':
		case 'p':
		case 'm':
			if ((v = parse_num(optarg, 3, INT_MAX)) == -1 ||
			    !fd_valid((int)v)) {
				snprintf(err, errlen, "--%s-fd %s: not an "
				    "open file descriptor", c == 'r' ?
				    "ready" : c == 'p' ? "parent" : "metrics",
				    optarg);
				return -1;
			}
			if (c == 'r')
				a->ready_fd = (int)v;
			else if (c == 'p')
				a->parent_fd = (int)v;
			else
				a->metrics_fd = (int)v;
			break;
		case 'd':
			a->foreground = 1;
			break;
		case 'v':
			a->verbose++;
			break;
		case 'V':
			a->version = 1;
			return 0;
		case 'h':
			a->help = 1;
			return 0;
		case ':':
			snprintf(err, errlen, "%s needs an argument",
			    argv[optind - 1]);
			return -1;
		default:
			snprintf(err, errlen, "unknown option %s",
			    argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"",
		    argv[optind]);
		return -1;
	}
	if (a->topic == NULL)
		missing = "--topic";
	else if (a->instance == -1)
		missing = "--instance";
	else if (a->concurrency == -1)
		missing = "--concurrency";
	else if (a->pod_id == NULL)
		missing = "--pod-id";
	else if (a->config_path == NULL)
		missing = "--config";
	else if (a->ready_fd == -1)
		missing = "--ready-fd";
	else if (a->parent_fd == -1)
		missing = "--parent-fd";
	if (missing != NULL) {
		snprintf(err, errlen, "%s is required", missing);
		return -1;
	}
	return 0;
}

/* --- the master's side of a worker ---------------------------------------- */

int
proc_parent_pipe(int fds[2], char *err, size_t errlen)
{
	if (pipe2(fds, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "parent pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

pid_t
proc_spawn_worker(const char *path, struct proc_worker_args *a,
    int parent_rd, int *ready_rd, char *err, size_t errlen)
{
	struct proc_argv	 av;
	struct sigaction	 dfl;
	sigset_t		 all, old;
	pid_t			 pid, master = getpid();
	int			 fds[2], sig, saved;

	if (access(path, X_OK) == -1) {
		snprintf(err, errlen, "cannot run %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (pipe2(fds, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "ready pipe: %s", strerror(errno));
		return -1;
	}

	/* Everything the child needs is built now: after fork, no malloc. */
	a->ready_fd = fds[1];
	a->parent_fd = parent_rd;
	proc_worker_argv(&av, path, a);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;

	/*
	 * No signal may run the master's handlers in the child: libevent's
	 * would write into the master's own signal socket.
	 */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		for (sig = 1; sig < NSIG; sig++)
			(void)sigaction(sig, &dfl, NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* The fds the worker keeps lose FD_CLOEXEC. */
		if (fcntl(fds[1], F_SETFD, 0) == -1 ||
		    fcntl(parent_rd, F_SETFD, 0) == -1 ||
		    (a->metrics_fd > STDERR_FILENO &&
		    fcntl(a->metrics_fd, F_SETFD, 0) == -1))
			_exit(PROC_EXIT_EXEC);
#ifdef HAVE_SYS_PRCTL_H
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
		/* The master may have died before prctl(). */
		if (getppid() != master)
			_exit(PROC_EXIT_ERROR);
		execve(path, av.argv, environ);
		_exit(PROC_EXIT_EXEC);
	}
	saved = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fds[1]);
	a->ready_fd = -1;
	if (pid == -1) {
		snprintf(err, errlen, "fork: %s", strerror(saved));
		close(fds[0]);
		return -1;
	}
	(void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
	*ready_rd = fds[0];
	return pid;
}

enum proc_ready
proc_ready_recv(int fd)
{
	char	buf[64];
	ssize_t	n;

	n = read(fd, buf, sizeof(buf) - 1);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return PROC_READY_NONE;
	if (n <= 0)
		return PROC_READY_EOF;
	buf[n] = '\0';
	return strstr(buf, "ready") != NULL ? PROC_READY_YES :
	    PROC_READY_NONE;
}

/* --- the worker's side ---------------------------------------------------- */

int
proc_ready_send(int fd, char *err, size_t errlen)
{
	int rc = 0;

	if (write(fd, "ready\n", 6) != 6) {
		snprintf(err, errlen, "ready pipe: %s", strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

static void
parent_read_cb(evutil_socket_t fd, short what SAGAD_UNUSED, void *arg)
{
	struct proc_parent	*p = arg;
	char			 buf[64];
	ssize_t			 n;

	n = read(fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		p->gone("its pipe closed", p->arg);
}

int
proc_parent_watch(struct proc_parent *p, struct event_base *base, pid_t ppid,
    int parent_fd, proc_gone_fn gone, void *arg, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->ppid = ppid;
	p->gone = gone;
	p->arg = arg;
	(void)fcntl(parent_fd, F_SETFL, O_NONBLOCK);
	(void)fcntl(parent_fd, F_SETFD, FD_CLOEXEC);
	p->ev = event_new(base, parent_fd, EV_READ | EV_PERSIST,
	    parent_read_cb, p);
	if (p->ev == NULL || event_add(p->ev, NULL) == -1) {
		snprintf(err, errlen, "cannot watch the parent pipe");
		return -1;
	}
	return 0;
}

int
proc_parent_alive(const struct proc_parent *p)
{
	return p->ppid != 1 && kill(p->ppid, 0) == 0;
}

int
proc_parent_check(struct proc_parent *p)
{
	if (getppid() == p->ppid)
		return 1;
	p->gone("reparented", p->arg);
	return 0;
}

void
proc_parent_close(struct proc_parent *p)
{
	if (p->ev != NULL)
		event_free(p->ev);
	p->ev = NULL;
}

/* --- both ------------------------------------------------------------------ */

static void
signal_cb(evutil_socket_t sig, short what SAGAD_UNUSED, void *arg)
{
	struct proc_signals *s = arg;

	s->fn((int)sig, s->arg);
}

int
proc_signals_watch(struct proc_signals *s, struct event_base *base,
    const int *sigs, size_t nsigs, proc_signal_fn fn, void *arg, char *err,
    size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->fn = fn;
	s->arg = arg;
	if (nsigs > PROC_NSIG_MAX) {
		snprintf(err, errlen, "%zu signals: at most %d", nsigs,
		    PROC_NSIG_MAX);
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < nsigs; i++) {
		s->ev[i] = evsignal_new(base, sigs[i], signal_cb, s);
		if (s->ev[i] == NULL || event_add(s->ev[i], NULL) == -1) {
			if (s->ev[i] != NULL)
				event_free(s->ev[i]);
			s->ev[i] = NULL;
			snprintf(err, errlen, "cannot watch signal %d",
			    sigs[i]);
			proc_signals_close(s);
			return -1;
		}
		s->n = i + 1;
	}
	return 0;
}

void
proc_signals_close(struct proc_signals *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ev[i] != NULL)
			event_free(s->ev[i]);
	s->n = 0;
}

struct config *
proc_config_reload(const struct config *running, const char *path,
    const char *pod_id, char *err, size_t errlen, char *notes,
    size_t noteslen)
{
	struct config *cfg;

	if (noteslen > 0)
		notes[0] = '\0';
	if ((cfg = config_load(path, pod_id, err, errlen)) == NULL)
		return NULL;
	if (config_reload_check(running, cfg, notes, noteslen) > 0)
		config_keep_restart_keys(cfg, running);
	return cfg;
}

/* --- least privilege ------------------------------------------------------- */

int
proc_user_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid,
    char *err, size_t errlen)
{
	struct passwd	*pw;
	struct group	*gr;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "user \"%s\": %s", user, errno != 0 ?
		    strerror(errno) : "no such user");
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group != NULL) {
		errno = 0;
		if ((gr = getgrnam(group)) == NULL) {
			snprintf(err, errlen, "group \"%s\": %s", group,
			    errno != 0 ? strerror(errno) : "no such group");
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

int
proc_drop_privileges(const char *user, const char *group, char *err,
    size_t errlen)
{
	uid_t	uid;
	gid_t	gid;

	if (geteuid() != 0)
		return 1;
	if (proc_user_lookup(user, group, &uid, &gid, err, errlen) == -1)
		return -1;
	if (uid == 0) {
		snprintf(err, errlen, "user \"%s\" is root: name an "
		    "unprivileged user", user);
		return -1;
	}
	if (setgroups(1, &gid) == -1 || setresgid(gid, gid, gid) == -1) {
		snprintf(err, errlen, "cannot switch to group %u: %s",
		    (unsigned)gid, strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		snprintf(err, errlen, "cannot switch to user %s: %s", user,
		    strerror(errno));
		return -1;
	}
	if (setuid(0) != -1 || geteuid() == 0) {
		snprintf(err, errlen, "still able to become root after "
		    "switching to user %s", user);
		return -1;
	}
	/* setuid clears it; a core or ptrace by the user stays possible. */
	(void)prctl(PR_SET_DUMPABLE, 1);
	return 0;
}

int
proc_refuse_root(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->user == NULL || (geteuid() != 0 && getuid() != 0))
		return 0;
	snprintf(err, errlen, "running as root although user = \"%s\" is "
	    "set: the master did not drop its privileges; refusing to run",
	    cfg->user);
	return -1;
}
