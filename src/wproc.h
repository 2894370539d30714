/*
 * wproc.h - the sagad-worker process: one (topic, instance) of an async or
 * throttling flow, or the callback deliveries. Its whole life but main():
 * the config and its topic, one libevent loop with its signals (TERM/INT
 * drain, HUP reload, USR1 reopen the log), the parent pipe and the cron
 * that notice an orphan, the ready pipe, and the consumer that hands every
 * message of its topic to the engine (wengine.h). Process-layer code: it
 * logs; workers/worker.c parses the flags (proc.h) and exits with what
 * these functions return.
 */
#ifndef SAGAD_WPROC_H
#define SAGAD_WPROC_H

#include <stddef.h>
#include <sys/types.h>

#include "proc.h"

struct wproc;

/*
 * Starts the worker a describes, whose master was ppid when it started:
 * loads the config and checks its topic, makes the loop and its events,
 * opens Redis, NATS and the engine (neither peer needs to be up), and says
 * ready to the master. Returns the worker, or NULL with *exit_code set
 * (PROC_EXIT_FATAL: the config or the topic is wrong, do not respawn;
 * PROC_EXIT_ERROR otherwise) and err saying why, one log line a line (""
 * when there is nothing to say: the master is gone already).
 */
struct wproc	*wproc_new(const struct proc_worker_args *a, pid_t ppid,
		    int *exit_code, char *err, size_t errlen);

/*
 * Runs the loop until a drain has finished (SIGTERM, SIGINT) or the master
 * is gone. Returns the exit code: PROC_EXIT_OK.
 */
int		 wproc_run(struct wproc *);

/* Closes the engine, the bus, the store and the loop, in that order. */
void		 wproc_free(struct wproc *);

#endif
