/*
 * ctl.h - sagactl, the command-line client of sagad: run, get, watch, flows,
 * health and bench over sagad's gRPC API. The whole program lives in the
 * library so tests can call its pieces; src/sagactl.c is only main().
 */
#ifndef SAGAD_CTL_H
#define SAGAD_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "saga.h"
#include "saga/v1/saga.pb-c.h"

/* Exit codes (sagactl(1)). */
enum ctl_exit {
	CTL_EXIT_OK = 0,		/* completed, or the request succeeded */
	CTL_EXIT_FAILED = 1,		/* compensated, failed, or refused */
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_UNAVAILABLE = 3,	/* sagad could not be reached in time */
	CTL_EXIT_UNKNOWN = 4,		/* run: no answer in time, the saga's
					   end is not known (sagactl get ID) */
};

int	ctl_main(int argc, char **argv);

/* "key=value" into key and value; -1 with a sentence in err if no '='. */
int	ctl_parse_kv(const char *, char **key, char **value, char *err,
	    size_t errlen);
/* "30s", "500ms", "2m", "1h", or plain seconds; -1 if malformed. */
int	ctl_parse_duration(const char *, int64_t *us);
/* A saga as a readable timeline of its steps. */
void	ctl_print_saga(FILE *, const struct saga *);
/*
 * A saga event as the one line of JSON `sagactl watch --json` prints for it
 * (protobuf's JSON mapping of saga.v1.SagaEvent), its strings escaped.
 */
void	ctl_print_event_json(FILE *, const Saga__V1__SagaEvent *);
/* A failed call as the line of JSON --json prints: {"error":{...}}. */
void	ctl_print_error_json(FILE *, int status, const char *message);

#endif
