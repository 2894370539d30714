/*
 * check_json.c - the one JSON string writer (src/json.c) and the JSON built
 * with it: escaping per RFC 8259, UTF-8 kept, the exact bytes saga_to_json
 * has always sent (callbacks and `sagactl --json` depend on them), and the
 * lines `sagactl watch --json` prints for an event whose error holds a quote
 * and a newline, and for a failed call. Strings are captured with
 * open_memstream: no I/O.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "ctl.h"
#include "grpc/grpc.h"
#include "json.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"

/* Static: GCC takes a local handed to open_memstream for dangling. */
static char	*cap_buf;
static size_t	 cap_len;

static FILE *
cap_open(void)
{
	FILE *fp;

	cap_buf = NULL;
	fp = open_memstream(&cap_buf, &cap_len);
	ck_assert_ptr_nonnull(fp);
	return fp;
}

static char *
cap_close(FILE *fp)
{
	fclose(fp);
	return cap_buf;
}

static char *
quoted(const char *s)
{
	FILE *fp = cap_open();

	json_write_string(fp, s);
	return cap_close(fp);
}

/*
 * The escaping saga.c wrote before json.c existed, kept here verbatim as
 * the reference the one writer must match byte for byte.
 */
static void
old_saga_json_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", fp);
		else if (c < 0x20)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);	/* UTF-8 passes through */
	}
	fputc('"', fp);
}

START_TEST(plain_strings_are_quoted_unchanged)
{
	char *j = quoted("CreateOrder");

	ck_assert_str_eq(j, "\"CreateOrder\"");
	free(j);
	j = quoted("");
	ck_assert_str_eq(j, "\"\"");
	free(j);
}
END_TEST

START_TEST(null_is_the_empty_string)
{
	char *j = quoted(NULL);

	ck_assert_str_eq(j, "\"\"");
	free(j);
}
END_TEST

START_TEST(quote_and_backslash_are_escaped)
{
	char *j = quoted("say \"no\" to C:\\tmp");

	ck_assert_str_eq(j, "\"say \\\"no\\\" to C:\\\\tmp\"");
	free(j);
}
END_TEST

START_TEST(control_characters_are_escaped)
{
	char *j = quoted("a\nb\tc\rd\001e\037f");

	ck_assert_str_eq(j,
	    "\"a\\nb\\u0009c\\u000dd\\u0001e\\u001ff\"");
	free(j);
}
END_TEST

START_TEST(utf8_and_del_pass_through)
{
	/* "é", "€", "😀", and DEL, which RFC 8259 does not ask to escape. */
	const char	*s = "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f";
	char		*j = quoted(s);
	char		 want[64];

	snprintf(want, sizeof(want), "\"%s\"", s);
	ck_assert_str_eq(j, want);
	free(j);
}
END_TEST

START_TEST(counted_strings_escape_nul)
{
	FILE	*fp = cap_open();
	char	*j;

	json_write_stringn(fp, "a\0b\"", 4);
	j = cap_close(fp);
	ck_assert_str_eq(j, "\"a\\u0000b\\\"\"");
	free(j);
}
END_TEST

START_TEST(every_byte_is_written_as_saga_json_always_did)
{
	char	 s[3] = { 'x', 0, 0 };
	char	*a, *b;
	FILE	*fp;

	for (int c = 1; c < 256; c++) {
		s[1] = (char)c;
		a = quoted(s);
		fp = cap_open();
		old_saga_json_str(fp, s);
		b = cap_close(fp);
		ck_assert_msg(strcmp(a, b) == 0, "byte 0x%02x: %s, was %s",
		    c, a, b);
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(saga_json_is_byte_identical)
{
	static struct config_service	svc = { .name = (char *)(uintptr_t)"s" };
	static struct config_node	node = {
		.name = (char *)(uintptr_t)"Pay",
		.action = (char *)(uintptr_t)"/x.X/Do",
	};
	static size_t			step0;
	static struct config_flow	flow = { .name = (char *)(uintptr_t)"F",
					    .mode = SAGA_MODE_SYNC,
					    .steps = &step0, .nsteps = 1 };
	struct config			cfg = { .services = &svc, .nservices = 1,
					    .nodes = &node, .nnodes = 1,
					    .flows = &flow, .nflows = 1 };
	struct saga			*s;
	char				*j;

	s = saga_new("id-1", &cfg, &flow, SAGA_MODE_SYNC, 7);
	saga_ctx_set(s, "k\"", "\xff\0", 2);
	s->state = SAGA_STATE_COMPENSATED;
	s->steps[0].state = SAGA_STATE_COMPENSATED;
	s->steps[0].attempts = 2;
	s->steps[0].error = strdup("ABORTED: card \"4242\"\nrefused\t\xc3\xa9");
	s->steps[0].started_ms = 8;
	s->steps[0].finished_ms = 9;
	s->error = strdup("Pay: ABORTED: card \"4242\"\nrefused\t\xc3\xa9");
	s->updated_ms = 10;
	j = saga_to_json(s, NULL);
	ck_assert_str_eq(j,
	    "{\"id\":\"id-1\",\"flow\":\"F\",\"mode\":\"MODE_SYNC\","
	    "\"state\":\"STATE_COMPENSATED\",\"context\":{\"k\\\"\":\"/wA=\"},"
	    "\"steps\":[{\"name\":\"Pay\",\"state\":\"STATE_COMPENSATED\","
	    "\"attempts\":2,\"error\":\"ABORTED: card \\\"4242\\\"\\nrefused"
	    "\\u0009\xc3\xa9\",\"startedUnixMs\":\"8\",\"finishedUnixMs\":\"9\"}],"
	    "\"error\":\"Pay: ABORTED: card \\\"4242\\\"\\nrefused\\u0009\xc3\xa9\","
	    "\"createdUnixMs\":\"7\",\"updatedUnixMs\":\"10\"}");
	free(j);
	saga_free(s);
}
END_TEST

START_TEST(watch_json_escapes_the_error)
{
	Saga__V1__SagaEvent	 ev;
	FILE			*fp = cap_open();
	char			*j;

	saga__v1__saga_event__init(&ev);
	ev.saga_id = (char *)(uintptr_t)"w-1";
	ev.step = (char *)(uintptr_t)"CreatePayment";
	ev.state = SAGA__V1__STATE__STATE_COMPENSATED;
	ev.error = (char *)(uintptr_t)"ABORTED: card \"4242\"\nrefused";
	ev.attempt = 1;
	ev.unix_ms = 1234;
	ctl_print_event_json(fp, &ev);
	j = cap_close(fp);
	ck_assert_str_eq(j,
	    "{\"sagaId\":\"w-1\",\"step\":\"CreatePayment\","
	    "\"state\":\"STATE_COMPENSATED\","
	    "\"error\":\"ABORTED: card \\\"4242\\\"\\nrefused\","
	    "\"attempt\":1,\"unixMs\":\"1234\"}\n");
	free(j);
}
END_TEST

START_TEST(error_json_escapes_the_message)
{
	FILE	*fp = cap_open();
	char	*j;

	ctl_print_error_json(fp, GRPC_STATUS_INVALID_ARGUMENT,
	    "flow \"X\"\nunknown");
	j = cap_close(fp);
	ck_assert_str_eq(j, "{\"error\":{\"code\":\"INVALID_ARGUMENT\","
	    "\"message\":\"flow \\\"X\\\"\\nunknown\"}}\n");
	free(j);
}
END_TEST

static Suite *
json_suite(void)
{
	Suite	*s = suite_create("json");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, plain_strings_are_quoted_unchanged);
	tcase_add_test(tc, null_is_the_empty_string);
	tcase_add_test(tc, quote_and_backslash_are_escaped);
	tcase_add_test(tc, control_characters_are_escaped);
	tcase_add_test(tc, utf8_and_del_pass_through);
	tcase_add_test(tc, counted_strings_escape_nul);
	tcase_add_test(tc, every_byte_is_written_as_saga_json_always_did);
	tcase_add_test(tc, saga_json_is_byte_identical);
	tcase_add_test(tc, watch_json_escapes_the_error);
	tcase_add_test(tc, error_json_escapes_the_message);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(json_suite());
}
