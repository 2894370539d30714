/*
 * options.c - sagad's flags, short and long, with getopt_long(3). This file
 * only turns argv into a struct options; it prints nothing and never exits,
 * so that the tests can call it many times in one process (optind is reset
 * on every call). The usage text lives here too, next to the table it
 * describes, and sagad(8) lists the same flags.
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "options.h"

static const char	 optstring[] = "+:c:dtp:P:vVh";

static const struct option longopts[] = {
	{ "config",	required_argument,	NULL,	'c' },
	{ "foreground",	no_argument,		NULL,	'd' },
	{ "test",	no_argument,		NULL,	't' },
	{ "pidfile",	required_argument,	NULL,	'p' },
	{ "pod-id",	required_argument,	NULL,	'P' },
	{ "verbose",	no_argument,		NULL,	'v' },
	{ "version",	no_argument,		NULL,	'V' },
	{ "help",	no_argument,		NULL,	'h' },
	{ NULL,		0,			NULL,	0 }
};

/* The long name of short flag c, for messages. */
static const char *
longname(int c)
{
	const struct option *o;

	for (o = longopts; o->name != NULL; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

static void
defaults(struct options *opts, const char *env_pod_id)
{
	memset(opts, 0, sizeof(*opts));
	opts->config_path = OPTIONS_DEFAULT_CONFIG;
	opts->pidfile = OPTIONS_DEFAULT_PIDFILE;
	if (env_pod_id != NULL && *env_pod_id != '\0')
		opts->pod_id = env_pod_id;
}

enum options_result
options_parse(struct options *opts, int argc, char *argv[],
    const char *env_pod_id, char *err, size_t errlen)
{
	int	c;

	defaults(opts, env_pod_id);
	if (errlen > 0)
		err[0] = '\0';
	optind = 0;		/* GNU: start over, as if never called */
	opterr = 0;		/* we word the messages ourselves */
	while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
		case 'p':
		case 'P':
			if (*optarg == '\0') {
				snprintf(err, errlen,
				    "option -%c (--%s) needs a non-empty %s",
				    c, longname(c), c == 'P' ? "ID" : "FILE");
				return OPTIONS_USAGE;
			}
			if (c == 'c')
				opts->config_path = optarg;
			else if (c == 'p')
				opts->pidfile = optarg;
			else
				opts->pod_id = optarg;
			break;
		case 'd':
			opts->foreground = 1;
			break;
		case 't':
			opts->test = 1;
			break;
		case 'v':
			opts->verbose++;
			break;
		case 'V':
			opts->version = 1;
			break;
		case 'h':
			opts->help = 1;
			break;
		case ':':
			snprintf(err, errlen, "option -%c (--%s) needs %s",
			    optopt, longname(optopt),
			    optopt == 'P' ? "an ID" : "a FILE");
			return OPTIONS_USAGE;
		default:
			if (optopt != 0)
				snprintf(err, errlen, "unknown option -%c",
				    optopt);
			else
				snprintf(err, errlen, "unknown option %s",
				    argv[optind - 1]);
			return OPTIONS_USAGE;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"",
		    argv[optind]);
		return OPTIONS_USAGE;
	}
	return OPTIONS_OK;
}

void
options_usage(FILE *fp, const char *progname)
{
	fprintf(fp,
	    "usage: %s [-dhtVv] [-c file] [-P id] [-p pidfile]\n"
	    "  -c, --config FILE    configuration file (default %s)\n"
	    "  -d, --foreground     stay in the foreground, log to stderr\n"
	    "  -t, --test           check the configuration and exit\n"
	    "  -p, --pidfile FILE   pid file (default %s)\n"
	    "  -P, --pod-id ID      this pod's id (overrides POD_ID and the "
	    "config's pod_id)\n"
	    "  -v, --verbose        more verbose logs (repeat for more)\n"
	    "  -V, --version        print the version and exit\n"
	    "  -h, --help           print this help and exit\n",
	    progname, OPTIONS_DEFAULT_CONFIG, OPTIONS_DEFAULT_PIDFILE);
}
