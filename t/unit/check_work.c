/*
 * check_work.c - how work travels on the bus (src/work.c): subject, filter,
 * consumer and message-id names, the Work envelope with and without the
 * record its first publisher carries, and the Done notice. No I/O.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "saga.h"
#include "work.h"

static struct config_node	nodes[2] = {
	{ .name = "CreateOrder" }, { .name = "CreatePayment" },
};
static size_t			steps[2] = { 0, 1 };
static struct config_flow	flow = { .name = "Booking",
				    .mode = SAGA_MODE_ASYNC, .steps = steps,
				    .nsteps = 2 };
static struct config		cfg = { .nodes = nodes, .nnodes = 2,
				    .flows = &flow, .nflows = 1 };

START_TEST(names_follow_the_layout)
{
	char	b[WORK_SUBJECT_MAX];

	ck_assert_int_eq(work_subject(b, sizeof(b), "saga", SAGA_MODE_ASYNC,
	    "", "Booking", "CreateOrder", 0), 0);
	ck_assert_str_eq(b, "saga.work.async.Booking.CreateOrder.do");
	ck_assert_int_eq(work_subject(b, sizeof(b), "saga",
	    SAGA_MODE_THROTTLING, "pod-1", "Booking", "CreateOrder", 1), 0);
	ck_assert_str_eq(b, "saga.work.pod.pod-1.Booking.CreateOrder.undo");
	ck_assert_int_eq(work_filter(b, sizeof(b), "saga", SAGA_MODE_ASYNC,
	    "", "Booking", "CreateOrder"), 0);
	ck_assert_str_eq(b, "saga.work.async.Booking.CreateOrder.*");
	ck_assert_int_eq(work_msg_id(b, sizeof(b), "s-1", "CreateOrder", 1, 0),
	    0);
	ck_assert_str_eq(b, "s-1:CreateOrder:undo");
	/* A Retry round is a new call, not a republish of the old one. */
	ck_assert_int_eq(work_msg_id(b, sizeof(b), "s-1", "CreateOrder", 1, 2),
	    0);
	ck_assert_str_eq(b, "s-1:CreateOrder:undo:r2");
	ck_assert_int_eq(work_done_subject(b, sizeof(b), "saga", "pod-1"), 0);
	ck_assert_str_eq(b, "saga.done.pod-1");
	ck_assert_int_eq(work_cancel_subject(b, sizeof(b), "saga"), 0);
	ck_assert_str_eq(b, "saga.cancel");
	/* Another prefix moves every subject (nats.subject_prefix). */
	ck_assert_int_eq(work_subject(b, sizeof(b), "acme.b", SAGA_MODE_ASYNC,
	    "", "Booking", "CreateOrder", 0), 0);
	ck_assert_str_eq(b, "acme.b.work.async.Booking.CreateOrder.do");
	ck_assert_int_eq(work_stream_subjects(b, sizeof(b), "acme.b"), 0);
	ck_assert_str_eq(b, "acme.b.work.>");
	ck_assert_int_eq(work_callback_subject(b, sizeof(b), "acme.b"), 0);
	ck_assert_str_eq(b, "acme.b.work.callback");
	ck_assert_int_eq(work_done_subject(b, sizeof(b), "acme.b", "p"), 0);
	ck_assert_str_eq(b, "acme.b.done.p");
	ck_assert_int_eq(work_cancel_subject(b, sizeof(b), "acme.b"), 0);
	ck_assert_str_eq(b, "acme.b.cancel");
	/* A name that does not fit is refused, not cut. */
	ck_assert_int_eq(work_msg_id(b, 8, "s-1", "CreateOrder", 0, 0), -1);
}
END_TEST

START_TEST(work_without_record_round_trips)
{
	struct work	 in, out;
	uint8_t		*buf;
	size_t		 len;
	char		 err[128];

	memset(&in, 0, sizeof(in));
	in.saga_id = (char *)(uintptr_t)"s-1";
	in.flow = (char *)(uintptr_t)"Booking";
	in.step = 1;
	in.compensate = 1;
	in.pod = (char *)(uintptr_t)"";
	in.mode = SAGA_MODE_ASYNC;
	in.traceparent = (char *)(uintptr_t)"00-abc-def-01";
	buf = work_pack(&in, &len);
	ck_assert_int_eq(work_unpack(&out, buf, len, err, sizeof(err)), 0);
	ck_assert_str_eq(out.saga_id, "s-1");
	ck_assert_str_eq(out.flow, "Booking");
	ck_assert_uint_eq(out.step, 1);
	ck_assert_int_eq(out.compensate, 1);
	ck_assert_int_eq(out.mode, SAGA_MODE_ASYNC);
	ck_assert_str_eq(out.traceparent, "00-abc-def-01");
	ck_assert_ptr_null(out.record);
	work_clear(&out);
	free(buf);
}
END_TEST

START_TEST(work_carries_its_publishers_record)
{
	struct saga		*s;
	struct saga_pb		 v;
	struct work_record	 rec;
	struct work		 in, out;
	struct saga		*back;
	uint8_t			*buf;
	size_t			 len;
	char			 err[128];

	s = saga_new("s-2", &cfg, &flow, SAGA_MODE_ASYNC, 1000);
	saga_ctx_set(s, "amount", "42", 2);
	saga_pb_view(s, &v);
	rec.rev = 7;
	rec.saga = &v.pb;
	rec.step = 1;
	rec.compensate = 0;
	rec.attempt = 2;
	rec.pod = "pod-9";
	rec.callback = "http://127.0.0.1:1/cb";
	memset(&in, 0, sizeof(in));
	in.saga_id = s->id;
	in.flow = s->flow;
	in.step = 1;
	in.pod = (char *)(uintptr_t)"";
	in.mode = SAGA_MODE_ASYNC;
	in.record = &rec;
	buf = work_pack(&in, &len);
	saga_pb_view_free(&v);
	ck_assert_int_eq(work_unpack(&out, buf, len, err, sizeof(err)), 0);
	free(buf);
	ck_assert_ptr_nonnull(out.record);
	ck_assert_int_eq(out.record->rev, 7);
	ck_assert_uint_eq(out.record->step, 1);
	ck_assert_int_eq(out.record->compensate, 0);
	ck_assert_int_eq(out.record->attempt, 2);
	ck_assert_str_eq(out.record->pod, "pod-9");
	ck_assert_str_eq(out.record->callback, "http://127.0.0.1:1/cb");
	back = saga_from_pb(out.record->saga);
	ck_assert_str_eq(back->id, "s-2");
	ck_assert_uint_eq(back->nsteps, 2);
	ck_assert_ptr_nonnull(saga_ctx_get(back, "amount"));
	ck_assert_int_eq(memcmp(saga_ctx_get(back, "amount")->value, "42", 2),
	    0);
	saga_free(back);
	work_clear(&out);
	ck_assert_ptr_null(out.record);
	saga_free(s);
}
END_TEST

START_TEST(a_large_saga_travels_without_its_record)
{
	struct saga		*s;
	struct saga_pb		 v;
	struct work_record	 rec;
	struct work		 in, out;
	uint8_t			*buf;
	size_t			 len;
	char			 err[128], *big;

	s = saga_new("s-3", &cfg, &flow, SAGA_MODE_ASYNC, 1000);
	big = calloc(1, WORK_RECORD_MAX + 1);
	memset(big, 'x', WORK_RECORD_MAX);
	saga_ctx_set(s, "blob", big, WORK_RECORD_MAX);
	free(big);
	saga_pb_view(s, &v);
	memset(&rec, 0, sizeof(rec));
	rec.rev = 1;
	rec.saga = &v.pb;
	memset(&in, 0, sizeof(in));
	in.saga_id = s->id;
	in.flow = s->flow;
	in.pod = (char *)(uintptr_t)"";
	in.record = &rec;
	buf = work_pack(&in, &len);
	saga_pb_view_free(&v);
	ck_assert_uint_lt(len, 1024);
	ck_assert_int_eq(work_unpack(&out, buf, len, err, sizeof(err)), 0);
	ck_assert_ptr_null(out.record);
	work_clear(&out);
	free(buf);
	saga_free(s);
}
END_TEST

START_TEST(garbage_is_not_work)
{
	struct work	out;
	char		err[128];

	ck_assert_int_eq(work_unpack(&out, (const uint8_t *)"\xff\xff\xff", 3,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a sagad.v1.Work"));
	/* An envelope without a saga id is refused too. */
	ck_assert_int_eq(work_unpack(&out, (const uint8_t *)"", 0, err,
	    sizeof(err)), -1);
}
END_TEST

START_TEST(done_round_trips)
{
	uint8_t	*buf;
	size_t	 len;
	char	 id[64];
	int	 state = 0;

	buf = work_done_pack("s-4", SAGA_STATE_COMPENSATED, &len);
	ck_assert_int_eq(work_done_unpack(buf, len, id, sizeof(id), &state),
	    0);
	ck_assert_str_eq(id, "s-4");
	ck_assert_int_eq(state, SAGA_STATE_COMPENSATED);
	free(buf);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("work");
	TCase	*tc = tcase_create("envelopes");

	tcase_add_test(tc, names_follow_the_layout);
	tcase_add_test(tc, work_without_record_round_trips);
	tcase_add_test(tc, work_carries_its_publishers_record);
	tcase_add_test(tc, a_large_saga_travels_without_its_record);
	tcase_add_test(tc, garbage_is_not_work);
	tcase_add_test(tc, done_round_trips);
	suite_add_tcase(s, tc);
	return check_run(s);
}
