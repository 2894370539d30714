/*
 * check_json.c - the one JSON string writer (src/json.c) and the JSON built
 * with it: escaping per RFC 8259, UTF-8 kept, the exact bytes saga_to_json
 * has always sent (callbacks and `sagactl --json` depend on them), and the
 * lines `sagactl watch --json` prints for an event whose error holds a quote
 * and a newline, and for a failed call. Strings are captured with
 * open_memstream: no I/O.
 */
#include "autoconf.h"

#include <limits.h>

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "ctl.h"
#include "grpc/grpc.h"
#include "http_json.h"
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

START_TEST(json_buf_writes_integers_and_grows)
{
	struct json_buf	 b = { NULL, 0, 0 };
	char		 big[1000], want[64];

	json_buf_int(&b, 0);
	json_buf_put(&b, " ", 1);
	json_buf_int(&b, -42);
	json_buf_put(&b, " ", 1);
	json_buf_int(&b, LLONG_MAX);
	json_buf_put(&b, " ", 1);
	json_buf_int(&b, LLONG_MIN);
	snprintf(want, sizeof(want), "0 -42 %lld %lld", LLONG_MAX, LLONG_MIN);
	ck_assert_str_eq(b.p, want);
	free(b.p);

	/* 1000 control bytes: six each, past every earlier capacity. */
	memset(big, 1, sizeof(big));
	memset(&b, 0, sizeof(b));
	json_buf_string(&b, big, sizeof(big));
	ck_assert_uint_eq(b.len, 6 * sizeof(big) + 2);
	ck_assert_int_eq(memcmp(b.p, "\"\\u0001\\u0001", 13), 0);
	ck_assert_str_eq(b.p + b.len - 7, "\\u0001\"");
	free(b.p);
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

/* --- the reader ------------------------------------------------------------ */

static struct json_value *
parse(const char *text)
{
	static char perr[256];

	return json_parse(text, strlen(text), perr, sizeof(perr));
}

START_TEST(reader_reads_every_kind_of_value)
{
	struct json_value *v = parse(" {\"a\": [1, -2.5e3, true, false, "
	    "null], \"b\": {\"c\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\"}} ");
	const struct json_value *a, *c;

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(v->type, JSON_OBJECT);
	a = json_member(v, "a");
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->type, JSON_ARRAY);
	ck_assert_uint_eq(a->n, 5);
	ck_assert_str_eq(a->items[1].s, "-2.5e3");
	ck_assert_int_eq(a->items[2].type, JSON_TRUE);
	ck_assert_int_eq(a->items[3].type, JSON_FALSE);
	ck_assert_int_eq(a->items[4].type, JSON_NULL);
	c = json_member(json_member(v, "b"), "c");
	ck_assert_ptr_nonnull(c);
	/* é, U+1F600 from a surrogate pair, newline, quote: UTF-8. */
	ck_assert_str_eq(c->s, "x\xc3\xa9\xf0\x9f\x98\x80\n\"");
	ck_assert_ptr_null(json_member(v, "zz"));
	json_free(v);
}
END_TEST

START_TEST(reader_keeps_nul_in_strings_counted)
{
	struct json_value *v = parse("\"a\\u0000b\"");

	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(v->slen, 3);
	ck_assert_int_eq(memcmp(v->s, "a\0b", 3), 0);
	json_free(v);
}
END_TEST

START_TEST(reader_refuses_what_rfc8259_does_not_allow)
{
	static const char *bad[] = {
		"", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
		"'x'", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul",
		"\"\\x\"", "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"",
		"\"\\ud800\\u0041\"", "\"tab\there\"", "\"unterminated",
		"{\"a\":1,\"a\":2}", "1 2", "[1] x", "/* c */ 1",
		"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"",
		"NaN", "Infinity",
	};
	char e[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_value *v = json_parse(bad[i], strlen(bad[i]), e,
		    sizeof(e));

		ck_assert_msg(v == NULL, "accepted %s", bad[i]);
		ck_assert_msg(strstr(e, "invalid JSON at byte") != NULL,
		    "%s: %s", bad[i], e);
	}
}
END_TEST

START_TEST(reader_bounds_nesting)
{
	char deep[200], ok[200], e[256];
	struct json_value *v;

	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	v = json_parse(deep, sizeof(deep), e, sizeof(e));
	ck_assert_ptr_null(v);
	ck_assert_msg(strstr(e, "nested too deep") != NULL, "%s", e);
	memset(ok, '[', 60);
	memset(ok + 60, ']', 60);
	v = json_parse(ok, 120, e, sizeof(e));
	ck_assert_msg(v != NULL, "%s", e);
	json_free(v);
}
END_TEST

START_TEST(reader_reads_integers_strictly)
{
	static const struct { const char *text; int ok; long long want; } t[] = {
		{ "0", 1, 0 }, { "-7", 1, -7 }, { "\"42\"", 1, 42 },
		{ "9223372036854775807", 1, INT64_MAX },
		{ "\"-9223372036854775808\"", 1, INT64_MIN },
		{ "9223372036854775808", 0, 0 }, { "1.5", 0, 0 },
		{ "1e3", 0, 0 }, { "\"007\"", 0, 0 }, { "\"\"", 0, 0 },
		{ "\"12a\"", 0, 0 }, { "true", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct json_value *v = parse(t[i].text);
		long long out = -1;

		ck_assert_ptr_nonnull(v);
		ck_assert_msg((json_int(v, INT64_MIN, INT64_MAX, &out) == 0) ==
		    t[i].ok, "%s", t[i].text);
		if (t[i].ok)
			ck_assert_msg(out == t[i].want, "%s", t[i].text);
		json_free(v);
	}
	{
		struct json_value *v = parse("300");
		long long out;

		ck_assert_int_eq(json_int(v, 0, 255, &out), -1);
		json_free(v);
	}
}
END_TEST

/* --- protobuf's JSON mapping (http_json.c) --------------------------------- */

START_TEST(proto_json_writes_the_mapping)
{
	Saga__V1__SagaEvent	ev;
	FILE			*fp;
	char			*out;

	saga__v1__saga_event__init(&ev);
	fp = cap_open();
	ev.saga_id = "s\"1";
	ev.step = "CreateOrder";
	ev.state = SAGA__V1__STATE__STATE_FAILED;
	ev.attempt = 2;
	ev.unix_ms = INT64_C(1700000000123);
	http_json_write(fp, &ev.base);
	out = cap_close(fp);
	ck_assert_str_eq(out, "{\"sagaId\":\"s\\\"1\",\"step\":\"CreateOrder\","
	    "\"state\":\"STATE_FAILED\",\"error\":\"\",\"attempt\":2,"
	    "\"unixMs\":\"1700000000123\"}");
	free(out);
}
END_TEST

START_TEST(proto_json_round_trips_a_run_request)
{
	const char *text = "{\"flow\":\"Booking\",\"request_id\":\"r-1\","
	    "\"context\":{\"k\":\"AAEC/w==\",\"e\":\"\"},\"mode\":\"MODE_ASYNC\","
	    "\"callbackUrl\":null}";
	struct json_value	*v = parse(text);
	Saga__V1__RunRequest	*r;
	char			 e[256];

	ck_assert_ptr_nonnull(v);
	r = (Saga__V1__RunRequest *)http_json_read(
	    &saga__v1__run_request__descriptor, v, e, sizeof(e));
	json_free(v);
	ck_assert_msg(r != NULL, "%s", e);
	ck_assert_str_eq(r->flow, "Booking");
	ck_assert_str_eq(r->request_id, "r-1");
	ck_assert_int_eq(r->mode, SAGA__V1__MODE__MODE_ASYNC);
	ck_assert_str_eq(r->callback_url, "");
	ck_assert_uint_eq(r->n_context, 2);
	ck_assert_str_eq(r->context[0]->key, "k");
	ck_assert_uint_eq(r->context[0]->value.len, 4);
	ck_assert_int_eq(memcmp(r->context[0]->value.data, "\0\1\2\377", 4), 0);
	ck_assert_uint_eq(r->context[1]->value.len, 0);
	{
		FILE *fp = cap_open();
		char *out;

		http_json_write(fp, &r->base);
		out = cap_close(fp);
		ck_assert_str_eq(out, "{\"flow\":\"Booking\",\"requestId\":"
		    "\"r-1\",\"context\":{\"k\":\"AAEC/w==\",\"e\":\"\"},"
		    "\"mode\":\"MODE_ASYNC\",\"callbackUrl\":\"\"}");
		free(out);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}
END_TEST

START_TEST(proto_json_refuses_bad_fields)
{
	static const struct { const char *text, *why; } t[] = {
		{ "{\"flw\":\"x\"}", "flw: unknown field" },
		{ "{\"flow\":1}", "flow: expected a string" },
		{ "{\"mode\":\"MODE_NOPE\"}", "mode: expected a value of" },
		{ "{\"mode\":true}", "mode: expected a value of" },
		{ "{\"context\":[]}", "context: expected an object" },
		{ "{\"context\":{\"k\":\"**\"}}", "context.k: expected base64" },
		{ "{\"context\":{\"k\":5}}", "context.k: expected base64" },
		{ "[]", "body: expected an object" },
		{ "{\"flow\":\"a\",\"flow\":\"b\"}", "" },	/* the reader's */
		{ "{\"flow\":\"a\",\"flow\":\"b\"}", "" },
		{ "{\"requestId\":\"a\",\"request_id\":\"b\"}", "given twice" },
		{ "{\"flow\":\"a\\u0000b\"}", "without NUL" },
	};
	char e[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct json_value *v = json_parse(t[i].text,
		    strlen(t[i].text), e, sizeof(e));
		ProtobufCMessage *m;

		if (v == NULL)
			continue;	/* the reader refused it already */
		m = http_json_read(&saga__v1__run_request__descriptor, v, e,
		    sizeof(e));
		json_free(v);
		ck_assert_msg(m == NULL, "accepted %s", t[i].text);
		ck_assert_msg(strstr(e, t[i].why) != NULL, "%s: %s",
		    t[i].text, e);
	}
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
	tcase_add_test(tc, json_buf_writes_integers_and_grows);
	tcase_add_test(tc, watch_json_escapes_the_error);
	tcase_add_test(tc, error_json_escapes_the_message);
	tcase_add_test(tc, reader_reads_every_kind_of_value);
	tcase_add_test(tc, reader_keeps_nul_in_strings_counted);
	tcase_add_test(tc, reader_refuses_what_rfc8259_does_not_allow);
	tcase_add_test(tc, reader_bounds_nesting);
	tcase_add_test(tc, reader_reads_integers_strictly);
	tcase_add_test(tc, proto_json_writes_the_mapping);
	tcase_add_test(tc, proto_json_round_trips_a_run_request);
	tcase_add_test(tc, proto_json_refuses_bad_fields);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(json_suite());
}
