/*
 * sagad.c - main() of the sagad master, and nothing else: flags, config,
 * pidfile, daemonizing, then the master's loop. Everything it calls lives
 * in libsagad (options.c, master.c, supervisor.c, proc.c) where tests can
 * reach it; its exit codes are proc.h's.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "options.h"
#include "proc.h"
#include "proctitle.h"
#include "service.h"
#include "util.h"

/*
 * The files the config names that config_load does not read: the tokens
 * and the password files. `sagad -t` reports them; the start reads them
 * again where they are used.
 */
static int
check_secret_files(const struct config *cfg, char *err, size_t errlen)
{
	const char	*pw[] = { cfg->redis.password_file,
			    cfg->nats.password_file };
	char		 buf[1100];
	struct auth	*a;

	if (cfg->auth.tokens_file != NULL) {
		if ((a = auth_load(cfg->auth.tokens_file, NULL, 0, err,
		    errlen)) == NULL)
			return -1;
		auth_free(a);
	}
	for (size_t i = 0; i < sizeof(pw) / sizeof(pw[0]); i++) {
		if (pw[i] == NULL)
			continue;
		if (auth_read_secret(pw[i], buf, sizeof(buf), err,
		    errlen) == -1)
			return -1;
		auth_wipe(buf, sizeof(buf));
	}
	if (cfg->user != NULL) {
		uid_t	uid;
		gid_t	gid;

		if (proc_user_lookup(cfg->user, cfg->group, &uid, &gid, err,
		    errlen) == -1)
			return -1;
	}
	if (cfg->nats.creds != NULL && access(cfg->nats.creds, R_OK) == -1) {
		snprintf(err, errlen, "%s: %s", cfg->nats.creds,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	struct options	 opts;
	struct master	 m;
	struct master_hooks hooks;
	struct service	*sv;
	struct config	*cfg;
	char		 err[8 * SAGAD_ERRLEN];
	char		 config_path[PATH_MAX], pidfile[PATH_MAX];
	int		 pidfd, notify = -1, rc;

	(void)proctitle_init(argc, argv);
	if (options_parse(&opts, argc, argv, getenv("POD_ID"), err,
	    sizeof(err)) != OPTIONS_OK) {
		fprintf(stderr, "sagad: %s\n", err);
		options_usage(stderr, "sagad");
		return PROC_EXIT_FATAL;
	}
	if (opts.help) {
		options_usage(stdout, "sagad");
		return PROC_EXIT_OK;
	}
	if (opts.version) {
		printf("sagad %s\n", PACKAGE_VERSION);
		return PROC_EXIT_OK;
	}
	log_init("sagad", LOG_TO_STDERR, opts.verbose);

	if (master_abspath(opts.config_path, config_path, sizeof(config_path),
	    err, sizeof(err)) == -1 || master_abspath(opts.pidfile, pidfile,
	    sizeof(pidfile), err, sizeof(err)) == -1) {
		fprintf(stderr, "sagad: %s\n", err);
		return PROC_EXIT_ERROR;
	}
	if ((cfg = config_load(config_path, opts.pod_id, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "%s%s", err,
		    err[0] && err[strlen(err) - 1] != '\n' ? "\n" : "");
		fprintf(stderr, "sagad: %s: configuration has errors\n",
		    config_path);
		return PROC_EXIT_ERROR;
	}
	if (check_secret_files(cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagad: %s\n", err);
		fprintf(stderr, "sagad: %s: configuration has errors\n",
		    config_path);
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	/* The TLS files too: a bad certificate stops a reload's check. */
	if (opts.test && service_tls_check(cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\nsagad: %s: configuration has errors\n",
		    config_path, err, config_path);
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	if (opts.test) {
		printf("configuration OK\n");
		config_free(cfg);
		return PROC_EXIT_OK;
	}

	log_setformat(strcmp(cfg->log_format, "json") == 0, cfg->pod_id);
	/* A log_file wins over stderr and syslog, with -d too. */
	if (cfg->log_file != NULL && log_open_file(cfg->log_file) == -1) {
		fprintf(stderr, "sagad: log_file %s: %s\n", cfg->log_file,
		    strerror(errno));
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	if ((pidfd = master_pidfile_open(pidfile, err, sizeof(err))) == -1) {
		fprintf(stderr, "sagad: %s\n", err);
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	/*
	 * With `user` and started as root, the pidfile and the log file go
	 * to that user now: the master drops root once its listeners are
	 * bound (master_init), and reopens the log as that user.
	 */
	if (cfg->user != NULL && geteuid() == 0) {
		uid_t	uid;
		gid_t	gid;

		err[0] = '\0';
		if (proc_user_lookup(cfg->user, cfg->group, &uid, &gid, err,
		    sizeof(err)) == -1 || fchown(pidfd, uid, gid) == -1 ||
		    (cfg->log_file != NULL && chown(cfg->log_file, uid,
		    gid) == -1)) {
			fprintf(stderr, "sagad: %s\n", err[0] ? err :
			    strerror(errno));
			master_pidfile_remove(pidfile, pidfd);
			config_free(cfg);
			return PROC_EXIT_ERROR;
		}
	}
	if (!opts.foreground) {
		if (master_daemonize(&notify, err, sizeof(err)) == -1) {
			fprintf(stderr, "sagad: %s\n", err);
			config_free(cfg);
			return PROC_EXIT_ERROR;
		}
		if (cfg->log_file == NULL)
			log_init("sagad", LOG_TO_SYSLOG, opts.verbose);
	}
	proctitle_set("sagad: master");
	if (master_pidfile_write(pidfd, getpid(), err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		master_daemon_notify(notify, err);
		master_pidfile_remove(pidfile, pidfd);
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	/* cnats threads hand work to the loop: before any event base. */
	if (bus_init(err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		master_daemon_notify(notify, err);
		master_pidfile_remove(pidfile, pidfd);
		config_free(cfg);
		return PROC_EXIT_ERROR;
	}
	/* The gRPC side (Health, Orchestrator, store, bus) plugs in as hooks. */
	sv = service_new(&hooks);
	if (master_init(&m, &opts, config_path, cfg, &hooks, err,
	    sizeof(err)) == -1) {
		log_warnx("%s", err);
		master_daemon_notify(notify, err);
		service_free(sv);
		master_free(&m);
		bus_fini();
		master_pidfile_remove(pidfile, pidfd);
		return PROC_EXIT_ERROR;
	}
	master_daemon_notify(notify, NULL);
	rc = master_run(&m);
	service_free(sv);
	master_free(&m);
	bus_fini();
	master_pidfile_remove(pidfile, pidfd);
	return rc;
}
