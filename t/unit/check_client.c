/*
 * check_client.c - unit tests of the gRPC client's own logic: backoff, and
 * what it decides without a gRPC server: refused connects, deadlines and
 * cancels while waiting, the queue bound, connect timeouts, bad metadata.
 * The "silent" peer is a plain TCP listener that never speaks HTTP/2 (a
 * fake, on purpose); talking to real servers is t/grpc_client_interop.sh.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "check_run.h"
#include "grpc/client.h"
#include "util.h"

static struct event_base	*base;
static struct grpc_client	*cli;
static int			 ncb, last_status[8];
static char			 last_msg[8][SAGAD_ERRLEN];
static int			 lfd = -1;

static void
on_done(void *arg, const struct grpc_client_result *r)
{
	(void)arg;
	if (ncb < 8) {
		last_status[ncb] = r->status;
		snprintf(last_msg[ncb], sizeof(last_msg[ncb]), "%s",
		    r->message);
	}
	ncb++;
}

/* A loopback port: listening (never accepting) or closed. */
static int
loopback_port(int listening)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (listening) {
		ck_assert_int_eq(listen(fd, 16), 0);
		lfd = fd;
	} else
		close(fd);
	return ntohs(sin.sin_port);
}

static void
run_for(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
setup_with(const struct grpc_client_opts *opts)
{
	char err[SAGAD_ERRLEN];

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	cli = grpc_client_new(base, opts, err, sizeof(err));
	ck_assert_ptr_nonnull(cli);
	ncb = 0;
}

static void
setup(void)
{
	setup_with(NULL);
}

static void
teardown(void)
{
	grpc_client_free(cli);
	event_base_free(base);
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
}

START_TEST(backoff_grows_by_1_6_and_caps)
{
	ck_assert_int_eq(grpc_client_backoff_ms(1, 100, 5000, 0.5), 100);
	ck_assert_int_eq(grpc_client_backoff_ms(2, 100, 5000, 0.5), 160);
	ck_assert_int_eq(grpc_client_backoff_ms(3, 100, 5000, 0.5), 256);
	ck_assert_int_eq(grpc_client_backoff_ms(50, 100, 5000, 0.5), 5000);
}
END_TEST

START_TEST(backoff_jitter_is_20_percent)
{
	ck_assert_int_eq(grpc_client_backoff_ms(50, 100, 5000, 0.0), 4000);
	ck_assert_int_eq(grpc_client_backoff_ms(50, 100, 5000, 1.0), 6000);
	ck_assert_int_ge(grpc_client_backoff_ms(1, 1, 1, 0.0), 1);
}
END_TEST

START_TEST(refused_connect_is_unavailable_with_reason)
{
	struct grpc_channel	*ch;
	int			 port = loopback_port(0);
	char			 want[64];

	ch = grpc_client_channel(cli, "127.0.0.1", port);
	grpc_client_call_start(ch, "/a.B/C", (const uint8_t *)"x", 1, NULL,
	    0, on_done, NULL);
	ck_assert_int_eq(ncb, 0);	/* never from inside start */
	run_for(500);
	ck_assert_int_eq(ncb, 1);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_UNAVAILABLE);
	snprintf(want, sizeof(want), "connect 127.0.0.1:%d: Connection refused",
	    port);
	ck_assert_str_eq(last_msg[0], want);
}
END_TEST

START_TEST(deadline_passes_while_waiting_for_settings)
{
	struct grpc_channel *ch;

	ch = grpc_client_channel(cli, "127.0.0.1", loopback_port(1));
	grpc_client_call_start(ch, "/a.B/C", NULL, 0, NULL, 100, on_done,
	    NULL);
	run_for(400);
	ck_assert_int_eq(ncb, 1);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_DEADLINE_EXCEEDED);
}
END_TEST

START_TEST(cancelled_call_gets_no_callback)
{
	struct grpc_channel	*ch;
	struct grpc_client_call	*call;

	ch = grpc_client_channel(cli, "127.0.0.1", loopback_port(1));
	call = grpc_client_call_start(ch, "/a.B/C", NULL, 0, NULL, 100,
	    on_done, NULL);
	grpc_client_call_start(ch, "/a.B/D", NULL, 0, NULL, 100, on_done,
	    NULL);
	grpc_client_call_cancel(call);
	run_for(400);
	ck_assert_int_eq(ncb, 1);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_DEADLINE_EXCEEDED);
}
END_TEST

START_TEST(queue_beyond_max_queued_is_resource_exhausted)
{
	struct grpc_client_opts	 opts;
	struct grpc_channel	*ch;
	struct grpc_channel_stats st;

	teardown();
	memset(&opts, 0, sizeof(opts));
	opts.max_queued = 2;
	setup_with(&opts);
	ch = grpc_client_channel(cli, "127.0.0.1", loopback_port(1));
	for (int i = 0; i < 3; i++)
		grpc_client_call_start(ch, "/a.B/C", NULL, 0, NULL, 200,
		    on_done, NULL);
	grpc_client_channel_stats(ch, &st);
	ck_assert_uint_eq(st.queued, 2);
	ck_assert_int_eq(ncb, 0);
	run_for(100);
	ck_assert_int_eq(ncb, 1);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_RESOURCE_EXHAUSTED);
	run_for(300);
	ck_assert_int_eq(ncb, 3);
	ck_assert_int_eq(last_status[1], GRPC_STATUS_DEADLINE_EXCEEDED);
	ck_assert_int_eq(last_status[2], GRPC_STATUS_DEADLINE_EXCEEDED);
}
END_TEST

START_TEST(connect_timeout_is_unavailable)
{
	struct grpc_client_opts	 opts;
	struct grpc_channel	*ch;

	teardown();
	memset(&opts, 0, sizeof(opts));
	opts.connect_timeout_ms = 100;
	setup_with(&opts);
	ch = grpc_client_channel(cli, "127.0.0.1", loopback_port(1));
	grpc_client_call_start(ch, "/a.B/C", NULL, 0, NULL, 0, on_done, NULL);
	run_for(400);
	ck_assert_int_eq(ncb, 1);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_UNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(last_msg[0], "timed out after 100 ms"));
}
END_TEST

START_TEST(reserved_or_bad_metadata_fails_the_call)
{
	struct grpc_channel	*ch;
	struct grpc_metadata	 md;
	struct grpc_channel_stats st;

	memset(&md, 0, sizeof(md));
	grpc_md_add(&md, "content-type", "text/plain", 10);
	ch = grpc_client_channel(cli, "127.0.0.1", loopback_port(0));
	grpc_client_call_start(ch, "/a.B/C", NULL, 0, &md, 0, on_done, NULL);
	grpc_md_clear(&md);
	grpc_md_add(&md, "x-text", "a\nb", 3);
	grpc_client_call_start(ch, "/a.B/C", NULL, 0, &md, 0, on_done, NULL);
	grpc_md_clear(&md);
	run_for(100);
	ck_assert_int_eq(ncb, 2);
	ck_assert_int_eq(last_status[0], GRPC_STATUS_INTERNAL);
	ck_assert_int_eq(last_status[1], GRPC_STATUS_INTERNAL);
	grpc_client_channel_stats(ch, &st);
	ck_assert_uint_eq(st.connects, 0);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("client");
	TCase	*tc = tcase_create("client");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, backoff_grows_by_1_6_and_caps);
	tcase_add_test(tc, backoff_jitter_is_20_percent);
	tcase_add_test(tc, refused_connect_is_unavailable_with_reason);
	tcase_add_test(tc, deadline_passes_while_waiting_for_settings);
	tcase_add_test(tc, cancelled_call_gets_no_callback);
	tcase_add_test(tc, queue_beyond_max_queued_is_resource_exhausted);
	tcase_add_test(tc, connect_timeout_is_unavailable);
	tcase_add_test(tc, reserved_or_bad_metadata_fails_the_call);
	suite_add_tcase(s, tc);
	return check_run(s);
}
