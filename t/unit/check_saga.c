/*
 * check_saga.c - the saga rules (src/saga.c): step order, context passing,
 * retries and backoff, business failures, compensation in reverse with the
 * failed step included, exhausted compensations, recovery after a crash and
 * the saga.v1.Saga encoding. The config is built in memory: no file, no I/O.
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_run.h"
#include "grpc/grpc.h"
#include "saga.h"

static struct config_service	svc = { .name = "svc", .timeout_ms = 1000 };
static struct config_node	nodes[3];
static size_t			steps[3] = { 0, 1, 2 };
static struct config_flow	flow = { .name = "Trip", .mode = SAGA_MODE_SYNC,
				    .steps = steps, .nsteps = 3 };
static struct config		cfg;
static uint64_t			rng = 42;

static void
setup(void)
{
	static char *names[] = { "Hotel", "Flight", "Car" };

	memset(nodes, 0, sizeof(nodes));
	for (int i = 0; i < 3; i++) {
		nodes[i].name = names[i];
		nodes[i].action = (char *)(uintptr_t)"/x.X/Do";
		nodes[i].compensate = (char *)(uintptr_t)"/x.X/Undo";
		nodes[i].retries = 2;
		nodes[i].compensate_retries = 3;
		nodes[i].backoff_ms = 100;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.services = &svc;
	cfg.nservices = 1;
	cfg.nodes = nodes;
	cfg.nnodes = 3;
	cfg.flows = &flow;
	cfg.nflows = 1;
}

/* Runs one call: begin, then end with status; returns the next action. */
static struct saga_action
call(struct saga *s, struct saga_action a, int status)
{
	ck_assert_int_eq(a.kind == SAGA_ACT_CALL || a.kind == SAGA_ACT_WAIT, 1);
	saga_step_begin(s, &a, 1000);
	return saga_step_end(s, &cfg, &flow, &a, status, "msg", NULL, 0, 2000,
	    &rng);
}

START_TEST(classify_follows_the_contract)
{
	int fail[] = { GRPC_STATUS_ABORTED, GRPC_STATUS_INVALID_ARGUMENT,
	    GRPC_STATUS_NOT_FOUND, GRPC_STATUS_ALREADY_EXISTS,
	    GRPC_STATUS_FAILED_PRECONDITION, GRPC_STATUS_PERMISSION_DENIED,
	    GRPC_STATUS_UNAUTHENTICATED, GRPC_STATUS_OUT_OF_RANGE,
	    GRPC_STATUS_UNIMPLEMENTED };
	int retry[] = { GRPC_STATUS_UNAVAILABLE, GRPC_STATUS_DEADLINE_EXCEEDED,
	    GRPC_STATUS_RESOURCE_EXHAUSTED, GRPC_STATUS_INTERNAL,
	    GRPC_STATUS_UNKNOWN, GRPC_STATUS_CANCELLED, GRPC_STATUS_DATA_LOSS };

	ck_assert_int_eq(saga_classify(GRPC_STATUS_OK), SAGA_VERDICT_OK);
	for (size_t i = 0; i < sizeof(fail) / sizeof(fail[0]); i++)
		ck_assert_int_eq(saga_classify(fail[i]), SAGA_VERDICT_FAIL);
	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		ck_assert_int_eq(saga_classify(retry[i]), SAGA_VERDICT_RETRY);
}
END_TEST

START_TEST(backoff_grows_and_stays_within_bounds)
{
	uint64_t r = 7;

	for (int attempt = 1; attempt <= 20; attempt++) {
		int64_t nominal = 100;
		for (int i = 1; i < attempt && nominal < 5000; i++)
			nominal *= 2;
		if (nominal > 5000)
			nominal = 5000;
		for (int k = 0; k < 100; k++) {
			int64_t d = saga_backoff_ms(100, attempt, 5000, &r);
			ck_assert_int_ge(d, nominal - nominal / 2);
			ck_assert_int_le(d, nominal);
		}
	}
}
END_TEST

START_TEST(all_steps_complete_in_order_and_pass_context)
{
	struct saga		*s = saga_new("id1", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	struct saga_kv		 reply = { .key = (char *)(uintptr_t)"room",
				    .value = (uint8_t *)(uintptr_t)"42", .len = 2 };

	ck_assert_int_eq(s->state, SAGA_STATE_RUNNING);
	ck_assert_int_eq(s->mode, SAGA_MODE_SYNC);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
		ck_assert_uint_eq(a.step, i);
		ck_assert_int_eq(a.compensate, 0);
		saga_step_begin(s, &a, 10);
		ck_assert_int_eq(s->steps[i].state, SAGA_STATE_RUNNING);
		a = saga_step_end(s, &cfg, &flow, &a, GRPC_STATUS_OK, NULL,
		    i == 0 ? &reply : NULL, i == 0 ? 1 : 0, 20, &rng);
		ck_assert_int_eq(s->steps[i].state, SAGA_STATE_COMPLETED);
	}
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPLETED);
	ck_assert_ptr_nonnull(saga_ctx_get(s, "room"));
	ck_assert_mem_eq(saga_ctx_get(s, "room")->value, "42", 2);
	ck_assert_ptr_null(s->error);
	saga_free(s);
}
END_TEST

START_TEST(business_failure_compensates_in_reverse_including_failed_step)
{
	struct saga		*s = saga_new("id2", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);			/* Hotel */
	a = call(s, a, GRPC_STATUS_ABORTED);		/* Flight fails */
	ck_assert_int_eq(s->steps[1].attempts, 1);	/* not retried */
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATING);
	ck_assert_str_eq(s->error, "Flight: ABORTED: msg");
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);			/* failed one first */
	ck_assert_int_eq(a.compensate, 1);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.compensate, 1);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(s->steps[2].state, SAGA_STATE_PENDING);
	saga_free(s);
}
END_TEST

/*
 * Issue 11: once undone, the step that failed keeps its failure as its
 * error; the steps undone because of it have none; a compensation's own
 * failures do not stay on it once it succeeds.
 */
START_TEST(failed_step_keeps_its_error_once_undone)
{
	struct saga		*s = saga_new("id2b", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	uint8_t			*buf;
	size_t			 len;
	char			 err[256];
	struct saga		*u;

	a = call(s, a, GRPC_STATUS_OK);			/* Hotel */
	a = call(s, a, GRPC_STATUS_ABORTED);		/* Flight fails */
	a = call(s, a, GRPC_STATUS_UNAVAILABLE);	/* its undo, again */
	ck_assert_int_eq(a.kind, SAGA_ACT_WAIT);
	/* The saga travels through a record between the two attempts. */
	buf = saga_pack(s, &len);
	u = saga_unpack(buf, len, err, sizeof(err));
	ck_assert_ptr_nonnull(u);
	free(buf);
	saga_free(s);
	s = u;
	a = call(s, a, GRPC_STATUS_OK);			/* Flight undone */
	a = call(s, a, GRPC_STATUS_OK);			/* Hotel undone */
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_COMPENSATED);
	ck_assert_str_eq(s->steps[1].error, "ABORTED: msg");
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_COMPENSATED);
	ck_assert_ptr_null(s->steps[0].error);
	ck_assert_ptr_null(s->steps[2].error);
	saga_free(s);

	/* A cancelled saga has no failed step: every undone one is clean. */
	s = saga_new("id2c", &cfg, &flow, 0, 1);
	a = saga_first(s);
	a = call(s, a, GRPC_STATUS_OK);
	saga_step_begin(s, &a, 1000);
	a = saga_cancel(s, &cfg, &flow, "no", 1500);
	while (a.kind != SAGA_ACT_END)
		a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	ck_assert_ptr_null(s->steps[0].error);
	ck_assert_ptr_null(s->steps[1].error);
	saga_free(s);
}
END_TEST

START_TEST(transient_failure_is_retried_then_compensated)
{
	struct saga		*s = saga_new("id3", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_UNAVAILABLE);
	ck_assert_int_eq(a.kind, SAGA_ACT_WAIT);
	ck_assert_int_eq(a.attempt, 2);
	ck_assert_int_ge(a.delay_ms, 50);
	ck_assert_int_le(a.delay_ms, 100);
	a = call(s, a, GRPC_STATUS_DEADLINE_EXCEEDED);
	ck_assert_int_eq(a.kind, SAGA_ACT_WAIT);
	ck_assert_int_eq(a.attempt, 3);
	ck_assert_int_ge(a.delay_ms, 100);
	ck_assert_int_le(a.delay_ms, 200);
	a = call(s, a, GRPC_STATUS_UNAVAILABLE);	/* retries (2) spent */
	ck_assert_int_eq(s->steps[0].attempts, 3);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_FAILED);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_uint_eq(a.step, 0);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

START_TEST(retry_then_success_continues)
{
	struct saga		*s = saga_new("id4", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_UNAVAILABLE);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(s->steps[0].attempts, 2);
	ck_assert_ptr_null(s->steps[0].error);
	saga_free(s);
}
END_TEST

START_TEST(exhausted_compensation_fails_the_saga_but_undoes_the_rest)
{
	struct saga		*s = saga_new("id5", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_NOT_FOUND);		/* Car fails */
	ck_assert_uint_eq(a.step, 2);
	a = call(s, a, GRPC_STATUS_OK);			/* Car undone */
	ck_assert_uint_eq(a.step, 1);
	/* Flight's compensation fails 1 + compensate_retries (3) times,
	 * business failures included: an undo must be done. */
	for (int i = 0; i < 3; i++) {
		a = call(s, a, GRPC_STATUS_FAILED_PRECONDITION);
		ck_assert_int_eq(a.kind, SAGA_ACT_WAIT);
	}
	a = call(s, a, GRPC_STATUS_FAILED_PRECONDITION);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_FAILED);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_FAILED);
	ck_assert_ptr_nonnull(strstr(s->error, "compensation of Flight failed"));
	ck_assert_ptr_nonnull(strstr(s->error, "Car: NOT_FOUND"));
	saga_free(s);
}
END_TEST

START_TEST(step_without_compensation_is_skipped)
{
	struct saga		*s;
	struct saga_action	 a;

	nodes[0].compensate = NULL;
	s = saga_new("id6", &cfg, &flow, 0, 1);
	a = saga_first(s);
	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_ABORTED);
	a = call(s, a, GRPC_STATUS_OK);			/* Flight undone */
	ck_assert_int_eq(a.kind, SAGA_ACT_END);		/* Hotel: nothing */
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

START_TEST(recovery_of_a_running_saga_compensates_from_the_last_started)
{
	struct saga		*s = saga_new("id7", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);
	saga_step_begin(s, &a, 5);	/* Flight called, then a crash */
	a = saga_recover(s, &cfg, &flow, 9);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_ptr_nonnull(s->error);
	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

START_TEST(recovery_resumes_a_compensation_under_way)
{
	struct saga		*s = saga_new("id8", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_ABORTED);
	a = call(s, a, GRPC_STATUS_OK);		/* Car undone */
	saga_step_begin(s, &a, 5);		/* Flight's undo, then crash */
	a = saga_recover(s, &cfg, &flow, 9);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.compensate, 1);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_uint_eq(a.step, 0);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	/* A saga that ended stays as it is. */
	a = saga_recover(s, &cfg, &flow, 10);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

START_TEST(resume_of_a_new_saga_calls_its_first_step_once)
{
	struct saga		*s = saga_new("r1", &cfg, &flow, 0, 1);
	struct saga_action	 a;
	int			 changed;

	a = saga_resume(s, &cfg, &flow, 0, 0, 0, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.compensate, 0);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(s->state, SAGA_STATE_RUNNING);
	ck_assert_int_eq(changed, 1);
	saga_free(s);
}
END_TEST

START_TEST(resume_after_a_recorded_result_goes_to_what_follows)
{
	struct saga		*s = saga_new("r2", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	a = call(s, a, GRPC_STATUS_OK);		/* Hotel done */
	/* A redelivered Hotel message must not call Hotel again. */
	a = saga_resume(s, &cfg, &flow, 0, 0, 1, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.compensate, 0);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(changed, 0);
	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	/* A final saga stays as it is. */
	a = saga_resume(s, &cfg, &flow, 2, 0, 1, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPLETED);
	ck_assert_int_eq(changed, 0);
	saga_free(s);
}
END_TEST

START_TEST(resume_counts_attempts_per_phase)
{
	struct saga		*s = saga_new("r3", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	a = call(s, a, GRPC_STATUS_UNAVAILABLE);	/* Hotel #1 failed */
	ck_assert_int_eq(a.kind, SAGA_ACT_WAIT);
	a = saga_resume(s, &cfg, &flow, 0, 0, 1, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(a.attempt, 2);
	a = call(s, a, GRPC_STATUS_ABORTED);		/* Hotel fails for good */
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_int_eq(s->steps[0].attempts, 2);
	/* The undo's attempts are its own, not the action's. */
	a = saga_resume(s, &cfg, &flow, 0, 1, 0, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_int_eq(a.attempt, 1);
	a = saga_resume(s, &cfg, &flow, 0, 1, 2, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.attempt, 3);
	saga_free(s);
}
END_TEST

START_TEST(resume_of_a_last_attempt_with_unknown_outcome_fails_the_call)
{
	struct saga		*s = saga_new("r4", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	a = call(s, a, GRPC_STATUS_OK);
	/* Flight's 3rd call (retries = 2) was made, then its worker died. */
	for (int i = 0; i < 3; i++)
		saga_step_begin(s, &a, 5);
	a = saga_resume(s, &cfg, &flow, 1, 0, 2, 0, 6, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(a.attempt, 3);		/* one left: retry */
	ck_assert_int_eq(a.compensate, 0);
	a = saga_resume(s, &cfg, &flow, 1, 0, 3, 0, 6, &rng, &changed);
	ck_assert_int_eq(changed, 1);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);		/* Flight's undo first */
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_FAILED);
	ck_assert_ptr_nonnull(strstr(s->error, "outcome is unknown"));
	saga_free(s);
}
END_TEST

START_TEST(resume_of_a_first_delivery_makes_the_call_its_publisher_started)
{
	struct saga		*s = saga_new("r6", &cfg, &flow, 0, 1);
	struct saga_action	 a;
	int			 changed;

	/* The create recorded Hotel's start in the record alone. */
	a = saga_resume(s, &cfg, &flow, 0, 0, 1, 1, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(a.begun, 1);
	ck_assert_int_eq(changed, 0);
	ck_assert_int_eq(s->state, SAGA_STATE_RUNNING);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_RUNNING);
	ck_assert_int_eq(s->steps[0].attempts, 1);
	/* Hotel's result was written with Flight's start. */
	a = call(s, a, GRPC_STATUS_OK);
	saga_step_begin(s, &a, 6);
	a = saga_resume(s, &cfg, &flow, 1, 0, 1, 1, 7, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(a.begun, 1);
	ck_assert_int_eq(changed, 0);
	ck_assert_int_eq(s->steps[1].attempts, 1);
	saga_free(s);
}
END_TEST

START_TEST(resume_of_redelivered_work_counts_its_recorded_start_as_made)
{
	struct saga		*s = saga_new("r9", &cfg, &flow, 0, 1);
	struct saga_action	 a;
	int			 changed;

	a = saga_resume(s, &cfg, &flow, 0, 0, 1, 0, 5, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.attempt, 2);
	ck_assert_int_eq(a.begun, 0);
	ck_assert_int_eq(s->steps[0].attempts, 1);
	saga_free(s);
}
END_TEST

START_TEST(resume_of_a_first_delivery_makes_the_undo_its_publisher_started)
{
	struct saga		*s = saga_new("r7", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_ABORTED);	/* Flight fails */
	ck_assert_int_eq(a.compensate, 1);
	saga_step_begin(s, &a, 5);		/* written with the failure */
	a = saga_resume(s, &cfg, &flow, 1, 1, 1, 1, 6, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 1);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_int_eq(a.attempt, 1);
	ck_assert_int_eq(a.begun, 1);
	saga_free(s);
}
END_TEST

START_TEST(resume_of_redelivered_work_ends_once_its_starts_are_used_up)
{
	struct saga		*s = saga_new("r8", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	/* Hotel (retries = 2) started three times, each worker died. */
	for (int i = 0; i < 3; i++)
		saga_step_begin(s, &a, 2);
	a = saga_resume(s, &cfg, &flow, 0, 0, 3, 0, 5, &rng, &changed);
	ck_assert_int_eq(changed, 1);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_int_eq(a.begun, 0);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_FAILED);
	saga_free(s);
}
END_TEST

START_TEST(resume_after_a_recorded_undo_goes_to_the_next_undo)
{
	struct saga		*s = saga_new("r5", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);
	int			 changed;

	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_ABORTED);	/* Flight fails */
	a = call(s, a, GRPC_STATUS_OK);		/* Flight undone */
	ck_assert_uint_eq(a.step, 0);
	a = saga_resume(s, &cfg, &flow, 1, 1, 1, 0, 7, &rng, &changed);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);
	ck_assert_int_eq(a.compensate, 1);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

/* Issue 12: 100k distinct keys cost the master 16.9 s of CPU, quadratic. */
START_TEST(context_insertion_is_constant_time)
{
	struct saga	*s = saga_new("ctx", &cfg, &flow, 0, 1000), *d;
	char		 key[32];
	clock_t		 t0 = clock();

	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		saga_ctx_set(s, key, "v", 1);
	}
	saga_ctx_set(s, "k5", "again", 5);	/* replaces, keeps its place */
	ck_assert_uint_eq(s->nctx, 100000);
	ck_assert_str_eq(s->ctx[0].key, "k0");
	ck_assert_str_eq(s->ctx[99999].key, "k99999");
	ck_assert_str_eq((char *)saga_ctx_get(s, "k5")->value, "again");
	ck_assert_str_eq(s->ctx[5].key, "k5");
	ck_assert_ptr_null(saga_ctx_get(s, "k100000"));
	d = saga_dup(s);
	ck_assert_str_eq((char *)saga_ctx_get(d, "k99999")->value, "v");
	saga_ctx_set(d, "new", "n", 1);
	ck_assert_uint_eq(d->nctx, 100001);
	ck_assert_ptr_null(saga_ctx_get(s, "new"));
	/* The old scan took seconds; this takes milliseconds. */
	ck_assert_msg(clock() - t0 < CLOCKS_PER_SEC / 2, "%.2f s of CPU",
	    (double)(clock() - t0) / CLOCKS_PER_SEC);
	saga_free(d);
	saga_free(s);
}
END_TEST

START_TEST(reply_past_max_context_entries_fails_the_step)
{
	struct saga		*s = saga_new("big", &cfg, &flow, 0, 1000);
	struct saga_kv		 reply[2] = {
		{ .key = (char *)(uintptr_t)"a", .value = (uint8_t *)"1",
		  .len = 1 },
		{ .key = (char *)(uintptr_t)"b", .value = (uint8_t *)"2",
		  .len = 1 } };
	struct saga_action	 a = { .kind = SAGA_ACT_CALL, .step = 0,
				    .attempt = 1 };

	cfg.limits.max_context_entries = 3;
	saga_ctx_set(s, "x", "0", 1);
	saga_ctx_set(s, "a", "0", 1);	/* "a" replaces: it counts once */
	ck_assert_uint_eq(saga_ctx_new_keys(s, reply, 2), 1);
	saga_step_begin(s, &a, 1000);
	a = saga_step_end(s, &cfg, &flow, &a, GRPC_STATUS_OK, NULL, reply, 2,
	    2000, &rng);
	ck_assert_int_eq(s->steps[0].state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(s->nctx, 3);
	reply[0].key = (char *)(uintptr_t)"c";
	saga_step_begin(s, &a, 3000);
	a = saga_step_end(s, &cfg, &flow, &a, GRPC_STATUS_OK, NULL, reply, 2,
	    4000, &rng);
	/* Not merged; the step failed and is compensated with the first. */
	ck_assert_uint_eq(s->nctx, 3);
	ck_assert_ptr_null(saga_ctx_get(s, "c"));
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_FAILED);
	ck_assert_ptr_nonnull(strstr(s->steps[1].error,
	    "max_context_entries (3)"));
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_int_eq(a.compensate, 1);
	ck_assert_uint_eq(a.step, 1);
	saga_free(s);
}
END_TEST

START_TEST(pack_and_unpack_round_trip)
{
	struct saga		*s = saga_new("id9", &cfg, &flow,
				    SAGA_MODE_ASYNC, 123);
	struct saga		*u;
	struct saga_action	 a = saga_first(s);
	uint8_t			*buf;
	size_t			 len;
	char			 err[128];

	saga_ctx_set(s, "bin", "\0\1\2\377", 4);
	a = call(s, a, GRPC_STATUS_OK);
	(void)call(s, a, GRPC_STATUS_ABORTED);
	buf = saga_pack(s, &len);
	u = saga_unpack(buf, len, err, sizeof(err));
	ck_assert_ptr_nonnull(u);
	ck_assert_str_eq(u->id, "id9");
	ck_assert_str_eq(u->flow, "Trip");
	ck_assert_int_eq(u->mode, SAGA_MODE_ASYNC);
	ck_assert_int_eq(u->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(u->created_ms, 123);
	ck_assert_uint_eq(u->nctx, 1);
	ck_assert_uint_eq(u->ctx[0].len, 4);
	ck_assert_mem_eq(u->ctx[0].value, "\0\1\2\377", 4);
	ck_assert_uint_eq(u->nsteps, 3);
	ck_assert_int_eq(u->steps[1].state, SAGA_STATE_FAILED);
	ck_assert_str_eq(u->steps[1].error, "ABORTED: msg");
	ck_assert_ptr_null(u->steps[2].error);
	ck_assert_str_eq(u->error, s->error);
	free(buf);
	saga_free(u);
	ck_assert_ptr_null(saga_unpack((const uint8_t *)"\xff\xff", 2, err,
	    sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "saga.v1.Saga"));
	saga_free(s);
}
END_TEST

START_TEST(dup_is_deep)
{
	struct saga *s = saga_new("idA", &cfg, &flow, 0, 1), *d;

	saga_ctx_set(s, "k", "v", 1);
	d = saga_dup(s);
	saga_ctx_set(s, "k", "w", 1);
	ck_assert_mem_eq(d->ctx[0].value, "v", 1);
	saga_free(s);
	ck_assert_str_eq(d->steps[2].name, "Car");
	saga_free(d);
}
END_TEST

START_TEST(json_follows_the_proto3_mapping)
{
	struct saga		*s = saga_new("id\"B", &cfg, &flow,
				    SAGA_MODE_ASYNC, 5);
	struct saga_action	 a = saga_first(s);
	char			*j;

	saga_ctx_set(s, "k", "\0\1\2", 3);
	a = call(s, a, GRPC_STATUS_OK);
	(void)call(s, a, GRPC_STATUS_ABORTED);
	j = saga_to_json(s, NULL);
	ck_assert_ptr_nonnull(strstr(j, "{\"id\":\"id\\\"B\",\"flow\":\"Trip\","
	    "\"mode\":\"MODE_ASYNC\",\"state\":\"STATE_COMPENSATING\","
	    "\"context\":{\"k\":\"AAEC\"},\"steps\":[{\"name\":\"Hotel\","
	    "\"state\":\"STATE_COMPLETED\",\"attempts\":1,\"error\":\"\","
	    "\"startedUnixMs\":\"1000\",\"finishedUnixMs\":\"2000\"}"));
	ck_assert_ptr_nonnull(strstr(j, "\"error\":\"Flight: ABORTED: msg\","
	    "\"createdUnixMs\":\"5\",\"updatedUnixMs\":\"2000\"}"));
	free(j);
	saga_free(s);
}
END_TEST

START_TEST(unsent_action_is_not_compensated_but_earlier_steps_are)
{
	struct saga		*s = saga_new("idU", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);			/* Hotel done */
	saga_step_begin(s, &a, 5);			/* Flight: no request */
	a = saga_step_unsent(s, &cfg, &flow, &a, "raw request: no \"x\"", 6);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_COMPENSATED);
	ck_assert_str_eq(s->steps[1].error,
	    "INVALID_ARGUMENT: raw request: no \"x\" (not sent)");
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATING);
	ck_assert_int_eq(a.kind, SAGA_ACT_CALL);
	ck_assert_uint_eq(a.step, 0);			/* Hotel is undone */
	ck_assert_int_eq(a.compensate, 1);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
	saga_free(s);
}
END_TEST

START_TEST(unsent_compensation_fails_the_saga)
{
	struct saga		*s = saga_new("idV", &cfg, &flow, 0, 1);
	struct saga_action	 a = saga_first(s);

	a = call(s, a, GRPC_STATUS_OK);
	a = call(s, a, GRPC_STATUS_ABORTED);		/* Flight fails */
	ck_assert_int_eq(a.compensate, 1);
	saga_step_begin(s, &a, 5);
	a = saga_step_unsent(s, &cfg, &flow, &a, "no key", 6);
	ck_assert_int_eq(s->steps[1].state, SAGA_STATE_FAILED);
	ck_assert_uint_eq(a.step, 0);
	a = call(s, a, GRPC_STATUS_OK);
	ck_assert_int_eq(a.kind, SAGA_ACT_END);
	ck_assert_int_eq(s->state, SAGA_STATE_FAILED);
	ck_assert_ptr_nonnull(strstr(s->error, "compensation of Flight failed"));
	saga_free(s);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("saga");
	TCase	*tc = tcase_create("rules");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, classify_follows_the_contract);
	tcase_add_test(tc, backoff_grows_and_stays_within_bounds);
	tcase_add_test(tc, all_steps_complete_in_order_and_pass_context);
	tcase_add_test(tc,
	    business_failure_compensates_in_reverse_including_failed_step);
	tcase_add_test(tc, failed_step_keeps_its_error_once_undone);
	tcase_add_test(tc, transient_failure_is_retried_then_compensated);
	tcase_add_test(tc, retry_then_success_continues);
	tcase_add_test(tc,
	    exhausted_compensation_fails_the_saga_but_undoes_the_rest);
	tcase_add_test(tc, step_without_compensation_is_skipped);
	tcase_add_test(tc,
	    recovery_of_a_running_saga_compensates_from_the_last_started);
	tcase_add_test(tc, recovery_resumes_a_compensation_under_way);
	tcase_add_test(tc, resume_of_a_new_saga_calls_its_first_step_once);
	tcase_add_test(tc, resume_after_a_recorded_result_goes_to_what_follows);
	tcase_add_test(tc, resume_counts_attempts_per_phase);
	tcase_add_test(tc,
	    resume_of_a_last_attempt_with_unknown_outcome_fails_the_call);
	tcase_add_test(tc, resume_after_a_recorded_undo_goes_to_the_next_undo);
	tcase_add_test(tc,
	    resume_of_a_first_delivery_makes_the_call_its_publisher_started);
	tcase_add_test(tc,
	    resume_of_a_first_delivery_makes_the_undo_its_publisher_started);
	tcase_add_test(tc,
	    resume_of_redelivered_work_counts_its_recorded_start_as_made);
	tcase_add_test(tc,
	    resume_of_redelivered_work_ends_once_its_starts_are_used_up);
	tcase_add_test(tc, pack_and_unpack_round_trip);
	tcase_add_test(tc, context_insertion_is_constant_time);
	tcase_add_test(tc, reply_past_max_context_entries_fails_the_step);
	tcase_add_test(tc, dup_is_deep);
	tcase_add_test(tc, json_follows_the_proto3_mapping);
	tcase_add_test(tc,
	    unsent_action_is_not_compensated_but_earlier_steps_are);
	tcase_add_test(tc, unsent_compensation_fails_the_saga);
	suite_add_tcase(s, tc);
	return check_run(s);
}
