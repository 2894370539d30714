/*
 * check_options.c - sagad's command line (options_parse): every flag in
 * short and long form, its default, repeats of -v, missing arguments,
 * unknown flags, and -P against POD_ID. Each test parses a fresh argv.
 */
#include "autoconf.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "options.h"
#include "util.h"

#define MAXARGS	16

static struct options	 opts;
static char		 err[SAGAD_ERRLEN];
static char		*args[MAXARGS + 1];
static int		 nargs;

static void
free_args(void)
{
	int i;

	for (i = 0; i < nargs; i++)
		free(args[i]);
	nargs = 0;
}

/* Parses "sagad" followed by the NULL-terminated arguments. */
static enum options_result
parse_env(const char *pod_env, ...)
{
	va_list		 ap;
	const char	*a;

	free_args();
	args[nargs++] = util_xstrdup("sagad");
	va_start(ap, pod_env);
	while ((a = va_arg(ap, const char *)) != NULL && nargs < MAXARGS)
		args[nargs++] = util_xstrdup(a);
	va_end(ap);
	args[nargs] = NULL;
	return options_parse(&opts, nargs, args, pod_env, err, sizeof(err));
}

#define parse(...)	parse_env(NULL, __VA_ARGS__)

static void
teardown(void)
{
	free_args();
}

START_TEST(defaults_when_no_flags)
{
	ck_assert_int_eq(parse(NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.config_path, SAGAD_SYSCONFDIR "/sagad/sagad.conf");
	ck_assert_str_eq(opts.pidfile, SAGAD_RUNSTATEDIR "/sagad.pid");
	ck_assert_ptr_null(opts.pod_id);
	ck_assert_int_eq(opts.foreground, 0);
	ck_assert_int_eq(opts.test, 0);
	ck_assert_int_eq(opts.verbose, 0);
	ck_assert_int_eq(opts.version, 0);
	ck_assert_int_eq(opts.help, 0);
}
END_TEST

START_TEST(config_short_and_long)
{
	ck_assert_int_eq(parse("-c", "/a.conf", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.config_path, "/a.conf");
	ck_assert_int_eq(parse("-c/b.conf", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.config_path, "/b.conf");
	ck_assert_int_eq(parse("--config", "/c.conf", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.config_path, "/c.conf");
	ck_assert_int_eq(parse("--config=/d.conf", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.config_path, "/d.conf");
}
END_TEST

START_TEST(foreground_short_and_long)
{
	ck_assert_int_eq(parse("-d", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.foreground, 1);
	ck_assert_int_eq(parse("--foreground", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.foreground, 1);
}
END_TEST

START_TEST(test_short_and_long)
{
	ck_assert_int_eq(parse("-t", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.test, 1);
	ck_assert_int_eq(parse("--test", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.test, 1);
}
END_TEST

START_TEST(pidfile_short_and_long)
{
	ck_assert_int_eq(parse("-p", "/run/x.pid", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pidfile, "/run/x.pid");
	ck_assert_int_eq(parse("--pidfile", "/run/y.pid", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pidfile, "/run/y.pid");
	ck_assert_int_eq(parse("--pidfile=/run/z.pid", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pidfile, "/run/z.pid");
}
END_TEST

START_TEST(pod_id_short_and_long)
{
	ck_assert_int_eq(parse("-P", "pod-b", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pod_id, "pod-b");
	ck_assert_int_eq(parse("--pod-id", "pod-c", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pod_id, "pod-c");
}
END_TEST

START_TEST(pod_id_flag_wins_over_env)
{
	ck_assert_int_eq(parse_env("from-env", "-P", "from-flag", NULL),
	    OPTIONS_OK);
	ck_assert_str_eq(opts.pod_id, "from-flag");
}
END_TEST

START_TEST(pod_id_from_env_without_flag)
{
	ck_assert_int_eq(parse_env("from-env", NULL), OPTIONS_OK);
	ck_assert_str_eq(opts.pod_id, "from-env");
}
END_TEST

START_TEST(pod_id_empty_env_is_unset)
{
	ck_assert_int_eq(parse_env("", NULL), OPTIONS_OK);
	ck_assert_ptr_null(opts.pod_id);
}
END_TEST

START_TEST(verbose_counts_repeats)
{
	ck_assert_int_eq(parse("-v", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.verbose, 1);
	ck_assert_int_eq(parse("-vvv", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.verbose, 3);
	ck_assert_int_eq(parse("-v", "--verbose", "-v", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.verbose, 3);
}
END_TEST

START_TEST(version_short_and_long)
{
	ck_assert_int_eq(parse("-V", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.version, 1);
	ck_assert_int_eq(parse("--version", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.version, 1);
	ck_assert_int_eq(opts.verbose, 0);
}
END_TEST

START_TEST(help_short_and_long)
{
	ck_assert_int_eq(parse("-h", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.help, 1);
	ck_assert_int_eq(parse("--help", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.help, 1);
}
END_TEST

START_TEST(flags_combine)
{
	ck_assert_int_eq(parse("-dtvc", "/e.conf", "-p", "/p", NULL),
	    OPTIONS_OK);
	ck_assert_int_eq(opts.foreground, 1);
	ck_assert_int_eq(opts.test, 1);
	ck_assert_int_eq(opts.verbose, 1);
	ck_assert_str_eq(opts.config_path, "/e.conf");
	ck_assert_str_eq(opts.pidfile, "/p");
}
END_TEST

START_TEST(missing_argument_is_usage_error)
{
	static const char *const flags[] = { "-c", "--config", "-p",
	    "--pidfile", "-P", "--pod-id" };
	size_t i;

	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		ck_assert_int_eq(parse(flags[i], NULL), OPTIONS_USAGE);
		ck_assert_msg(strstr(err, "needs") != NULL,
		    "%s: err \"%s\"", flags[i], err);
		/* The message names the flag in both forms. */
		ck_assert_msg(strstr(err, flags[i]) != NULL,
		    "%s: err \"%s\"", flags[i], err);
	}
}
END_TEST

START_TEST(empty_argument_is_usage_error)
{
	ck_assert_int_eq(parse("-c", "", NULL), OPTIONS_USAGE);
	ck_assert_ptr_nonnull(strstr(err, "-c"));
	ck_assert_int_eq(parse("--pod-id=", NULL), OPTIONS_USAGE);
	ck_assert_ptr_nonnull(strstr(err, "--pod-id"));
}
END_TEST

START_TEST(unknown_short_flag_is_usage_error)
{
	ck_assert_int_eq(parse("-x", NULL), OPTIONS_USAGE);
	ck_assert_str_eq(err, "unknown option -x");
	ck_assert_int_eq(parse("-dq", NULL), OPTIONS_USAGE);
	ck_assert_str_eq(err, "unknown option -q");
}
END_TEST

START_TEST(unknown_long_flag_is_usage_error)
{
	ck_assert_int_eq(parse("--bogus", NULL), OPTIONS_USAGE);
	ck_assert_str_eq(err, "unknown option --bogus");
	ck_assert_int_eq(parse("--foreground=yes", NULL), OPTIONS_USAGE);
}
END_TEST

START_TEST(stray_argument_is_usage_error)
{
	ck_assert_int_eq(parse("-d", "extra", NULL), OPTIONS_USAGE);
	ck_assert_ptr_nonnull(strstr(err, "extra"));
}
END_TEST

START_TEST(parser_starts_over_on_each_call)
{
	ck_assert_int_eq(parse("-x", NULL), OPTIONS_USAGE);
	ck_assert_int_eq(parse("-d", "-c", "/f.conf", NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.foreground, 1);
	ck_assert_str_eq(opts.config_path, "/f.conf");
	ck_assert_int_eq(parse(NULL), OPTIONS_OK);
	ck_assert_int_eq(opts.foreground, 0);
	ck_assert_str_eq(opts.config_path, OPTIONS_DEFAULT_CONFIG);
}
END_TEST

START_TEST(usage_lists_every_flag_and_default)
{
	static const char *const want[] = { "-c, --config", "-d, --foreground",
	    "-t, --test", "-p, --pidfile", "-P, --pod-id", "-v, --verbose",
	    "-V, --version", "-h, --help", OPTIONS_DEFAULT_CONFIG,
	    OPTIONS_DEFAULT_PIDFILE };
	char	*buf = NULL;
	size_t	 len = 0, i;
	FILE	*fp;

	fp = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(fp);
	options_usage(fp, "sagad");
	fclose(fp);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(buf, want[i]) != NULL, "usage lacks %s",
		    want[i]);
	free(buf);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("options");
	TCase	*tc = tcase_create("parse");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, defaults_when_no_flags);
	tcase_add_test(tc, config_short_and_long);
	tcase_add_test(tc, foreground_short_and_long);
	tcase_add_test(tc, test_short_and_long);
	tcase_add_test(tc, pidfile_short_and_long);
	tcase_add_test(tc, pod_id_short_and_long);
	tcase_add_test(tc, pod_id_flag_wins_over_env);
	tcase_add_test(tc, pod_id_from_env_without_flag);
	tcase_add_test(tc, pod_id_empty_env_is_unset);
	tcase_add_test(tc, verbose_counts_repeats);
	tcase_add_test(tc, version_short_and_long);
	tcase_add_test(tc, help_short_and_long);
	tcase_add_test(tc, flags_combine);
	tcase_add_test(tc, missing_argument_is_usage_error);
	tcase_add_test(tc, empty_argument_is_usage_error);
	tcase_add_test(tc, unknown_short_flag_is_usage_error);
	tcase_add_test(tc, unknown_long_flag_is_usage_error);
	tcase_add_test(tc, stray_argument_is_usage_error);
	tcase_add_test(tc, parser_starts_over_on_each_call);
	tcase_add_test(tc, usage_lists_every_flag_and_default);
	suite_add_tcase(s, tc);
	return check_run(s);
}
