/*
 * proc.h - the life every sagad process shares, written once (relayd's
 * proc.c): the exit codes; sagad-worker's command line, one struct that the
 * master builds an argv from and the worker parses back; fork+exec of a
 * worker with its ready and parent pipes; the worker's ends of those pipes
 * and its orphan detection; signals as loop events; and the SIGHUP reload
 * of the config, with the keys only a restart can change kept. The master
 * (master.c, supervisor.c) and the worker (wproc.c) both go through here.
 *
 * Library code: it returns -1 with a sentence in an error buffer the caller
 * owns, and never logs or exits; the process layer decides. Not here: what
 * a process does with its loop (master.c, wproc.c) and the log (log.c,
 * whose log_saga is the one saga-id line format).
 */
#ifndef SAGAD_PROC_H
#define SAGAD_PROC_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct config;
struct event;
struct event_base;

/* Exit codes of sagad and sagad-worker (sagad(8)), defined once. */
enum proc_exit {
	PROC_EXIT_OK = 0,
	PROC_EXIT_ERROR = 1,	/* runtime error: a worker is respawned */
	PROC_EXIT_FATAL = 2,	/* bad flags or config: a worker is not
				   respawned until a reload; sagad's usage */
	PROC_EXIT_EXEC = 127,	/* the child could not execve() the worker */
};

/* --- sagad-worker's command line ------------------------------------------ */

/*
 * What a worker is told on its command line. The master fills it and
 * proc_spawn_worker() turns it into argv; the worker's main() gets it back
 * from proc_worker_parse().
 */
struct proc_worker_args {
	const char	*topic;		/* "Flow/Node" or WORK_CALLBACK_TOPIC */
	int		 instance;	/* 1 .. PROC_INSTANCE_MAX */
	int		 concurrency;	/* 1 .. PROC_CONCURRENCY_MAX */
	const char	*pod_id;
	const char	*config_path;
	int		 ready_fd;	/* the worker writes "ready\n" here */
	int		 parent_fd;	/* EOF here: the master is gone */
	int		 metrics_fd;	/* the pod's metrics segment; <= 2: none */
	int		 foreground;	/* log to the inherited stderr */
	int		 verbose;	/* 0..2 are passed on */
	int		 help;		/* parsed --help: print usage, exit 0 */
	int		 version;	/* parsed --version */
};

#define PROC_INSTANCE_MAX	100000
#define PROC_CONCURRENCY_MAX	1000000
#define PROC_ARGV_MAX		24

/* An argv and the digits it points into: built before fork, no malloc. */
struct proc_argv {
	char	*argv[PROC_ARGV_MAX];
	char	 digits[5][16];
};

/* Builds path's argv from a (whose strings must outlive out). */
void	proc_worker_argv(struct proc_argv *out, const char *path,
	    const struct proc_worker_args *a);

/*
 * Parses a worker's argv into a, whose strings then point into argv.
 * Returns 0 (with help or version set, the rest may be missing), or -1
 * with a sentence in err; the caller prints it with proc_worker_usage()
 * and exits PROC_EXIT_FATAL.
 */
int	proc_worker_parse(struct proc_worker_args *a, int argc, char *argv[],
	    char *err, size_t errlen);
void	proc_worker_usage(FILE *);

/* --- the master's side of a worker ---------------------------------------- */

/*
 * The parent pipe: every worker gets the read end, the master holds the
 * write end and never writes, so that the workers see EOF when the master
 * dies, however it dies. Both ends close-on-exec. 0, or -1 with err.
 */
int	proc_parent_pipe(int fds[2], char *err, size_t errlen);

/*
 * fork+exec of path as the worker a describes; a->ready_fd is set to a new
 * ready pipe's write end and a->parent_fd to parent_rd (the read end of
 * proc_parent_pipe). The master may have threads (cnats): the child calls
 * only async-signal-safe functions, with every signal reset to its default
 * (libevent's handlers would write into the master's signal socket), and
 * PR_SET_PDEATHSIG set. The child exits PROC_EXIT_EXEC when it cannot
 * execve, 1 when the master died before prctl. Returns the pid with
 * *ready_rd the read end of the ready pipe (non-blocking, close-on-exec),
 * or -1 with err.
 */
pid_t	proc_spawn_worker(const char *path, struct proc_worker_args *a,
	    int parent_rd, int *ready_rd, char *err, size_t errlen);

/* What proc_ready_recv() read on a worker's ready pipe. */
enum proc_ready {
	PROC_READY_NONE = 0,	/* nothing (yet), or not the word */
	PROC_READY_YES = 1,	/* it said "ready" */
	PROC_READY_EOF = -1,	/* closed: it is done with it, or died */
};
enum proc_ready	proc_ready_recv(int ready_rd);

/* --- the worker's side ---------------------------------------------------- */

/* Says "ready\n" to the master and closes the pipe. 0, or -1 with err. */
int	proc_ready_send(int ready_fd, char *err, size_t errlen);

/*
 * Orphan detection: the parent pipe's EOF, read as a loop event, and a
 * changed getppid() that proc_parent_check() looks for from the cron. gone
 * is called with how it was noticed ("its pipe closed", "reparented").
 */
typedef void (*proc_gone_fn)(const char *how, void *arg);
struct proc_parent {
	pid_t		 ppid;		/* the master, as the worker started */
	struct event	*ev;
	proc_gone_fn	 gone;
	void		*arg;
};
int	proc_parent_watch(struct proc_parent *, struct event_base *,
	    pid_t ppid, int parent_fd, proc_gone_fn, void *arg, char *err,
	    size_t errlen);
/* 1 while the master lives (a start-up check), else 0. */
int	proc_parent_alive(const struct proc_parent *);
/* From the cron: calls gone and returns 0 if reparented, else 1. */
int	proc_parent_check(struct proc_parent *);
void	proc_parent_close(struct proc_parent *);

/* --- both ------------------------------------------------------------------ */

/*
 * Signals as loop events (libevent's evsignal; no work in a handler): fn
 * runs on the loop for each of sigs. SIGPIPE is ignored as well: a peer
 * gone is an error return, not a death. 0, or -1 with err.
 */
#define PROC_NSIG_MAX	8
typedef void (*proc_signal_fn)(int sig, void *arg);
struct proc_signals {
	struct event	*ev[PROC_NSIG_MAX];
	size_t		 n;
	proc_signal_fn	 fn;
	void		*arg;
};
int	proc_signals_watch(struct proc_signals *, struct event_base *,
	    const int *sigs, size_t nsigs, proc_signal_fn, void *arg,
	    char *err, size_t errlen);
void	proc_signals_close(struct proc_signals *);

/*
 * SIGHUP in any process: the file at path parsed into a fresh config (with
 * pod_id, the -P override, or NULL). NULL with err, one line per error,
 * when it does not load: the running config stays (nginx's cycle). Keys
 * only a restart can change keep running's values, each one said in notes
 * (one line per key; "" when none), so that the master and every worker
 * refuse the same changes the same way.
 */
struct config	*proc_config_reload(const struct config *running,
		    const char *path, const char *pod_id, char *err,
		    size_t errlen, char *notes, size_t noteslen);

/* --- least privilege (`user`, `group`) ------------------------------------ */

/*
 * The uid and gid of user (and group, else user's primary group). Returns
 * 0, or -1 with err naming what is unknown.
 */
int	proc_user_lookup(const char *user, const char *group, uid_t *uid,
	    gid_t *gid, char *err, size_t errlen);
/*
 * Drops root for user and group for good: supplementary groups, gid, uid,
 * then checks that root cannot be regained. 0 when done, 1 when the
 * process was not root (nothing done; it runs as what it is), -1 with err.
 */
int	proc_drop_privileges(const char *user, const char *group, char *err,
	    size_t errlen);
/*
 * For a worker: -1 with err when cfg sets a user and the process is still
 * root (the master's drop failed or was skipped): it must not run.
 */
int	proc_refuse_root(const struct config *, char *err, size_t errlen);

#endif
