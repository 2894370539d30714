/*
 * options.h - sagad's command line (sagad(8)), parsed into a structure by a
 * library function so that t/check_options.c can prove every flag without
 * starting a daemon. The parser neither prints nor exits: main() decides.
 */
#ifndef SAGAD_OPTIONS_H
#define SAGAD_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#define OPTIONS_DEFAULT_CONFIG	SAGAD_SYSCONFDIR "/sagad/sagad.conf"
#define OPTIONS_DEFAULT_PIDFILE	SAGAD_RUNSTATEDIR "/sagad.pid"

struct options {
	const char	*config_path;	/* -c; OPTIONS_DEFAULT_CONFIG */
	const char	*pidfile;	/* -p; OPTIONS_DEFAULT_PIDFILE */
	const char	*pod_id;	/* -P, else env POD_ID, else NULL */
	int		 foreground;	/* -d */
	int		 test;		/* -t */
	int		 verbose;	/* -v, once per -v */
	int		 version;	/* -V */
	int		 help;		/* -h */
};

enum options_result {
	OPTIONS_OK = 0,
	OPTIONS_USAGE = 2	/* bad flag or argument: err says which */
};

/*
 * Parses argv into opts, which it first resets to the defaults. env_pod_id is
 * the value of POD_ID in the environment (or NULL); -P wins over it. The
 * strings in opts point into argv and env_pod_id. On OPTIONS_USAGE, err holds
 * one sentence naming the offending flag; the caller prints it and the usage
 * and exits with 2.
 */
enum options_result options_parse(struct options *opts, int argc,
		    char *argv[], const char *env_pod_id, char *err,
		    size_t errlen);

/* Writes the usage (the -h text) to fp. */
void		 options_usage(FILE *fp, const char *progname);

#endif
