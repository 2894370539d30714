/*
 * check_trace.c - W3C trace context (src/trace.c) and what the driver does
 * with it (issue 14): a traceparent read and refused, written back, and
 * with tracing on, each step call's own span id in the traceparent the
 * participant gets, the saga's in the Work.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "check_run.h"
#include "trace.h"

static const char *GOOD =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

START_TEST(a_valid_traceparent_is_read_and_written_back)
{
	uint8_t	tid[16], sid[8], fl;
	char	out[TRACE_PARENT_LEN + 1];

	ck_assert_int_eq(trace_parse(GOOD, tid, sid, &fl), 0);
	ck_assert_int_eq(tid[0], 0x0a);
	ck_assert_int_eq(sid[7], 0x31);
	ck_assert_int_eq(fl, 1);
	trace_format(out, tid, sid, fl);
	ck_assert_str_eq(out, GOOD);
	/* A later version may carry more after its four fields. */
	ck_assert_int_eq(trace_parse("01-0af7651916cd43dd8448eb211c80319c-"
	    "b7ad6b7169203331-00-extra", tid, sid, &fl), 0);
}
END_TEST

START_TEST(an_invalid_traceparent_is_refused)
{
	static const char *bad[] = {
		"", "00-tp", "garbage",
		/* upper case */
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
		/* all-zero trace id, span id */
		"00-00000000000000000000000000000000-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
		/* version ff; 00 with a tail; bad separators; not hex */
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
	};
	uint8_t	tid[16], sid[8], fl;

	ck_assert_int_eq(trace_parse(NULL, tid, sid, &fl), -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(trace_parse(bad[i], tid, sid, &fl) == -1,
		    "accepted %s", bad[i]);
}
END_TEST

START_TEST(ids_are_fresh_and_never_zero)
{
	uint64_t	rng = 0;
	uint8_t		a[16], b[16], zero[16] = { 0 };

	trace_new_id(a, 16, &rng);
	trace_new_id(b, 16, &rng);
	ck_assert(memcmp(a, b, 16) != 0);
	ck_assert(memcmp(a, zero, 16) != 0);
}
END_TEST

START_TEST(sampling_follows_the_ratio)
{
	uint64_t	rng = 42;
	int		kept = 0;

	for (int i = 0; i < 10000; i++)
		kept += trace_sample(0.25, &rng);
	ck_assert_int_gt(kept, 2200);
	ck_assert_int_lt(kept, 2800);
	ck_assert_int_eq(trace_sample(1.0, &rng), TRACE_SAMPLED);
	ck_assert_int_eq(trace_sample(0.0, &rng), 0);
}
END_TEST

START_TEST(a_work_context_keeps_its_trace_and_an_invalid_one_starts_fresh)
{
	struct trace_ctx	tc;
	uint64_t		rng = 7;
	uint8_t			parent[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	char			out[TRACE_PARENT_LEN + 1];

	ck_assert_int_eq(trace_ctx_from(&tc, GOOD, parent, 1.0, NULL, &rng),
	    0);
	trace_format(out, tc.trace_id, tc.span_id, tc.flags);
	ck_assert_str_eq(out, GOOD);
	ck_assert(tc.has_parent && memcmp(tc.parent_id, parent, 8) == 0);
	trace_call_begin(&tc, &rng);
	ck_assert(memcmp(tc.call_id, tc.span_id, 8) != 0);
	ck_assert(tc.call_start_ns > 0);

	ck_assert_int_eq(trace_ctx_from(&tc, "00-nope", parent, 0.0, NULL,
	    &rng), 1);
	ck_assert(!tc.has_parent);
	ck_assert_int_eq(tc.flags, 0);		/* ratio 0: not sampled */
	trace_format(out, tc.trace_id, tc.span_id, tc.flags);
	ck_assert(strcmp(out, GOOD) != 0);
}
END_TEST

START_TEST(a_saga_without_context_gets_one_trace_in_every_process)
{
	struct trace_ctx	a, b, c;
	uint64_t		r1 = 1, r2 = 99;

	/* Two processes, two PRNGs, no traceparent: the same trace. */
	ck_assert_int_eq(trace_ctx_from(&a, NULL, NULL, 1.0, "saga-7", &r1), 1);
	ck_assert_int_eq(trace_ctx_from(&b, "bad", NULL, 1.0, "saga-7", &r2),
	    1);
	ck_assert(memcmp(a.trace_id, b.trace_id, 16) == 0);
	ck_assert(memcmp(a.span_id, b.span_id, 8) == 0);
	ck_assert_int_eq(a.flags, TRACE_SAMPLED);
	trace_ctx_from(&c, NULL, NULL, 1.0, "saga-8", &r1);
	ck_assert(memcmp(a.trace_id, c.trace_id, 16) != 0);
}
END_TEST

static Suite *
trace_suite(void)
{
	Suite	*s = suite_create("trace");
	TCase	*tc = tcase_create("context");

	tcase_add_test(tc, a_valid_traceparent_is_read_and_written_back);
	tcase_add_test(tc, an_invalid_traceparent_is_refused);
	tcase_add_test(tc, ids_are_fresh_and_never_zero);
	tcase_add_test(tc, sampling_follows_the_ratio);
	tcase_add_test(tc,
	    a_work_context_keeps_its_trace_and_an_invalid_one_starts_fresh);
	tcase_add_test(tc,
	    a_saga_without_context_gets_one_trace_in_every_process);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(trace_suite());
}
