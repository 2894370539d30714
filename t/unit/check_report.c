/*
 * check_report.c - the bench report (src/report.c): nearest-rank
 * percentiles, rate and throughput, success as the ratio of COMPLETED sagas,
 * the vegeta-shaped text, the JSON and the SVG plot.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "grpc/grpc.h"
#include "report.h"
#include "saga.h"

static char *
capture(const struct report *r, void (*fn)(const struct report *, FILE *))
{
	/* Static: GCC takes a local handed to open_memstream for dangling. */
	static char	*buf;
	static size_t	 len;
	FILE		*fp;

	buf = NULL;
	fp = open_memstream(&buf, &len);
	fn(r, fp);
	fclose(fp);
	return buf;
}

START_TEST(percentiles_are_nearest_rank)
{
	struct report		r;
	struct report_summary	m;

	report_init(&r, "t");
	/* Latencies 1..100 ms, shuffled order. */
	for (int i = 0; i < 100; i++)
		report_add(&r, i * 1000, ((i * 37) % 100 + 1) * 1000,
		    GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	r.attack_us = 99000;
	r.total_us = 200000;
	report_summarize(&r, &m);
	ck_assert_int_eq(m.min_us, 1000);
	ck_assert_int_eq(m.max_us, 100000);
	ck_assert_int_eq(m.p50_us, 50000);
	ck_assert_int_eq(m.p90_us, 90000);
	ck_assert_int_eq(m.p99_us, 99000);
	ck_assert_int_eq(m.mean_us, 50500);
	ck_assert_double_eq_tol(m.rate, 100 * 1e6 / 99000, 1e-6);
	ck_assert_double_eq_tol(m.throughput, 500.0, 1e-6);
	ck_assert_double_eq_tol(m.success, 1.0, 1e-9);
	report_free(&r);
}
END_TEST

START_TEST(success_counts_completed_and_accepted_sagas)
{
	struct report		r;
	struct report_summary	m;

	report_init(&r, "t");
	report_add(&r, 0, 10, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	report_add(&r, 1, 10, GRPC_STATUS_OK, SAGA_STATE_COMPENSATED);
	report_add(&r, 2, 10, GRPC_STATUS_UNAVAILABLE, 0);
	report_add(&r, 3, 10, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	report_summarize(&r, &m);
	ck_assert_double_eq_tol(m.success, 0.5, 1e-9);
	/* Async Runs answer PENDING: accepted is their success. */
	report_add(&r, 4, 10, GRPC_STATUS_OK, SAGA_STATE_PENDING);
	report_add(&r, 5, 10, GRPC_STATUS_OK, SAGA_STATE_FAILED);
	report_summarize(&r, &m);
	ck_assert_double_eq_tol(m.success, 0.5, 1e-9);
	ck_assert_uint_eq(m.status_counts[GRPC_STATUS_OK], 5);
	ck_assert_uint_eq(m.status_counts[GRPC_STATUS_UNAVAILABLE], 1);
	ck_assert_uint_eq(m.state_counts[SAGA_STATE_COMPLETED], 2);
	ck_assert_uint_eq(m.state_counts[SAGA_STATE_COMPENSATED], 1);
	ck_assert_uint_eq(m.state_counts[SAGA_STATE_PENDING], 1);
	ck_assert_uint_eq(m.state_counts[SAGA_STATE_FAILED], 1);
	report_free(&r);
}
END_TEST

START_TEST(text_report_has_the_vegeta_shape)
{
	struct report	 r;
	char		*out;

	report_init(&r, "t");
	report_add(&r, 0, 1500, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	report_add(&r, 1000, 2500000, GRPC_STATUS_RESOURCE_EXHAUSTED, 0);
	report_error(&r, "queue full");
	report_error(&r, "queue full");
	r.attack_us = 1000;
	r.total_us = 2501000;
	out = capture(&r, report_print);
	ck_assert_ptr_nonnull(strstr(out, "Requests      [total, rate, "
	    "throughput]         2, 2000.00, 0.40\n"));
	ck_assert_ptr_nonnull(strstr(out, "Latencies     [min, mean, 50, 90, "
	    "95, 99, max]  1.500ms, 1.251s, 1.500ms, 2.500s, 2.500s, 2.500s, "
	    "2.500s\n"));
	ck_assert_ptr_nonnull(strstr(out, "Success       [ratio]        "
	    "                   50.00%\n"));
	ck_assert_ptr_nonnull(strstr(out, "COMPLETED:1"));
	ck_assert_ptr_nonnull(strstr(out, "OK:1  RESOURCE_EXHAUSTED:1"));
	ck_assert_ptr_nonnull(strstr(out, "Error Set:\nqueue full\n"));
	ck_assert_ptr_null(strstr(strstr(out, "queue full") + 1,
	    "queue full"));
	free(out);
	report_free(&r);
}
END_TEST

START_TEST(json_report_is_complete)
{
	struct report	 r;
	char		*out;

	report_init(&r, "t");
	report_add(&r, 0, 2000, GRPC_STATUS_OK, SAGA_STATE_COMPENSATED);
	report_error(&r, "a \"quoted\"\n");
	r.attack_us = 1;
	r.total_us = 2001;
	out = capture(&r, report_print_json);
	ck_assert_ptr_nonnull(strstr(out, "\"requests\":1,"));
	ck_assert_ptr_nonnull(strstr(out, "\"99th\":2000"));
	ck_assert_ptr_nonnull(strstr(out, "\"success\":0.000000"));
	ck_assert_ptr_nonnull(strstr(out, "\"states\":{\"COMPENSATED\":1}"));
	ck_assert_ptr_nonnull(strstr(out, "\"status_codes\":{\"OK\":1}"));
	/* The one writer (src/json.c) spells a newline \n, as saga JSON does. */
	ck_assert_ptr_nonnull(strstr(out,
	    "\"errors\":[\"a \\\"quoted\\\"\\n\"]"));
	free(out);
	report_free(&r);
}
END_TEST

START_TEST(plot_draws_every_request_coloured_by_outcome)
{
	struct report	 r;
	char		*out, *p;
	int		 n = 0;

	report_init(&r, "sync <mode> & co");
	report_add(&r, 0, 1000, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	report_add(&r, 500000, 20000, GRPC_STATUS_OK, SAGA_STATE_COMPENSATED);
	report_add(&r, 1000000, 3000000, GRPC_STATUS_UNAVAILABLE, 0);
	out = capture(&r, report_plot_svg);
	ck_assert_ptr_nonnull(strstr(out, "<svg "));
	ck_assert_ptr_nonnull(strstr(out, "sync &lt;mode> &amp; co"));
	for (p = out; (p = strstr(p, "r=\"1.5\"")) != NULL; p++)
		n++;
	ck_assert_int_eq(n, 3);
	ck_assert_ptr_nonnull(strstr(out, "fill=\"#d62728\"/>"));
	ck_assert_ptr_nonnull(strstr(out, "</svg>\n"));
	free(out);
	report_free(&r);
}
END_TEST

START_TEST(plot_draws_one_dot_per_pixel_and_colour)
{
	struct report	 r;
	char		*out, *p;
	int		 n = 0;

	report_init(&r, "t");
	report_add(&r, 0, 1000, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	report_add(&r, 10000000, 1000, GRPC_STATUS_OK, SAGA_STATE_COMPLETED);
	/* 1,000 requests on the same pixel as the first, in two colours. */
	for (int i = 0; i < 1000; i++)
		report_add(&r, 1, 1000, GRPC_STATUS_OK, i % 2 ?
		    SAGA_STATE_COMPLETED : SAGA_STATE_COMPENSATED);
	out = capture(&r, report_plot_svg);
	for (p = out; (p = strstr(p, "r=\"1.5\"")) != NULL; p++)
		n++;
	ck_assert_int_eq(n, 3);
	free(out);
	report_free(&r);
}
END_TEST

START_TEST(durations_print_like_vegeta)
{
	char b[32];

	report_fmt_duration(850, b, sizeof(b));
	ck_assert_str_eq(b, "850µs");
	report_fmt_duration(12500, b, sizeof(b));
	ck_assert_str_eq(b, "12.500ms");
	report_fmt_duration(1203000, b, sizeof(b));
	ck_assert_str_eq(b, "1.203s");
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("report");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, percentiles_are_nearest_rank);
	tcase_add_test(tc, success_counts_completed_and_accepted_sagas);
	tcase_add_test(tc, text_report_has_the_vegeta_shape);
	tcase_add_test(tc, json_report_is_complete);
	tcase_add_test(tc, plot_draws_every_request_coloured_by_outcome);
	tcase_add_test(tc, plot_draws_one_dot_per_pixel_and_colour);
	tcase_add_test(tc, durations_print_like_vegeta);
	suite_add_tcase(s, tc);
	return check_run(s);
}
