/*
 * worker.c - main() of sagad-worker, and nothing else: its flags (parsed
 * by proc.c, where the master builds them too), its log and title, then
 * the worker's life (src/wproc.c). A bad flag or config is exit status
 * PROC_EXIT_FATAL (2), which the master reads as "do not respawn".
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proc.h"
#include "proctitle.h"
#include "util.h"
#include "wproc.h"

int
main(int argc, char *argv[])
{
	struct proc_worker_args	 a;
	struct wproc		*w;
	pid_t			 ppid;
	const char		*crash;
	char			 prefix[300], err[8 * SAGAD_ERRLEN];
	char			*line, *save = NULL;
	int			 rc;

	(void)proctitle_init(argc, argv);
	if (proc_worker_parse(&a, argc, argv, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagad-worker: %s\n", err);
		proc_worker_usage(stderr);
		return PROC_EXIT_FATAL;
	}
	if (a.help) {
		proc_worker_usage(stdout);
		return PROC_EXIT_OK;
	}
	if (a.version) {
		printf("sagad-worker %s\n", PACKAGE_VERSION);
		return PROC_EXIT_OK;
	}
	ppid = getppid();

	crash = getenv("SAGAD_WORKER_CRASH_AT_START");
	if (crash != NULL && strcmp(crash, "1") == 0)
		return PROC_EXIT_ERROR;

	log_init("sagad-worker", a.foreground ? LOG_TO_STDERR : LOG_TO_SYSLOG,
	    a.verbose);
	snprintf(prefix, sizeof(prefix), "%s #%d", a.topic, a.instance);
	log_setprefix(prefix);
	proctitle_set("sagad: worker %s #%d", a.topic, a.instance);

	if ((w = wproc_new(&a, ppid, &rc, err, sizeof(err))) == NULL) {
		if (rc != PROC_EXIT_FATAL && err[0] != '\0')
			fatalx("%s", err);
		for (line = strtok_r(err, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_warnx("%s", line);
		return rc;
	}
	rc = wproc_run(w);
	wproc_free(w);
	return rc;
}
