/*
 * check_metrics.c - the pod's metrics segment (src/metrics.c): what each
 * counting point adds and how it renders in Prometheus' text format, the
 * histograms' buckets at their bounds, two processes naming and counting
 * the same series in one segment (a fork stands for the exec'd worker: the
 * mapping is the same MAP_SHARED memfd), full tables and long names
 * dropped and counted, label values escaped. Also the cost of one saga's
 * counting points, printed for bench/RESULTS.md and not asserted.
 */
#include "autoconf.h"

#include <sys/wait.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_run.h"
#include "grpc/grpc.h"
#include "metrics.h"
#include "saga_mode.h"

static char	*text;

static void
setup(void)
{
	char err[256];

	ck_assert_msg(metrics_create(err, sizeof(err)) == 0, "%s", err);
	text = NULL;
}

static void
teardown(void)
{
	metrics_close();
	free(text);
}

static const char *
render(void)
{
	size_t	 len;
	FILE	*fp;

	free(text);
	text = NULL;
	fp = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(fp);
	metrics_render(fp);
	fclose(fp);
	return text;
}

#define HAS(line)	ck_assert_msg(strstr(render(), line "\n") != NULL, \
			    "missing: %s\n%s", line, text)

START_TEST(counting_points_render_exactly)
{
	metrics_saga_started("Booking", SAGA_MODE_SYNC);
	metrics_saga_started("Booking", SAGA_MODE_SYNC);
	metrics_saga_started("Booking", SAGA_MODE_ASYNC);
	metrics_saga_ended("Booking", SAGA_MODE_SYNC, 4, 12);	/* COMPLETED */
	metrics_saga_ended("Booking", SAGA_MODE_SYNC, 6, 30);	/* FAILED */
	metrics_saga_ended("Booking", SAGA_MODE_SYNC, 7, 99);	/* RESOLVED */
	metrics_step_call("CreateOrder", 0, GRPC_STATUS_OK, 700);
	metrics_step_call("CreateOrder", 1, GRPC_STATUS_UNAVAILABLE, 2000);
	metrics_worker_restart("AsyncBooking/CreateOrder");
	metrics_grpc_request("/saga.v1.Orchestrator/Run", GRPC_STATUS_OK);

	HAS("# TYPE sagad_sagas_started_total counter");
	HAS("sagad_sagas_started_total{flow=\"Booking\",mode=\"sync\"} 2");
	HAS("sagad_sagas_started_total{flow=\"Booking\",mode=\"async\"} 1");
	HAS("sagad_sagas_started_total{flow=\"Booking\",mode=\"throttling\"} 0");
	HAS("sagad_sagas_ended_total{flow=\"Booking\",mode=\"sync\","
	    "state=\"completed\"} 1");
	HAS("sagad_sagas_ended_total{flow=\"Booking\",mode=\"sync\","
	    "state=\"failed\"} 1");
	HAS("sagad_sagas_ended_total{flow=\"Booking\",mode=\"sync\","
	    "state=\"resolved\"} 1");
	/* 3 started, 2 ended (a resolve ended nothing new). */
	HAS("sagad_sagas_in_flight{flow=\"Booking\"} 1");
	/* 12 ms and 30 ms: a resolve is not a duration. */
	HAS("sagad_saga_duration_seconds_count{flow=\"Booking\",mode=\"sync\"} 2");
	HAS("sagad_saga_duration_seconds_sum{flow=\"Booking\",mode=\"sync\"} "
	    "0.042000");
	HAS("sagad_step_calls_total{node=\"CreateOrder\",kind=\"action\","
	    "code=\"OK\"} 1");
	HAS("sagad_step_calls_total{node=\"CreateOrder\",kind=\"compensate\","
	    "code=\"UNAVAILABLE\"} 1");
	HAS("sagad_step_calls_total{node=\"CreateOrder\",kind=\"compensate\","
	    "code=\"OK\"} 0");
	HAS("sagad_step_duration_seconds_sum{node=\"CreateOrder\","
	    "kind=\"action\"} 0.000700");
	HAS("sagad_worker_restarts_total{topic=\"AsyncBooking/CreateOrder\"} 1");
	HAS("sagad_grpc_requests_total{method=\"/saga.v1.Orchestrator/Run\","
	    "code=\"OK\"} 1");
	HAS("sagad_metrics_dropped_total 0");
}
END_TEST

START_TEST(histogram_buckets_hold_their_bound)
{
	/* 1 ms is in le="0.001"; 1.001 ms is not; 61 s only in +Inf. */
	metrics_saga_ended("F", SAGA_MODE_SYNC, 4, 1);
	metrics_saga_ended("F", SAGA_MODE_SYNC, 4, 2);
	metrics_saga_ended("F", SAGA_MODE_SYNC, 4, 61000);
	HAS("sagad_saga_duration_seconds_bucket{flow=\"F\",mode=\"sync\","
	    "le=\"0.001\"} 1");
	HAS("sagad_saga_duration_seconds_bucket{flow=\"F\",mode=\"sync\","
	    "le=\"0.0025\"} 2");
	HAS("sagad_saga_duration_seconds_bucket{flow=\"F\",mode=\"sync\","
	    "le=\"60\"} 2");
	HAS("sagad_saga_duration_seconds_bucket{flow=\"F\",mode=\"sync\","
	    "le=\"+Inf\"} 3");
	metrics_step_call("N", 0, GRPC_STATUS_OK, 250);
	metrics_step_call("N", 0, GRPC_STATUS_OK, 251);
	HAS("sagad_step_duration_seconds_bucket{node=\"N\",kind=\"action\","
	    "le=\"0.00025\"} 1");
	HAS("sagad_step_duration_seconds_bucket{node=\"N\",kind=\"action\","
	    "le=\"0.0005\"} 2");
}
END_TEST

START_TEST(two_processes_share_one_series)
{
	pid_t	pid;
	int	st;

	/* Both name "Shared" at once: one entry, every call counted. */
	if ((pid = fork()) == 0) {
		for (int i = 0; i < 20000; i++)
			metrics_step_call("Shared", 0, GRPC_STATUS_OK, 10);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	for (int i = 0; i < 20000; i++)
		metrics_step_call("Shared", 0, GRPC_STATUS_OK, 10);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	HAS("sagad_step_calls_total{node=\"Shared\",kind=\"action\","
	    "code=\"OK\"} 40000");
	HAS("sagad_step_duration_seconds_count{node=\"Shared\","
	    "kind=\"action\"} 40000");
	ck_assert_ptr_null(strstr(strstr(text, "node=\"Shared\"") + 1,
	    "sagad_step_calls_total{node=\"Shared\",kind=\"action\","
	    "code=\"OK\"}"));
}
END_TEST

START_TEST(full_tables_and_long_names_are_dropped_and_counted)
{
	char name[300];

	for (int i = 0; i < METRICS_FLOWS + 10; i++) {
		snprintf(name, sizeof(name), "flow%d", i);
		metrics_saga_started(name, SAGA_MODE_SYNC);
	}
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	metrics_step_call(name, 0, GRPC_STATUS_OK, 1);
	HAS("sagad_metrics_dropped_total 11");
	HAS("sagad_sagas_started_total{flow=\"flow0\",mode=\"sync\"} 1");
}
END_TEST

START_TEST(label_values_are_escaped)
{
	metrics_grpc_request("/a\"b\\c\nd", GRPC_STATUS_NOT_FOUND);
	HAS("sagad_grpc_requests_total{method=\"/a\\\"b\\\\c\\nd\","
	    "code=\"NOT_FOUND\"} 1");
}
END_TEST

START_TEST(off_without_a_segment)
{
	metrics_close();
	ck_assert_int_eq(metrics_on(), 0);
	ck_assert_int_eq(metrics_fd(), -1);
	metrics_saga_started("Booking", SAGA_MODE_SYNC);	/* no effect */
	ck_assert_str_eq(render(), "");
}
END_TEST

static double
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* What a 2-step sync saga's counting points cost: printed, not asserted. */
START_TEST(cost_of_one_sagas_counting_points)
{
	const int	n = 200000;
	double		t0, t1;

	t0 = cpu_ns();
	for (int i = 0; i < n; i++) {
		int64_t us = metrics_now_us();

		metrics_grpc_request("/saga.v1.Orchestrator/Run", 0);
		metrics_saga_started("Booking", SAGA_MODE_SYNC);
		metrics_step_call("CreateOrder", 0, 0, metrics_now_us() - us);
		us = metrics_now_us();
		metrics_step_call("CreatePayment", 0, 0,
		    metrics_now_us() - us);
		metrics_saga_ended("Booking", SAGA_MODE_SYNC, 4, 3);
	}
	t1 = cpu_ns();
	printf("metrics: one sync saga's counting points cost %.0f ns of "
	    "CPU\n", (t1 - t0) / n);
	HAS("sagad_sagas_started_total{flow=\"Booking\",mode=\"sync\"} 200000");
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite	*s = suite_create("metrics");
	TCase	*tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, counting_points_render_exactly);
	tcase_add_test(tc, histogram_buckets_hold_their_bound);
	tcase_add_test(tc, two_processes_share_one_series);
	tcase_add_test(tc, full_tables_and_long_names_are_dropped_and_counted);
	tcase_add_test(tc, label_values_are_escaped);
	tcase_add_test(tc, off_without_a_segment);
	tcase_add_test(tc, cost_of_one_sagas_counting_points);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(metrics_suite());
}
