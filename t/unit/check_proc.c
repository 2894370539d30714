/*
 * check_proc.c - the life every process shares (src/proc.c): the worker's
 * argv built by the master's side and parsed back by the worker's, every
 * bad flag refused with a sentence (not an exit), the exit codes, the
 * ready pipe both ways, the parent pipe's EOF and a signal as loop events,
 * and the reload that keeps the keys only a restart can change. Real
 * pipes, a real libevent loop, config files made with mkstemp.
 */
#include "autoconf.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "check_run.h"
#include "config.h"
#include "proc.h"
#include "util.h"

static char	err[8 * SAGAD_ERRLEN];

/* Builds an argv from a, parses it back, and returns the parse result. */
static int
round_trip(const struct proc_worker_args *a, struct proc_worker_args *back,
    struct proc_argv *av)
{
	int argc = 0;

	proc_worker_argv(av, "/x/sagad-worker", a);
	while (av->argv[argc] != NULL)
		argc++;
	return proc_worker_parse(back, argc, av->argv, err, sizeof(err));
}

static void
fds(int p[2])
{
	ck_assert_int_eq(pipe(p), 0);
	/* Above stderr, as the worker demands. */
	ck_assert_int_gt(p[0], 2);
	ck_assert_int_gt(p[1], 2);
}

START_TEST(exit_codes_are_the_documented_ones)
{
	/* sagad(8): 0 ok, 1 runtime error, 2 fatal (not respawned). */
	ck_assert_int_eq(PROC_EXIT_OK, 0);
	ck_assert_int_eq(PROC_EXIT_ERROR, 1);
	ck_assert_int_eq(PROC_EXIT_FATAL, 2);
	ck_assert_int_eq(PROC_EXIT_EXEC, 127);
}
END_TEST

START_TEST(worker_argv_round_trips)
{
	struct proc_worker_args	a = {
		.topic = "Booking/CreateOrder", .instance = 3,
		.concurrency = 100, .pod_id = "pod-a",
		.config_path = "/etc/sagad/sagad.conf", .foreground = 1,
		.verbose = 5,
	}, b;
	struct proc_argv	av;
	int			p[2], q[2];

	fds(p);
	fds(q);
	a.ready_fd = p[1];
	a.parent_fd = q[0];
	ck_assert_int_eq(round_trip(&a, &b, &av), 0);
	ck_assert_str_eq(av.argv[0], "/x/sagad-worker");
	ck_assert_str_eq(b.topic, a.topic);
	ck_assert_int_eq(b.instance, 3);
	ck_assert_int_eq(b.concurrency, 100);
	ck_assert_str_eq(b.pod_id, "pod-a");
	ck_assert_str_eq(b.config_path, a.config_path);
	ck_assert_int_eq(b.ready_fd, p[1]);
	ck_assert_int_eq(b.parent_fd, q[0]);
	ck_assert_int_eq(b.foreground, 1);
	ck_assert_int_eq(b.verbose, 2);		/* at most -vv is passed */
	ck_assert_int_eq(b.help, 0);
	ck_assert_int_eq(b.version, 0);
	ck_assert_int_eq(b.metrics_fd, -1);	/* none given */
	/* The metrics segment's descriptor, when there is one (issue 14). */
	a.metrics_fd = q[1];
	ck_assert_int_eq(round_trip(&a, &b, &av), 0);
	ck_assert_int_eq(b.metrics_fd, q[1]);
	close(p[0]); close(p[1]); close(q[0]); close(q[1]);
}
END_TEST

START_TEST(worker_argv_callbacks_topic_and_defaults)
{
	struct proc_worker_args	a = {
		.topic = "callbacks", .instance = 1, .concurrency = 64,
		.pod_id = "p", .config_path = "c",
	}, b;
	struct proc_argv	av;
	int			p[2];

	fds(p);
	a.ready_fd = p[1];
	a.parent_fd = p[0];
	ck_assert_int_eq(round_trip(&a, &b, &av), 0);
	ck_assert_str_eq(b.topic, "callbacks");
	ck_assert_int_eq(b.foreground, 0);
	ck_assert_int_eq(b.verbose, 0);
	close(p[0]); close(p[1]);
}
END_TEST

/* Parses "sagad-worker" and the NULL-terminated arguments. */
static int
parse(struct proc_worker_args *a, ...)
{
	char		*argv[32];
	int		 argc = 0;
	va_list		 ap;

	argv[argc++] = (char *)(uintptr_t)"sagad-worker";
	va_start(ap, a);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	err[0] = '\0';
	return proc_worker_parse(a, argc, argv, err, sizeof(err));
}

START_TEST(worker_flags_refused_with_a_sentence)
{
	struct proc_worker_args	a;
	char			fd[16], bad[16];
	int			p[2];

	fds(p);
	snprintf(fd, sizeof(fd), "%d", p[0]);
	snprintf(bad, sizeof(bad), "%d", 999);
	ck_assert_int_eq(parse(&a, "--topic", "A/B", NULL), -1);
	ck_assert_str_eq(err, "--instance is required");
	ck_assert_int_eq(parse(&a, "--topic", "AB", NULL), -1);
	ck_assert_str_eq(err, "--topic AB: expected FLOW/NODE, callbacks or "
	    "legacy");
	ck_assert_int_eq(parse(&a, "--topic", "/B", NULL), -1);
	ck_assert_int_eq(parse(&a, "--instance", "0", NULL), -1);
	ck_assert_str_eq(err, "--instance 0: expected a number from 1 to "
	    "100000");
	ck_assert_int_eq(parse(&a, "--concurrency", "1x", NULL), -1);
	ck_assert_str_eq(err, "--concurrency 1x: expected a number from 1 "
	    "to 1000000");
	ck_assert_int_eq(parse(&a, "--pod-id", "", NULL), -1);
	ck_assert_str_eq(err, "--pod-id: expected a non-empty id");
	ck_assert_int_eq(parse(&a, "--ready-fd", "2", NULL), -1);
	ck_assert_str_eq(err, "--ready-fd 2: not an open file descriptor");
	ck_assert_int_eq(parse(&a, "--parent-fd", bad, NULL), -1);
	ck_assert_str_eq(err, "--parent-fd 999: not an open file descriptor");
	ck_assert_int_eq(parse(&a, "--topic", NULL), -1);
	ck_assert_str_eq(err, "--topic needs an argument");
	ck_assert_int_eq(parse(&a, "--nope", NULL), -1);
	ck_assert_str_eq(err, "unknown option --nope");
	ck_assert_int_eq(parse(&a, "--topic", "A/B", "extra", NULL), -1);
	ck_assert_str_eq(err, "unexpected argument \"extra\"");
	ck_assert_int_eq(parse(&a, "--topic", "A/B", "--instance", "1",
	    "--concurrency", "1", "--pod-id", "p", "--config", "c",
	    "--ready-fd", fd, NULL), -1);
	ck_assert_str_eq(err, "--parent-fd is required");
	close(p[0]); close(p[1]);
}
END_TEST

START_TEST(worker_help_and_version_win_over_missing_flags)
{
	struct proc_worker_args a;

	ck_assert_int_eq(parse(&a, "--help", NULL), 0);
	ck_assert_int_eq(a.help, 1);
	ck_assert_int_eq(parse(&a, "--topic", "A/B", "--version", NULL), 0);
	ck_assert_int_eq(a.version, 1);
	ck_assert_int_eq(a.help, 0);
}
END_TEST

START_TEST(ready_pipe_says_ready_then_eof)
{
	int p[2];

	fds(p);
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(proc_ready_recv(p[0]), PROC_READY_NONE);
	ck_assert_int_eq(proc_ready_send(p[1], err, sizeof(err)), 0);
	ck_assert_int_eq(proc_ready_recv(p[0]), PROC_READY_YES);
	ck_assert_int_eq(proc_ready_recv(p[0]), PROC_READY_EOF);
	close(p[0]);
}
END_TEST

static const char	*gone_how;

static void
gone(const char *how, void *arg)
{
	gone_how = how;
	event_base_loopbreak(arg);
}

START_TEST(parent_pipe_eof_means_the_master_is_gone)
{
	struct event_base	*base = event_base_new();
	struct proc_parent	 pp;
	int			 p[2];

	ck_assert_int_eq(proc_parent_pipe(p, err, sizeof(err)), 0);
	ck_assert_int_eq(fcntl(p[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(proc_parent_watch(&pp, base, getppid(), p[0], gone,
	    base, err, sizeof(err)), 0);
	ck_assert_int_eq(proc_parent_alive(&pp), 1);
	ck_assert_int_eq(proc_parent_check(&pp), 1);
	gone_how = NULL;
	close(p[1]);
	event_base_dispatch(base);
	ck_assert_str_eq(gone_how, "its pipe closed");
	pp.ppid = 1;		/* as if started by another parent */
	gone_how = NULL;
	ck_assert_int_eq(proc_parent_check(&pp), 0);
	ck_assert_str_eq(gone_how, "reparented");
	ck_assert_int_eq(proc_parent_alive(&pp), 0);
	proc_parent_close(&pp);
	close(p[0]);
	event_base_free(base);
}
END_TEST

static int	got_sig;

static void
on_signal(int sig, void *arg)
{
	got_sig = sig;
	event_base_loopbreak(arg);
}

START_TEST(signals_arrive_as_loop_events)
{
	static const int	 sigs[] = { SIGHUP, SIGUSR1 };
	struct event_base	*base = event_base_new();
	struct proc_signals	 ps;

	ck_assert_int_eq(proc_signals_watch(&ps, base, sigs, 2, on_signal,
	    base, err, sizeof(err)), 0);
	got_sig = 0;
	raise(SIGUSR1);
	event_base_dispatch(base);
	ck_assert_int_eq(got_sig, SIGUSR1);
	/* SIGPIPE no longer kills. */
	raise(SIGPIPE);
	proc_signals_close(&ps);
	event_base_free(base);
}
END_TEST

static char	conf_path[4200];

static const char *
write_conf(const char *text)
{
	const char	*dir = getenv("TMPDIR");
	FILE		*fp;
	int		 fd;

	if (conf_path[0] != '\0')
		unlink(conf_path);
	snprintf(conf_path, sizeof(conf_path), "%s/check_proc.XXXXXX",
	    dir != NULL ? dir : "/tmp");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return conf_path;
}

#define CONF(port, timeout) \
	"listen = \"127.0.0.1:10000\";\n" \
	"redis = { port = " port "; };\n" \
	"services = { s = { address = \"127.0.0.1:1\"; }; };\n" \
	"nodes = { N = { service = \"s\"; action = \"/a.B/C\"; " \
	"timeout_ms = " timeout "; }; };\n" \
	"flows = { F = { mode = \"sync\"; steps = [ \"N\" ]; }; };\n"

START_TEST(reload_keeps_what_only_a_restart_changes)
{
	struct config	*old, *new;
	char		 notes[SAGAD_ERRLEN];

	old = config_load(write_conf(CONF("6379", "100")), "pod", err,
	    sizeof(err));
	ck_assert_msg(old != NULL, "%s", err);
	/* A reloadable key changes; a restart key keeps its value. */
	new = proc_config_reload(old, write_conf(CONF("6380", "200")), "pod",
	    err, sizeof(err), notes, sizeof(notes));
	ck_assert_msg(new != NULL, "%s", err);
	ck_assert_int_eq(new->nodes[0].timeout_ms, 200);
	ck_assert_int_eq(new->redis.port, 6379);
	ck_assert_msg(strstr(notes, "only a restart can change it") != NULL,
	    "%s", notes);
	ck_assert_msg(strstr(notes, "6380") != NULL, "%s", notes);
	config_free(new);
	/* Nothing restart-only changed: no notes. */
	new = proc_config_reload(old, write_conf(CONF("6379", "300")), "pod",
	    err, sizeof(err), notes, sizeof(notes));
	ck_assert_ptr_nonnull(new);
	ck_assert_str_eq(notes, "");
	config_free(new);
	/* A file that does not load: NULL with why, the old one stays. */
	ck_assert_ptr_null(proc_config_reload(old, write_conf("nodes = ;"),
	    "pod", err, sizeof(err), notes, sizeof(notes)));
	ck_assert_str_ne(err, "");
	config_free(old);
	unlink(conf_path);
	conf_path[0] = '\0';
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("proc");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, exit_codes_are_the_documented_ones);
	tcase_add_test(tc, worker_argv_round_trips);
	tcase_add_test(tc, worker_argv_callbacks_topic_and_defaults);
	tcase_add_test(tc, worker_flags_refused_with_a_sentence);
	tcase_add_test(tc, worker_help_and_version_win_over_missing_flags);
	tcase_add_test(tc, ready_pipe_says_ready_then_eof);
	tcase_add_test(tc, parent_pipe_eof_means_the_master_is_gone);
	tcase_add_test(tc, signals_arrive_as_loop_events);
	tcase_add_test(tc, reload_keeps_what_only_a_restart_changes);
	suite_add_tcase(s, tc);
	return check_run(s);
}
