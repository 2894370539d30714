/*
 * check_auth.c - the tokens file and the check (auth.c): lines read with
 * comments, blank lines and optional names; each kind of bad line refused
 * with FILE:LINE and without the token; files others may read refused; the
 * roles' order; Bearer parsing; a token's prefix, extension or neighbour
 * never matching; the role of every gRPC method and HTTP endpoint; the
 * password files.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "check_run.h"
#include "util.h"

static char	path[4096];
static char	err[SAGAD_ERRLEN], warn[SAGAD_ERRLEN];

static const char *
write_file(const char *text, mode_t mode)
{
	const char	*dir = getenv("TMPDIR");
	int		 fd;

	snprintf(path, sizeof(path), "%s/check_auth.XXXXXX",
	    dir != NULL ? dir : "/tmp");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	ck_assert_int_eq(chmod(path, mode), 0);
	return path;
}

static void
teardown(void)
{
	if (path[0] != '\0')
		unlink(path);
	path[0] = '\0';
}

#define T1	"alpha-0123456789abcdef"
#define T2	"bravo-0123456789abcdef"
#define T3	"charlie-0123456789abcdef"

static struct auth *
load_three(void)
{
	struct auth *a = auth_load(write_file(
	    "# tokens\n\n" T1 " read\n" T2 "\trun\tshop\n"
	    "   " T3 "  operate  alice   # on call\n", 0600), warn,
	    sizeof(warn), err, sizeof(err));

	ck_assert_msg(a != NULL, "%s", err);
	return a;
}

static enum auth_result
check_hdr(const struct auth *a, const char *hdr, enum auth_role need,
    const char **name)
{
	return auth_check(a, hdr, hdr != NULL ? strlen(hdr) : 0, need, name);
}

START_TEST(file_with_comments_names_and_blanks_loads)
{
	struct auth	*a = load_three();
	const char	*name;

	ck_assert_uint_eq(auth_count(a), 3);
	ck_assert_str_eq(warn, "");
	ck_assert_int_eq(check_hdr(a, "Bearer " T1, AUTH_ROLE_READ, &name),
	    AUTH_OK);
	ck_assert_str_eq(name, "token-line-3");
	ck_assert_int_eq(check_hdr(a, "Bearer " T2, AUTH_ROLE_RUN, &name),
	    AUTH_OK);
	ck_assert_str_eq(name, "shop");
	ck_assert_int_eq(check_hdr(a, "bearer " T3, AUTH_ROLE_OPERATE,
	    &name), AUTH_OK);
	ck_assert_str_eq(name, "alice");
	auth_free(a);
}
END_TEST

START_TEST(roles_are_ordered)
{
	struct auth	*a = load_three();
	const char	*name;

	ck_assert_int_eq(check_hdr(a, "Bearer " T1, AUTH_ROLE_RUN, &name),
	    AUTH_FORBIDDEN);
	ck_assert_str_eq(name, "token-line-3");
	ck_assert_int_eq(check_hdr(a, "Bearer " T1, AUTH_ROLE_OPERATE, &name),
	    AUTH_FORBIDDEN);
	ck_assert_int_eq(check_hdr(a, "Bearer " T2, AUTH_ROLE_READ, &name),
	    AUTH_OK);
	ck_assert_int_eq(check_hdr(a, "Bearer " T2, AUTH_ROLE_OPERATE, &name),
	    AUTH_FORBIDDEN);
	ck_assert_int_eq(check_hdr(a, "Bearer " T3, AUTH_ROLE_READ, &name),
	    AUTH_OK);
	ck_assert_int_eq(check_hdr(a, NULL, AUTH_ROLE_NONE, &name), AUTH_OK);
	auth_free(a);
}
END_TEST

START_TEST(missing_malformed_and_near_tokens_refused)
{
	struct auth	*a = load_three();
	const char	*name;
	static const char *unknown[] = {
		"Bearer alpha-0123456789abcde",		/* a prefix */
		"Bearer alpha-0123456789abcdef0",	/* longer */
		"Bearer alpha-0123456789abcdeF",	/* a case */
		"Bearer " T1 T2,
		"Bearer x",
	};
	static const char *missing[] = {
		"", "Bearer", "Bearer ", "Basic " T1, T1, "Bearer   ",
	};

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		ck_assert_int_eq(check_hdr(a, unknown[i], AUTH_ROLE_READ,
		    &name), AUTH_UNKNOWN);
		ck_assert_ptr_null(name);
	}
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
		ck_assert_int_eq(check_hdr(a, missing[i], AUTH_ROLE_READ,
		    &name), AUTH_MISSING);
	ck_assert_int_eq(check_hdr(a, NULL, AUTH_ROLE_READ, &name),
	    AUTH_MISSING);
	{
		char long_hdr[AUTH_TOKEN_MAX + 20];

		memset(long_hdr, 'a', sizeof(long_hdr) - 1);
		long_hdr[sizeof(long_hdr) - 1] = '\0';
		memcpy(long_hdr, "Bearer ", 7);
		ck_assert_int_eq(check_hdr(a, long_hdr, AUTH_ROLE_READ,
		    &name), AUTH_UNKNOWN);
	}
	/* No tokens_file: every call is let through. */
	ck_assert_int_eq(check_hdr(NULL, NULL, AUTH_ROLE_OPERATE, &name),
	    AUTH_OK);
	auth_free(a);
}
END_TEST

static void
bad_file(const char *text, mode_t mode, const char *want)
{
	struct auth *a = auth_load(write_file(text, mode), warn,
	    sizeof(warn), err, sizeof(err));
	char full[8192];

	ck_assert_ptr_null(a);
	snprintf(full, sizeof(full), "%s%s", path, want);
	ck_assert_msg(strstr(err, full) != NULL, "want \"%s\" in \"%s\"",
	    full, err);
	ck_assert_msg(strstr(err, "secret-token") == NULL,
	    "the token is in the error: %s", err);
	teardown();
}

START_TEST(bad_lines_named_by_line_without_the_token)
{
	bad_file("secret-token-1234567890\n", 0600,
	    ":1: expected \"TOKEN ROLE [NAME]\", got a token without a role");
	bad_file("# x\nsecret-token-1234567890 admin\n", 0600,
	    ":2: role: expected read, run or operate, got \"admin\"");
	bad_file("secret-token-1234567890 read a b\n", 0600,
	    ":1: expected \"TOKEN ROLE [NAME]\", got more fields");
	bad_file("secret-token-1234567890 read bad/name\n", 0600,
	    ":1: name: expected 1 to 64 letters");
	bad_file("secret-token-1234567890 read\nsecret-token-1234567890 run\n",
	    0600, ":2: this token is already on an earlier line");
	bad_file("secret-token-\x01x read\n", 0600,
	    ":1: token: expected 1 to 256 printable bytes");
	bad_file("# nothing\n\n", 0600, ": no tokens");
	bad_file("secret-token-1234567890 read\n", 0644,
	    ": others may read it (mode 0644)");
	bad_file("secret-token-1234567890 read\n", 0602,
	    ": others may write it (mode 0602)");
}
END_TEST

START_TEST(unwise_files_load_with_a_warning)
{
	struct auth *a = auth_load(write_file("short run\n", 0640), warn,
	    sizeof(warn), err, sizeof(err));

	ck_assert_ptr_nonnull(a);
	ck_assert_msg(strstr(warn, "1 tokens shorter than 16 bytes") != NULL,
	    "%s", warn);
	auth_free(a);
	teardown();
	a = auth_load(write_file(T1 " run\n", 0660), warn, sizeof(warn), err,
	    sizeof(err));
	ck_assert_ptr_nonnull(a);
	ck_assert_msg(strstr(warn, "its group may write it") != NULL, "%s",
	    warn);
	auth_free(a);
}
END_TEST

START_TEST(every_method_and_endpoint_has_its_role)
{
	ck_assert_int_eq(auth_role_for_grpc("/grpc.health.v1.Health/Check"),
	    AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_grpc("/grpc.health.v1.Health/Watch"),
	    AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Get"),
	    AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Watch"),
	    AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/List"),
	    AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/ListFlows"),
	    AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Run"),
	    AUTH_ROLE_RUN);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Cancel"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Retry"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Resolve"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_role_for_grpc("/saga.v1.Orchestrator/Future"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_role_for_http("GET", "/livez"), AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_http("GET", "/readyz"), AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_http("GET", "/"), AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_http("GET", "/metrics"),
	    AUTH_ROLE_NONE);
	ck_assert_int_eq(auth_role_for_http("GET",
	    "/api/v1/sagas?state=FAILED"), AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_http("GET", "/api/v1/sagas/x/events"),
	    AUTH_ROLE_READ);
	ck_assert_int_eq(auth_role_for_http("POST", "/api/v1/sagas"),
	    AUTH_ROLE_RUN);
	ck_assert_int_eq(auth_role_for_http("POST", "/api/v1/sagas/x:cancel"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_role_for_http("POST", "/api/v1/sagas/x:resolve"),
	    AUTH_ROLE_OPERATE);
	ck_assert_int_eq(auth_http_status(AUTH_OK), 200);
	ck_assert_int_eq(auth_http_status(AUTH_MISSING), 401);
	ck_assert_int_eq(auth_http_status(AUTH_UNKNOWN), 401);
	ck_assert_int_eq(auth_http_status(AUTH_FORBIDDEN), 403);
	ck_assert_int_eq(auth_grpc_status(AUTH_UNKNOWN), 16);
	ck_assert_int_eq(auth_grpc_status(AUTH_FORBIDDEN), 7);
}
END_TEST

START_TEST(password_files_read_and_checked)
{
	char	buf[64];

	ck_assert_int_eq(auth_read_secret(write_file("pa ss\nrest\n", 0640),
	    buf, sizeof(buf), err, sizeof(err)), 0);
	ck_assert_str_eq(buf, "pa ss");
	teardown();
	ck_assert_int_eq(auth_read_secret(write_file("secret-token\n", 0644),
	    buf, sizeof(buf), err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "others may read it") != NULL, "%s", err);
	teardown();
	ck_assert_int_eq(auth_read_secret(write_file("\nsecret-token\n",
	    0600), buf, sizeof(buf), err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "empty first line") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "secret-token") == NULL, "%s", err);
	teardown();
	ck_assert_int_eq(auth_read_secret("/nonexistent/pw", buf, sizeof(buf),
	    err, sizeof(err)), -1);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("auth");
	TCase	*tc = tcase_create("tokens");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, file_with_comments_names_and_blanks_loads);
	tcase_add_test(tc, roles_are_ordered);
	tcase_add_test(tc, missing_malformed_and_near_tokens_refused);
	tcase_add_test(tc, bad_lines_named_by_line_without_the_token);
	tcase_add_test(tc, unwise_files_load_with_a_warning);
	tcase_add_test(tc, every_method_and_endpoint_has_its_role);
	tcase_add_test(tc, password_files_read_and_checked);
	suite_add_tcase(s, tc);
	return check_run(s);
}
