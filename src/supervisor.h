/*
 * supervisor.h - the master's process table: one slot per worker process
 * (topic, instance), each fork+exec'ed as sagad-worker, reaped on SIGCHLD,
 * respawned with a per-slot exponential backoff, and reconciled against a
 * new list of topics on SIGHUP. This is process-layer code: it logs.
 */
#ifndef SAGAD_SUPERVISOR_H
#define SAGAD_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;

#define SUP_BACKOFF_MIN_MS	100	/* first respawn delay */
#define SUP_BACKOFF_MAX_MS	30000	/* cap of the doubling */
#define SUP_STABLE_MS		10000	/* a run this long resets the backoff */

/* What the supervisor runs: one topic, `workers` processes of it. */
/*
 * A topic of the table: "Flow/Node", or "Flow/Node@POD" for a topic of
 * another pod this one adopted (its workers run with -P POD and drain
 * that pod's subjects).
 */
#define SUP_POD_SEP	'@'

struct sup_topic {
	const char	*name;		/* "Flow/Node" or "Flow/Node@POD" */
	int		 workers;
	int		 concurrency;
};

/* What every worker gets on its command line besides its topic. */
struct sup_params {
	const char	*worker_path;	/* the sagad-worker binary */
	const char	*config_path;
	const char	*pod_id;
	int		 foreground;	/* workers log to the inherited stderr */
	int		 verbose;
	int		 stop_timeout_ms; /* TERM to KILL (shutdown_timeout_ms) */
};

enum sup_state {
	SUP_WAITING,		/* not running: starts at next_start_ms */
	SUP_STARTING,		/* forked, has not said ready yet */
	SUP_RUNNING,		/* said ready */
	SUP_STOPPING,		/* sent SIGTERM: draining, KILL at kill_at_ms */
	SUP_FATAL		/* exited PROC_EXIT_FATAL (proc.h): left down */
};

struct sup_slot {
	char		*topic;		/* as the table names it */
	char		*wtopic;	/* the worker's topic: "Flow/Node" */
	char		*pod;		/* another pod's (adopted), or NULL */
	int		 instance;	/* 1..workers */
	int		 concurrency;
	pid_t		 pid;		/* 0 when not running */
	enum sup_state	 state;
	int		 retired;	/* gone when reaped, never respawned */
	int		 backoff_ms;	/* delay before the next respawn */
	int64_t		 started_ms;	/* monotonic, at fork */
	int64_t		 next_start_ms;	/* monotonic, SUP_WAITING */
	int64_t		 kill_at_ms;	/* monotonic, SUP_STOPPING */
	int		 ready;		/* wrote "ready" on its ready fd */
	unsigned	 pending_sigs;	/* 1 << sig, to send once ready */
	int		 ready_fd;	/* our end of its ready pipe, or -1 */
	struct event	*ready_ev;
	struct sup	*sup;
};

struct sup {
	struct event_base	*base;
	struct sup_params	 params;
	struct sup_slot		**slots;
	size_t			 nslots;
	int			 parent_rd;	/* workers' end of the parent pipe */
	int			 parent_wr;	/* ours: held open, never written */
	int64_t			 batch_ms;	/* when the last batch started */
	int			 batch_pending;	/* log when all are ready */
	int			 shutting_down;
};

/*
 * Creates an empty table. params' strings are copied. Returns NULL with err
 * filled when the parent pipe cannot be made.
 */
struct sup	*sup_new(struct event_base *, const struct sup_params *,
		    char *err, size_t errlen);
void		 sup_free(struct sup *);

/* Updates the parameters (reload: the stop timeout may change). */
void		 sup_set_params(struct sup *, const struct sup_params *);

/*
 * Makes the table match topics: starts the missing instances, retires the
 * extra ones gracefully, replaces those whose concurrency changed (new one
 * started first, old one drained) and gives fatal slots another chance.
 */
void		 sup_reconcile(struct sup *, const struct sup_topic *,
		    size_t ntopics);

/* Reaps every exited child (SIGCHLD) and schedules respawns. */
void		 sup_reap(struct sup *);

/*
 * Periodic work: due respawns, KILL of workers past their stop deadline.
 * Returns when (monotonic ms) the next of those falls due, INT64_MAX if
 * none, so that the caller's one timer can wake up on time.
 */
int64_t		 sup_cron(struct sup *, int64_t now_ms);

/*
 * Sends sig to every live worker that is not being stopped. A worker that
 * has not said ready gets it once it does: before that it may not have its
 * handlers installed and HUP or USR1 would kill it.
 */
void		 sup_signal(struct sup *, int sig);

/* SIGTERM to all workers, no more respawns; KILL after the timeout. */
void		 sup_shutdown(struct sup *);

/* Worker processes still alive (not yet reaped). */
size_t		 sup_nalive(const struct sup *);

#endif
