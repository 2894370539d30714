/*
 * log.h - the process layer's logging: stderr in the foreground, syslog as a
 * daemon, or a file that SIGUSR1 reopens. Library code never logs; it fills an
 * error buffer its caller owns and the process decides what to say.
 */
#ifndef SAGAD_LOG_H
#define SAGAD_LOG_H

#include <stdarg.h>

#include "util.h"

enum log_dest { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_FILE };

/* Levels above LOG_INFO are shown with -v (debug) and -vv (trace). */
void	log_init(const char *ident, enum log_dest dest, int verbose);
int	log_open_file(const char *path);	/* 0, or -1 with errno */
int	log_reopen(void);			/* SIGUSR1 */
void	log_setverbose(int);
int	log_getverbose(void);
void	log_setprefix(const char *);		/* e.g. "worker Flow/Node #1" */
/*
 * log_format (issue 14): 0 text, 1 JSON, one object a line with time,
 * level, pod, process, pid, msg, and id (the saga's) on a line about a
 * saga. pod names the pod in JSON lines.
 */
void	log_setformat(int json, const char *pod);

/*
 * The one line of an ended saga, at info in either format: id, flow, mode,
 * state, duration_ms, error. log_init makes it util_saga_end's.
 */
void	log_saga_end(const struct util_saga_end *);

/*
 * The one shape of a library's log line (util_log_fn): "saga ID: msg", or
 * msg alone without an id. Both the master and the workers pass it.
 */
void	log_saga(enum util_level, const char *saga_id, const char *msg,
	    void *arg);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_trace(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
