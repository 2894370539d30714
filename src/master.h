/*
 * master.h - the sagad master process: its libevent loop, the signals it
 * answers as events (HUP reload, TERM/INT stop, USR1 reopen logs, CHLD
 * reap), its one periodic timer, the worker supervisor, and the pieces of
 * process life around them: pidfile and daemonizing. Process-layer code:
 * it logs and decides; sagad.c's main() only strings these calls together.
 */
#ifndef SAGAD_MASTER_H
#define SAGAD_MASTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc.h"

struct config;
struct event;
struct event_base;
struct options;
struct sup;

#define MASTER_HZ	10	/* runs of master_cron() per second */

struct master;

/*
 * What the master runs besides the workers: listeners (the gRPC server on
 * `listen`), plugged into its event base. Any hook may be NULL. start()
 * runs once the loop and the workers exist; a failure stops the start-up.
 * reload() runs after a new config was swapped in (old is about to be
 * freed). stop() runs first on SIGTERM/SIGINT: stop accepting; the master
 * then drains the workers.
 */
struct master_hooks {
	int	(*start)(struct master *, void *arg, char *err, size_t errlen);
	void	(*reload)(struct master *, void *arg,
		    const struct config *old);
	void	(*stop)(struct master *, void *arg);
	/* Periodic work, on the master's one timer (MASTER_HZ). */
	void	(*cron)(struct master *, void *arg);
	/* While stopping: non-zero keeps the loop up (sagas in flight). */
	int	(*busy)(struct master *, void *arg);
	void	 *arg;
};

struct master {
	struct event_base	*base;
	struct config		*cfg;		/* owned; swapped on reload */
	struct sup		*sup;
	const char		*config_path;	/* absolute */
	const char		*pod_id;	/* -P / POD_ID, or NULL */
	int			 foreground;
	int			 verbose;
	struct master_hooks	 hooks;

	struct proc_signals	 sigs;		/* HUP TERM INT USR1 CHLD */
	struct event		*ev_cron;
	uint64_t		 cronloops;
	struct sup_topic	*extra;		/* topics besides the config's */
	size_t			 nextra;
	int			 stopping;
	int64_t			 stop_deadline_ms;
};

/*
 * Sets the master up around cfg (which it then owns): event base, signal
 * events, the cron, the supervisor, the hooks' start, and the workers of
 * every topic. opts must outlive the master. Returns 0, or -1 with err.
 */
int		 master_init(struct master *, const struct options *opts,
		    const char *config_path, struct config *cfg,
		    const struct master_hooks *hooks, char *err, size_t errlen);

/*
 * Topics the supervisor runs besides the config's own (orch_pods.c decides
 * which): a dead pod's throttling topics ("Flow/Node@POD", the worker run
 * with -P POD) and the topics a reload removed while they still hold work
 * ("Flow/Node~MODE"). Copied; those no longer listed are retired.
 */
void		 master_set_extra(struct master *, const struct sup_topic *,
		    size_t n);

/* Runs the loop until a stop completed. Returns the exit status (0). */
int		 master_run(struct master *);
void		 master_free(struct master *);

/* The worker binary: env SAGAD_WORKER, else SAGAD_LIBEXECDIR. */
const char	*master_worker_path(void);

/*
 * Writes path into buf, made absolute against the current directory (the
 * daemon chdirs to /). Returns 0, or -1 with err.
 */
int		 master_abspath(const char *path, char *buf, size_t buflen,
		    char *err, size_t errlen);

/*
 * Opens and locks the pidfile. Refuses (-1, err says who) while another
 * process holds its lock or the pid it names is alive. Returns the fd,
 * to keep open for the life of the daemon (it holds the lock).
 */
int		 master_pidfile_open(const char *path, char *err,
		    size_t errlen);
int		 master_pidfile_write(int fd, pid_t, char *err, size_t errlen);
void		 master_pidfile_remove(const char *path, int fd);

/*
 * Detaches from the terminal: fork, setsid, fork, chdir /, std fds to
 * /dev/null. Only the daemon returns: 0, with *notify set to a pipe that
 * master_daemon_notify() writes to, which tells the waiting launcher to
 * exit 0 (msg NULL) or to print msg and exit 1. -1 with err when it could
 * not start.
 */
int		 master_daemonize(int *notify, char *err, size_t errlen);
void		 master_daemon_notify(int notify, const char *msg);

#endif
