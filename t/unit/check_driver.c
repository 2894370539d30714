/*
 * check_driver.c - the saga driver (src/driver.c): every move both engines
 * make, asserted on what it would write to the store, send to the step and
 * publish on the bus. The driver does no I/O, so no fake store, client or
 * bus is needed: the test plays their part by feeding results and
 * revisions back. The config is built in memory.
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "driver.h"
#include "grpc/grpc.h"
#include "saga/v1/saga.pb-c.h"
#include "work.h"

static struct config_service	svc = { .name = (char *)(uintptr_t)"svc",
				    .timeout_ms = 1000 };
static struct config_node	nodes[2];
static size_t			steps[2] = { 0, 1 };
static struct config_flow	flow = { .name = (char *)(uintptr_t)"Trip",
				    .mode = SAGA_MODE_ASYNC, .steps = steps,
				    .nsteps = 2 };
static struct config_flow	flow1 = { .name = (char *)(uintptr_t)"Trip",
				    .mode = SAGA_MODE_ASYNC, .steps = steps,
				    .nsteps = 1 };
static struct config		cfg;
static uint64_t			rng = 42;
static struct driver		d;

static void
setup(void)
{
	static char *names[] = { "Hotel", "Flight" };

	memset(nodes, 0, sizeof(nodes));
	for (int i = 0; i < 2; i++) {
		nodes[i].name = names[i];
		nodes[i].action = (char *)(uintptr_t)"/x.X/Do";
		nodes[i].compensate = (char *)(uintptr_t)"/x.X/Undo";
		nodes[i].retries = 1;
		nodes[i].compensate_retries = 1;
		nodes[i].backoff_ms = 100;
		nodes[i].timeout_ms = 1000;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.pod_id = (char *)(uintptr_t)"pod-a";
	cfg.services = &svc;
	cfg.nservices = 1;
	cfg.nodes = nodes;
	cfg.nnodes = 2;
	cfg.flows = &flow;
	cfg.nflows = 1;
	driver_init(&d, &cfg, &flow, saga_new("s-1", &cfg, &flow,
	    SAGA_MODE_ASYNC, 1000), &rng);
}

static void
teardown(void)
{
	driver_clear(&d);
}

/* The events the next write carries, as "step:STATE:attempt" words. */
static void
assert_events(const char *want)
{
	char got[512] = "";

	for (int i = 0; i < d.nevs; i++) {
		char one[96];

		snprintf(one, sizeof(one), "%s%s:%s:%d", i ? " " : "",
		    d.evs[i].step, saga_state_name(d.evs[i].state),
		    d.evs[i].attempt);
		strncat(got, one, sizeof(got) - strlen(got) - 1);
	}
	ck_assert_str_eq(got, want);
}

/* Builds the write, checks what it records, and plays the store's OK. */
static void
assert_write(size_t step, int compensate, int attempt, int64_t rev)
{
	struct driver_write dw;

	driver_write(&d, &dw);
	ck_assert_int_eq(dw.w.step, (int)step);
	ck_assert_int_eq(dw.w.compensate, compensate);
	ck_assert_int_eq(dw.w.attempt, attempt);
	ck_assert_int_eq(dw.w.nevents, (size_t)d.nevs);
	ck_assert_str_eq(dw.w.saga->id, "s-1");
	ck_assert_int_eq(dw.w.saga->state, (int)d.s->state);
	driver_write_free(&dw);
	driver_written(&d, rev);
	ck_assert_int_eq(d.nevs, 0);
}

static uint8_t *
reply_with(const char *key, const char *value, size_t *len)
{
	Saga__V1__StepReply			 rep;
	Saga__V1__StepReply__ContextEntry	 ce, *cep = &ce;
	uint8_t					*buf;

	saga__v1__step_reply__init(&rep);
	saga__v1__step_reply__context_entry__init(&ce);
	ce.key = (char *)(uintptr_t)key;
	ce.value.data = (uint8_t *)(uintptr_t)value;
	ce.value.len = strlen(value);
	rep.n_context = 1;
	rep.context = &cep;
	*len = saga__v1__step_reply__get_packed_size(&rep);
	buf = malloc(*len);
	saga__v1__step_reply__pack(&rep, buf);
	return buf;
}

/* The request the driver would send now, decoded. */
static Saga__V1__StepRequest *
request_now(const char **path)
{
	struct grpc_metadata	 md = { 0 };
	Saga__V1__StepRequest	*req;
	uint8_t			*buf;
	size_t			 len;
	char			 err[256];

	buf = driver_request(&d, path, &len, &md, err, sizeof(err));
	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(grpc_md_get(&md, "x-request-id"));
	req = saga__v1__step_request__unpack(NULL, len, buf);
	ck_assert_ptr_nonnull(req);
	free(buf);
	grpc_md_clear(&md);
	return req;
}

START_TEST(sync_start_records_the_first_call_and_the_saga_running)
{
	driver_start(&d, 1000);
	ck_assert_int_eq(d.a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.attempt, 1);
	ck_assert_int_eq(d.s->state, SAGA_STATE_RUNNING);
	assert_events(":RUNNING:0 Hotel:RUNNING:1");
	assert_write(0, 0, 1, 1);
}
END_TEST

START_TEST(action_ok_merges_the_reply_and_starts_the_next_in_one_write)
{
	Saga__V1__StepRequest	*req;
	const char		*path;
	uint8_t			*rep;
	size_t			 len;

	driver_start(&d, 1000);
	assert_write(0, 0, 1, 1);
	rep = reply_with("order_id", "o-7", &len);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, rep, len,
	    1100), SAGA_ACT_CALL);
	free(rep);
	ck_assert_int_eq(d.a.step, 1);
	assert_events("Hotel:COMPLETED:1 Flight:RUNNING:1");
	ck_assert_int_eq(d.carry, 1);
	assert_write(1, 0, 1, 2);
	req = request_now(&path);
	ck_assert_str_eq(path, "/x.X/Do");
	ck_assert_str_eq(req->step, "Flight");
	ck_assert_int_eq(req->compensate, 0);
	ck_assert_int_eq(req->n_context, 1);
	ck_assert_str_eq(req->context[0]->key, "order_id");
	saga__v1__step_request__free_unpacked(req, NULL);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    1200), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPLETED);
	assert_events("Flight:COMPLETED:1 :COMPLETED:0");
	assert_write(1, 0, 1, 3);
}
END_TEST

START_TEST(business_failure_compensates_every_started_step_in_reverse)
{
	const char		*path;
	Saga__V1__StepRequest	*req;

	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_ABORTED, "no seat",
	    NULL, 0, 1200), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 1);
	ck_assert_int_eq(d.a.compensate, 1);
	assert_events("Flight:FAILED:1 :COMPENSATING:0 Flight:COMPENSATING:1");
	assert_write(1, 1, 1, 2);
	req = request_now(&path);
	ck_assert_str_eq(path, "/x.X/Undo");
	ck_assert_int_eq(req->compensate, 1);
	saga__v1__step_request__free_unpacked(req, NULL);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    1300), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    1400), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATED);
	assert_events("Hotel:COMPENSATED:1 :COMPENSATED:0");
}
END_TEST

START_TEST(transient_failure_waits_then_begins_the_next_attempt)
{
	driver_start(&d, 1000);
	assert_write(0, 0, 1, 1);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down",
	    NULL, 0, 1100), SAGA_ACT_WAIT);
	ck_assert_int_ge(d.a.delay_ms, 50);
	ck_assert_int_le(d.a.delay_ms, 100);
	/* Only the failed attempt; the same call stays pending. */
	ck_assert_int_eq(d.nevs, 1);
	ck_assert_str_eq(d.evs[0].step, "Hotel");
	ck_assert_ptr_nonnull(strstr(d.evs[0].error, "down"));
	assert_write(0, 0, 1, 2);
	driver_begin(&d, 1300);
	ck_assert_int_eq(d.a.attempt, 2);
	assert_events("Hotel:RUNNING:2");
	ck_assert_ptr_null(d.evs[0].error);
	assert_write(0, 0, 2, 3);
}
END_TEST

START_TEST(timeouts_past_the_retries_compensate)
{
	driver_start(&d, 1000);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_DEADLINE_EXCEEDED,
	    "deadline", NULL, 0, 1100), SAGA_ACT_WAIT);
	driver_begin(&d, 1200);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_DEADLINE_EXCEEDED,
	    "deadline", NULL, 0, 1300), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATING);
}
END_TEST

START_TEST(a_compensation_that_keeps_failing_ends_the_saga_failed)
{
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_ABORTED, "no", NULL, 0, 1100);
	ck_assert_int_eq(d.a.compensate, 1);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down",
	    NULL, 0, 1200), SAGA_ACT_WAIT);
	driver_begin(&d, 1300);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down",
	    NULL, 0, 1400), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_FAILED);
	ck_assert_int_eq(d.evs[d.nevs - 1].state, SAGA_STATE_FAILED);
	ck_assert_str_eq(d.evs[d.nevs - 1].step, "");
}
END_TEST

START_TEST(a_reply_that_is_not_a_step_reply_is_internal)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff };

	driver_start(&d, 1000);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, junk,
	    sizeof(junk), 1100), SAGA_ACT_WAIT);
	ck_assert_ptr_nonnull(strstr(d.s->steps[0].error, "StepReply"));
}
END_TEST

START_TEST(a_raw_request_without_its_key_is_unsent_and_undoes_before_it)
{
	char	err[256];
	size_t	len;
	const char *path;
	struct grpc_metadata md = { 0 };

	nodes[1].request = (char *)(uintptr_t)"missing";
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	ck_assert_ptr_null(driver_request(&d, &path, &len, &md, err,
	    sizeof(err)));
	ck_assert_int_eq(driver_unsent(&d, err, 1200), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.s->steps[1].attempts, 1);
}
END_TEST

/* Issue 11, case 8: a participant never reached has nothing to undo. */
START_TEST(an_action_that_never_reached_its_participant_is_not_compensated)
{
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	/* Flight: connection refused on both attempts. */
	ck_assert_int_eq(driver_unreached(&d, GRPC_STATUS_UNAVAILABLE,
	    "connect: refused", 1200), SAGA_ACT_WAIT);
	driver_begin(&d, 1300);
	ck_assert_int_eq(driver_unreached(&d, GRPC_STATUS_UNAVAILABLE,
	    "connect: refused", 1400), SAGA_ACT_CALL);
	ck_assert_int_eq(d.s->steps[1].state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(d.s->steps[1].unsent, 2);
	ck_assert_ptr_nonnull(strstr(d.s->steps[1].error, "never reached"));
	/* Only Hotel, which did run, is undone. */
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    1500), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATED);
}
END_TEST

START_TEST(an_action_that_may_have_reached_once_is_compensated)
{
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	/* Flight: a timeout (it may have run), then connection refused. */
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_DEADLINE_EXCEEDED,
	    "deadline", NULL, 0, 1200), SAGA_ACT_WAIT);
	driver_begin(&d, 1300);
	ck_assert_int_eq(driver_unreached(&d, GRPC_STATUS_UNAVAILABLE,
	    "connect: refused", 1400), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 1);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.s->steps[1].unsent, 1);
}
END_TEST

START_TEST(recovery_of_a_running_saga_compensates_its_last_started_step)
{
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	assert_write(1, 0, 1, 5);
	/* The master died here; another one claims the record. */
	ck_assert_int_eq(driver_recover(&d, 9000), SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 1);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATING);
	ck_assert_str_eq(d.evs[0].step, "");
	assert_write(1, 1, d.a.attempt, 6);
}
END_TEST

START_TEST(a_queued_saga_first_delivery_makes_the_recorded_call)
{
	int write;

	driver_queue(&d, 1000);
	ck_assert_int_eq(d.s->state, SAGA_STATE_PENDING);
	assert_events(":PENDING:0");
	assert_write(0, 0, 1, 1);
	ck_assert_int_eq(driver_resume(&d, 0, 0, 1, 0, 0, 0, NULL, 1100, &write),
	    DRIVER_RESUME_CALL);
	ck_assert_int_eq(d.a.begun, 1);
	ck_assert_int_eq(d.a.attempt, 1);
	ck_assert_int_eq(write, 0);
	/* The catch-up's events go with the result's write. */
	assert_events(":RUNNING:0 Hotel:RUNNING:1");
}
END_TEST

START_TEST(a_redelivery_counts_the_recorded_call_as_made)
{
	int write;

	driver_start(&d, 1000);
	assert_write(0, 0, 1, 1);
	ck_assert_int_eq(driver_resume(&d, 0, 0, 1, 0, 0, 1, NULL, 1100, &write),
	    DRIVER_RESUME_CALL);
	ck_assert_int_eq(d.a.attempt, 2);
	ck_assert_int_eq(write, 1);
	assert_events("Hotel:RUNNING:2");
	assert_write(0, 0, 2, 2);
}
END_TEST

START_TEST(work_of_a_passed_call_is_published_again)
{
	int write;

	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	assert_write(1, 0, 1, 2);
	/* Step 0's work comes back after its result was recorded. */
	ck_assert_int_eq(driver_resume(&d, 1, 0, 1, 0, 0, 1, NULL, 1200, &write),
	    DRIVER_RESUME_PASS);
	ck_assert_int_eq(d.a.step, 1);
	ck_assert_int_eq(write, 0);
	ck_assert_int_eq(d.carry, 0);
}
END_TEST

START_TEST(an_ended_saga_only_repeats_its_end_effects)
{
	int write;

	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_ABORTED, "no", NULL, 0, 1100);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1200);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATED);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_resume(&d, 0, 1, 2, 0, 1, 1, NULL, 1300, &write),
	    DRIVER_RESUME_END);
	ck_assert_int_eq(write, 0);
	ck_assert_int_eq(d.nevs, 0);
}
END_TEST

START_TEST(a_changed_flow_ends_the_saga_failed_before_any_call)
{
	int write;

	driver_start(&d, 1000);
	assert_write(0, 0, 1, 1);
	d.flow = &flow1;	/* a reload left it one step */
	ck_assert_int_eq(driver_resume(&d, 0, 0, 1, 0, 0, 1, NULL, 1100, &write),
	    DRIVER_RESUME_END);
	ck_assert_int_eq(write, 1);
	ck_assert_int_eq(d.s->state, SAGA_STATE_FAILED);
	ck_assert_ptr_nonnull(strstr(d.s->error, "compensate by hand"));
	assert_events(":FAILED:0");
	d.flow = NULL;		/* gone altogether: recovery says the same */
	driver_events_clear(&d);
	ck_assert_int_eq(driver_recover(&d, 1200), SAGA_ACT_END);
}
END_TEST

START_TEST(cancel_compensates_every_started_step_and_starts_nothing)
{
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	assert_write(1, 0, 1, 2);
	/* Flight's call is in flight (or only recorded): it counts too. */
	ck_assert_int_eq(driver_cancel(&d, "customer left", 1200),
	    SAGA_ACT_CALL);
	ck_assert_int_eq(d.a.step, 1);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_str_eq(d.s->error, "cancelled: customer left");
	assert_events(":COMPENSATING:0 Flight:COMPENSATING:1");
	assert_write(1, 1, 1, 3);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1300);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	driver_events_clear(&d);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    1400), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATED);
	ck_assert_str_eq(d.s->error, "cancelled: customer left");
	/* A second Cancel of a compensating or ended saga changes nothing. */
	ck_assert_int_eq(driver_cancel(&d, "again", 1500), SAGA_ACT_END);
	ck_assert_str_eq(d.s->error, "cancelled: customer left");
}
END_TEST

START_TEST(a_cancelled_record_makes_the_worker_compensate_instead)
{
	int write;

	driver_queue(&d, 1000);
	assert_write(0, 0, 1, 1);
	/* First delivery of step 0's work after a Cancel: no call. */
	ck_assert_int_eq(driver_resume(&d, 0, 0, 1, 0, 0, 0, "stop", 1100,
	    &write), DRIVER_RESUME_PASS);
	ck_assert_int_eq(write, 1);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(d.carry, 1);
}
END_TEST

START_TEST(retry_tries_the_failed_compensations_with_a_fresh_budget)
{
	struct driver_work	dw;
	char			err[256];

	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_ABORTED, "no", NULL, 0, 1100);
	driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down", NULL, 0, 1200);
	driver_begin(&d, 1300);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down",
	    NULL, 0, 1400), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_FAILED);
	driver_written(&d, 9);
	ck_assert_int_eq(driver_retry(&d, 2000), SAGA_ACT_CALL);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(d.a.step, 0);
	ck_assert_int_eq(d.a.compensate, 1);
	ck_assert_int_eq(d.a.attempt, 1);
	assert_events(":COMPENSATING:0 Hotel:COMPENSATING:1");
	/* Its work has a dedupe id of its own round. */
	ck_assert_int_eq(driver_work(&d, &d.a, &dw, err, sizeof(err)), 0);
	ck_assert_str_eq(dw.msg_id, "s-1:Hotel:undo:r1");
	free(dw.buf);
	ck_assert_int_eq(driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0,
	    2100), SAGA_ACT_END);
	ck_assert_int_eq(d.s->state, SAGA_STATE_COMPENSATED);
}
END_TEST

START_TEST(resolve_ends_a_failed_saga_with_the_note_as_its_event)
{
	driver_start(&d, 1000);
	d.s->state = SAGA_STATE_FAILED;
	driver_events_clear(&d);
	driver_resolve(&d, "refunded by hand", 2000);
	ck_assert_int_eq(d.s->state, SAGA_STATE_RESOLVED);
	ck_assert_int_eq(d.a.kind, SAGA_ACT_END);
	assert_events(":RESOLVED:0");
	ck_assert_str_eq(d.evs[0].error, "refunded by hand");
	ck_assert_str_eq(saga_state_name(d.s->state), "RESOLVED");
}
END_TEST

START_TEST(events_of_moves_without_a_write_are_all_kept)
{
	struct driver_write dw;

	/* Every write failed: nine events wait, none is dropped. */
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_ABORTED, "no", NULL, 0, 1100);
	driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down", NULL, 0, 1200);
	driver_begin(&d, 1300);
	driver_result(&d, GRPC_STATUS_UNAVAILABLE, "down", NULL, 0, 1400);
	ck_assert_int_eq(d.s->state, SAGA_STATE_FAILED);
	ck_assert_int_eq(d.nevs, 9);
	driver_write(&d, &dw);
	ck_assert_int_eq(dw.w.nevents, 9);
	ck_assert_str_eq(dw.w.events[8]->step, "");
	ck_assert_int_eq(dw.w.events[8]->state, SAGA__V1__STATE__STATE_FAILED);
	driver_write_free(&dw);
}
END_TEST

START_TEST(work_carries_the_record_only_of_the_call_its_write_started)
{
	struct driver_work	 dw;
	struct work		 w;
	char			 err[256];

	driver_set(&d, "pod-a", "http://127.0.0.1/cb",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	driver_set_trace(&d, "k=v", "user=1", NULL);
	driver_start(&d, 1000);
	driver_result(&d, GRPC_STATUS_OK, NULL, NULL, 0, 1100);
	driver_written(&d, 7);
	ck_assert_int_eq(driver_work(&d, &d.a, &dw, err, sizeof(err)), 0);
	ck_assert_str_eq(dw.subject, "saga.work.async.Trip.Flight.do");
	ck_assert_str_eq(dw.msg_id, "s-1:Flight:do");
	ck_assert_int_eq(work_unpack(&w, dw.buf, dw.len, err, sizeof(err)),
	    0);
	free(dw.buf);
	ck_assert_ptr_nonnull(w.record);
	ck_assert_int_eq(w.record->rev, 7);
	ck_assert_int_eq(w.record->step, 1);
	ck_assert_int_eq(w.record->attempt, 1);
	ck_assert_str_eq(w.record->callback, "http://127.0.0.1/cb");
	ck_assert_str_eq(w.traceparent,
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	ck_assert_str_eq(w.tracestate, "k=v");
	ck_assert_str_eq(w.baggage, "user=1");
	work_clear(&w);
	/* Work of another call than the one written carries none. */
	{
		struct saga_action other = d.a;

		other.step = 0;
		other.compensate = 1;
		ck_assert_int_eq(driver_work(&d, &other, &dw, err,
		    sizeof(err)), 0);
		ck_assert_str_eq(dw.subject, "saga.work.async.Trip.Hotel.undo");
		ck_assert_int_eq(work_unpack(&w, dw.buf, dw.len, err,
		    sizeof(err)), 0);
		free(dw.buf);
		ck_assert_ptr_null(w.record);
		work_clear(&w);
	}
}
END_TEST

static Suite *
driver_suite(void)
{
	Suite	*s = suite_create("driver");
	TCase	*tc = tcase_create("moves");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sync_start_records_the_first_call_and_the_saga_running);
	tcase_add_test(tc, action_ok_merges_the_reply_and_starts_the_next_in_one_write);
	tcase_add_test(tc, business_failure_compensates_every_started_step_in_reverse);
	tcase_add_test(tc, transient_failure_waits_then_begins_the_next_attempt);
	tcase_add_test(tc, timeouts_past_the_retries_compensate);
	tcase_add_test(tc, a_compensation_that_keeps_failing_ends_the_saga_failed);
	tcase_add_test(tc, a_reply_that_is_not_a_step_reply_is_internal);
	tcase_add_test(tc, a_raw_request_without_its_key_is_unsent_and_undoes_before_it);
	tcase_add_test(tc, an_action_that_never_reached_its_participant_is_not_compensated);
	tcase_add_test(tc, an_action_that_may_have_reached_once_is_compensated);
	tcase_add_test(tc, recovery_of_a_running_saga_compensates_its_last_started_step);
	tcase_add_test(tc, a_queued_saga_first_delivery_makes_the_recorded_call);
	tcase_add_test(tc, a_redelivery_counts_the_recorded_call_as_made);
	tcase_add_test(tc, work_of_a_passed_call_is_published_again);
	tcase_add_test(tc, an_ended_saga_only_repeats_its_end_effects);
	tcase_add_test(tc, a_changed_flow_ends_the_saga_failed_before_any_call);
	tcase_add_test(tc, cancel_compensates_every_started_step_and_starts_nothing);
	tcase_add_test(tc, a_cancelled_record_makes_the_worker_compensate_instead);
	tcase_add_test(tc, retry_tries_the_failed_compensations_with_a_fresh_budget);
	tcase_add_test(tc, resolve_ends_a_failed_saga_with_the_note_as_its_event);
	tcase_add_test(tc, events_of_moves_without_a_write_are_all_kept);
	tcase_add_test(tc, work_carries_the_record_only_of_the_call_its_write_started);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(driver_suite());
}
