/*
 * check_wire.c - unit tests of src/grpc/wire.c: status names, metadata lists,
 * grpc-timeout, grpc-message percent-encoding, base64 of -bin metadata and the
 * length-prefixed framer (every split of the input, limits, flags).
 */
#include "autoconf.h"

#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_run.h"
#include "grpc/grpc.h"

/* --- status names --------------------------------------------------------- */

START_TEST(status_names_round_trip)
{
	for (int i = 0; i <= GRPC_STATUS_MAX; i++)
		ck_assert_int_eq(grpc_status_from_name(grpc_status_name(i)), i);
	ck_assert_str_eq(grpc_status_name(GRPC_STATUS_OK), "OK");
	ck_assert_str_eq(grpc_status_name(GRPC_STATUS_UNAUTHENTICATED),
	    "UNAUTHENTICATED");
	ck_assert_int_eq(grpc_status_from_name("unavailable"),
	    GRPC_STATUS_UNAVAILABLE);
}
END_TEST

START_TEST(status_name_out_of_range_is_unknown)
{
	ck_assert_str_eq(grpc_status_name(-1), "UNKNOWN");
	ck_assert_str_eq(grpc_status_name(GRPC_STATUS_MAX + 1), "UNKNOWN");
	ck_assert_int_eq(grpc_status_from_name("NOPE"), -1);
	ck_assert_int_eq(grpc_status_from_name(""), -1);
}
END_TEST

/* --- metadata ------------------------------------------------------------- */

START_TEST(md_keys_lowercased_and_found_case_insensitively)
{
	struct grpc_metadata md = { 0 };
	const struct grpc_md *m;

	grpc_md_add(&md, "X-Request-Id", "abc", 3);
	m = grpc_md_get(&md, "x-request-id");
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->key, "x-request-id");
	ck_assert_uint_eq(m->len, 3);
	ck_assert_str_eq((const char *)m->value, "abc");
	ck_assert_ptr_nonnull(grpc_md_get(&md, "X-REQUEST-ID"));
	ck_assert_ptr_null(grpc_md_get(&md, "x-request"));
	grpc_md_clear(&md);
	ck_assert_uint_eq(md.n, 0);
	ck_assert_ptr_null(md.items);
}
END_TEST

START_TEST(md_binary_values_keep_zeros)
{
	struct grpc_metadata md = { 0 };
	const struct grpc_md *m;

	grpc_md_addn(&md, "k-binXX", 5, "\0\1\0\2", 4);
	m = grpc_md_get(&md, "k-bin");
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(m->len, 4);
	ck_assert_mem_eq(m->value, "\0\1\0\2", 4);
	ck_assert_int_eq(m->value[4], 0);	/* NUL-terminated too */
	grpc_md_add(&md, "empty", NULL, 0);
	ck_assert_uint_eq(grpc_md_get(&md, "empty")->len, 0);
	grpc_md_clear(&md);
}
END_TEST

START_TEST(md_grows_and_keeps_order)
{
	struct grpc_metadata md = { 0 };
	char key[16];

	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		grpc_md_add(&md, key, key, strlen(key));
	}
	ck_assert_uint_eq(md.n, 100);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_str_eq(md.items[i].key, key);
	}
	/* The first of two equal keys wins. */
	grpc_md_add(&md, "k5", "later", 5);
	ck_assert_str_eq((const char *)grpc_md_get(&md, "k5")->value, "k5");
	grpc_md_clear(&md);
}
END_TEST

START_TEST(md_reserved_keys)
{
	static const char *reserved[] = { ":path", ":authority", "te",
	    "content-type", "grpc-timeout", "Grpc-Status", "grpc-message",
	    "user-agent", "grpc-encoding", "host", "" };
	static const char *free_keys[] = { "x-request-id", "traceparent",
	    "k-bin", "tee", "grpc", "content" };

	for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
		ck_assert_msg(grpc_md_is_reserved(reserved[i],
		    strlen(reserved[i])), "%s", reserved[i]);
	for (size_t i = 0; i < sizeof(free_keys) / sizeof(*free_keys); i++)
		ck_assert_msg(!grpc_md_is_reserved(free_keys[i],
		    strlen(free_keys[i])), "%s", free_keys[i]);
	/* keylen, not strlen, bounds the key. */
	ck_assert(grpc_md_is_reserved("tex", 2));
}
END_TEST

START_TEST(md_keys_the_server_and_client_may_send)
{
	static const char *ok[] = { "x-request-id", "traceparent", "k-bin",
	    "a.b_c-d", "0" };
	static const char *bad[] = { "", "X-Request-Id", "te", ":path",
	    "grpc-status", "content-type", "a b", "a/b", "k\xc3\xa9" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		ck_assert_msg(grpc_md_key_ok(ok[i], strlen(ok[i])), "%s", ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(!grpc_md_key_ok(bad[i], strlen(bad[i])), "%s",
		    bad[i]);
	/* keylen, not strlen, bounds the key. */
	ck_assert(grpc_md_key_ok("ab:", 2));
}
END_TEST

START_TEST(md_bin_keys_end_in_dash_bin)
{
	ck_assert(grpc_md_is_bin("k-bin", 5));
	ck_assert(grpc_md_is_bin("grpc-status-details-bin", 23));
	ck_assert(!grpc_md_is_bin("-bin", 4));		/* no name before it */
	ck_assert(!grpc_md_is_bin("k-binx", 6));
	ck_assert(grpc_md_is_bin("k-binx", 5));
}
END_TEST

START_TEST(md_text_values_are_printable_ascii_binary_anything)
{
	const uint8_t bin[] = { 0, 0xff, '\n' };

	ck_assert(grpc_md_sendable("x-request-id", 12,
	    (const uint8_t *)"abc ~", 5));
	ck_assert(grpc_md_sendable("x-request-id", 12, NULL, 0));
	ck_assert(!grpc_md_sendable("x-request-id", 12,
	    (const uint8_t *)"a\nb", 3));
	ck_assert(!grpc_md_sendable("x-request-id", 12,
	    (const uint8_t *)"\x7f", 1));
	ck_assert(!grpc_md_sendable("x-request-id", 12,
	    (const uint8_t *)"\xc3\xa9", 2));
	ck_assert(grpc_md_sendable("k-bin", 5, bin, sizeof(bin)));
	/* A good value does not make a reserved key sendable. */
	ck_assert(!grpc_md_sendable("grpc-message", 12,
	    (const uint8_t *)"x", 1));
}
END_TEST

/* --- grpc-timeout --------------------------------------------------------- */

static int64_t
tparse(const char *s)
{
	int64_t ms = -42;

	if (grpc_timeout_parse(s, strlen(s), &ms) != 0)
		return -1;
	return ms;
}

START_TEST(timeout_every_unit)
{
	ck_assert_int_eq(tparse("2H"), INT64_C(2) * 3600 * 1000);
	ck_assert_int_eq(tparse("3M"), 3 * 60 * 1000);
	ck_assert_int_eq(tparse("4S"), 4000);
	ck_assert_int_eq(tparse("5m"), 5);
	ck_assert_int_eq(tparse("6000u"), 6);
	ck_assert_int_eq(tparse("7000000n"), 7);
	ck_assert_int_eq(tparse("0m"), 0);
	ck_assert_int_eq(tparse("99999999H"), GRPC_MAX_TIMEOUT_MS);
}
END_TEST

START_TEST(timeout_sub_millisecond_rounds_up)
{
	ck_assert_int_eq(tparse("1u"), 1);
	ck_assert_int_eq(tparse("1001u"), 2);
	ck_assert_int_eq(tparse("1n"), 1);
	ck_assert_int_eq(tparse("1000001n"), 2);
	ck_assert_int_eq(tparse("0n"), 0);
}
END_TEST

START_TEST(timeout_malformed)
{
	static const char *bad[] = { "", "m", "1", "123456789m", "1x", "-1m",
	    "1.5S", " 1m", "1m ", "1 m", "0x1m", "1h", "1s", "+1m", "mm" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(tparse(bad[i]) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_int_eq(tparse("12345678m"), 12345678);
}
END_TEST

START_TEST(timeout_format_fits_and_never_shortens)
{
	static const int64_t vals[] = { 0, 1, 999, 1000, 99999999,
	    100000000, 99999999000, 99999999001, 99999999999, 100000000000,
	    INT64_C(99999999) * 60000, INT64_C(99999999) * 60000 + 1,
	    GRPC_MAX_TIMEOUT_MS };
	char buf[32];

	for (size_t i = 0; i < sizeof(vals) / sizeof(*vals); i++) {
		int64_t back;

		grpc_timeout_format(vals[i], buf, sizeof(buf));
		ck_assert_msg(strlen(buf) <= 9, "%lld -> %s",
		    (long long)vals[i], buf);
		ck_assert_msg(grpc_timeout_parse(buf, strlen(buf), &back) == 0,
		    "%s does not parse", buf);
		ck_assert_msg(back >= vals[i], "%lld -> %s -> %lld",
		    (long long)vals[i], buf, (long long)back);
	}
	grpc_timeout_format(-5, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0m");
	grpc_timeout_format(1500, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1500m");
	grpc_timeout_format(INT64_MAX, buf, sizeof(buf));
	ck_assert_str_eq(buf, "99999999H");
}
END_TEST

/* --- percent-encoding ----------------------------------------------------- */

START_TEST(percent_ascii_passes_through)
{
	char *e = grpc_percent_encode("hello, world ~!", 15);

	ck_assert_str_eq(e, "hello, world ~!");
	free(e);
}
END_TEST

START_TEST(percent_encodes_percent_controls_and_utf8)
{
	const char *in = "100% \xc3\xa9\n\x7f";
	char *e = grpc_percent_encode(in, strlen(in)), *d;

	ck_assert_str_eq(e, "100%25 %C3%A9%0A%7F");
	d = grpc_percent_decode(e, strlen(e));
	ck_assert_str_eq(d, in);
	free(e);
	free(d);
}
END_TEST

START_TEST(percent_round_trip_every_byte)
{
	char in[255], *e, *d;

	for (int i = 0; i < 255; i++)
		in[i] = (char)(i + 1);	/* every byte but NUL */
	e = grpc_percent_encode(in, sizeof(in));
	for (char *p = e; *p != '\0'; p++)
		ck_assert(*p >= 0x20 && *p <= 0x7e);
	d = grpc_percent_decode(e, strlen(e));
	ck_assert_uint_eq(strlen(d), sizeof(in));
	ck_assert_mem_eq(d, in, sizeof(in));
	free(e);
	free(d);
}
END_TEST

START_TEST(percent_decode_keeps_malformed_escapes)
{
	static const char *cases[][2] = {
		{ "%", "%" }, { "%4", "%4" }, { "a%zzb", "a%zzb" },
		{ "%e2%9c%93", "\xe2\x9c\x93" }, { "%41%", "A%" },
		{ "%%41", "%A" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *d = grpc_percent_decode(cases[i][0], strlen(cases[i][0]));
		ck_assert_str_eq(d, cases[i][1]);
		free(d);
	}
}
END_TEST

/* --- base64 --------------------------------------------------------------- */

static const char *rfc4648[][2] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

START_TEST(b64_encode_padded)
{
	for (size_t i = 0; i < sizeof(rfc4648) / sizeof(*rfc4648); i++) {
		size_t len;
		char *e = grpc_b64_encode((const uint8_t *)rfc4648[i][0],
		    strlen(rfc4648[i][0]), &len);
		ck_assert_str_eq(e, rfc4648[i][1]);
		ck_assert_uint_eq(len, strlen(rfc4648[i][1]));
		free(e);
	}
}
END_TEST

START_TEST(b64_decode_padded_and_unpadded)
{
	for (size_t i = 0; i < sizeof(rfc4648) / sizeof(*rfc4648); i++) {
		char unpadded[16];
		uint8_t *out;
		size_t len, n = strlen(rfc4648[i][1]);

		ck_assert_int_eq(grpc_b64_decode(rfc4648[i][1], n, &out,
		    &len), 0);
		ck_assert_uint_eq(len, strlen(rfc4648[i][0]));
		ck_assert_mem_eq(out, rfc4648[i][0], len);
		free(out);
		while (n > 0 && rfc4648[i][1][n - 1] == '=')
			n--;
		memcpy(unpadded, rfc4648[i][1], n);
		ck_assert_int_eq(grpc_b64_decode(unpadded, n, &out, &len), 0);
		ck_assert_uint_eq(len, strlen(rfc4648[i][0]));
		ck_assert_mem_eq(out, rfc4648[i][0], len);
		free(out);
	}
}
END_TEST

START_TEST(b64_decode_url_safe_alphabet)
{
	uint8_t *out;
	size_t len;

	ck_assert_int_eq(grpc_b64_decode("-_8", 3, &out, &len), 0);
	ck_assert_uint_eq(len, 2);
	ck_assert_int_eq(out[0], 0xfb);
	ck_assert_int_eq(out[1], 0xff);
	free(out);
}
END_TEST

START_TEST(b64_decode_rejects_invalid)
{
	static const char *bad[] = { "Z", "Zm9vY", "Zm9v!", "Zg===", "Zg=v",
	    "Z===", "Zg=", "=", "Zm 9v", "Zm9v\n" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		uint8_t *out = NULL;
		size_t len;
		ck_assert_msg(grpc_b64_decode(bad[i], strlen(bad[i]), &out,
		    &len) == -1, "\"%s\" accepted", bad[i]);
		ck_assert_ptr_null(out);
	}
}
END_TEST

START_TEST(b64_round_trip_every_length)
{
	uint8_t in[300];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t elen, dlen;
		uint8_t *d;
		char *e = grpc_b64_encode(in, n, &elen);

		ck_assert_uint_eq(elen % 4, 0);
		ck_assert_int_eq(grpc_b64_decode(e, elen, &d, &dlen), 0);
		ck_assert_uint_eq(dlen, n);
		if (n > 0)
			ck_assert_mem_eq(d, in, n);
		free(e);
		free(d);
	}
}
END_TEST

/* --- the framer ----------------------------------------------------------- */

struct got {
	uint8_t	 buf[1 << 20];
	size_t	 len;
	size_t	 lens[64];
	int	 n;
	int	 stop_at;	/* return non-zero at this message; 0 never */
};

static int
got_cb(void *arg, const uint8_t *msg, size_t len)
{
	struct got *g = arg;

	ck_assert_uint_le(g->len + len, sizeof(g->buf));
	memcpy(g->buf + g->len, msg, len);
	g->len += len;
	g->lens[g->n++] = len;
	if (g->stop_at != 0 && g->n == g->stop_at)
		return 99;
	return 0;
}

/* Three messages, "hello", "" and "world!", framed back to back. */
static size_t
three_messages(uint8_t *out)
{
	size_t n = 0;

	grpc_frame_prefix(out + n, 5);
	memcpy(out + n + 5, "hello", 5);
	n += 10;
	grpc_frame_prefix(out + n, 0);
	n += 5;
	grpc_frame_prefix(out + n, 6);
	memcpy(out + n + 5, "world!", 6);
	n += 11;
	return n;
}

static void
assert_three(const struct got *g)
{
	ck_assert_int_eq(g->n, 3);
	ck_assert_uint_eq(g->lens[0], 5);
	ck_assert_uint_eq(g->lens[1], 0);
	ck_assert_uint_eq(g->lens[2], 6);
	ck_assert_mem_eq(g->buf, "helloworld!", 11);
}

START_TEST(framer_prefix_is_big_endian)
{
	uint8_t p[5];

	grpc_frame_prefix(p, 0x01020304);
	ck_assert_mem_eq(p, "\0\1\2\3\4", 5);
}
END_TEST

START_TEST(framer_whole_input)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[64];
	size_t n = three_messages(in);

	grpc_framer_init(&f, 0);
	ck_assert_uint_eq(f.max, GRPC_DEFAULT_MAX_RECV);
	ck_assert_int_eq(grpc_framer_feed(&f, in, n, got_cb, &g), 0);
	assert_three(&g);
	ck_assert_uint_eq(f.hdrlen, 0);
	grpc_framer_reset(&f);
}
END_TEST

START_TEST(framer_every_two_way_split)
{
	uint8_t in[64];
	size_t n = three_messages(in);

	for (size_t cut = 0; cut <= n; cut++) {
		struct grpc_framer f;
		static struct got g;

		memset(&g, 0, sizeof(g));
		grpc_framer_init(&f, 0);
		ck_assert_int_eq(grpc_framer_feed(&f, in, cut, got_cb, &g), 0);
		ck_assert_int_eq(grpc_framer_feed(&f, in + cut, n - cut,
		    got_cb, &g), 0);
		assert_three(&g);
		grpc_framer_reset(&f);
	}
}
END_TEST

START_TEST(framer_byte_by_byte)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[64];
	size_t n = three_messages(in);

	grpc_framer_init(&f, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(grpc_framer_feed(&f, in + i, 1, got_cb, &g), 0);
	assert_three(&g);
	/* Nothing half-read remains. */
	ck_assert_uint_eq(f.hdrlen, 0);
	ck_assert_ptr_null(f.msg);
}
END_TEST

START_TEST(framer_large_message_in_random_chunks)
{
	struct grpc_framer f;
	static struct got g;
	size_t len = 700 * 1000, off = 0;
	uint8_t *in = malloc(len + 5);

	grpc_frame_prefix(in, len);
	for (size_t i = 0; i < len; i++)
		in[5 + i] = (uint8_t)(i * 31);
	srandom(7);
	grpc_framer_init(&f, 0);
	while (off < len + 5) {
		size_t chunk = 1 + (size_t)random() % 20000;
		if (chunk > len + 5 - off)
			chunk = len + 5 - off;
		ck_assert_int_eq(grpc_framer_feed(&f, in + off, chunk, got_cb,
		    &g), 0);
		off += chunk;
		if (off < len + 5)
			ck_assert_int_eq(g.n, 0);
	}
	ck_assert_int_eq(g.n, 1);
	ck_assert_uint_eq(g.lens[0], len);
	ck_assert_mem_eq(g.buf, in + 5, len);
	free(in);
}
END_TEST

START_TEST(framer_oversize_is_resource_exhausted_and_sticks)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t p[5];

	grpc_framer_init(&f, 100);
	grpc_frame_prefix(p, 101);
	ck_assert_int_eq(grpc_framer_feed(&f, p, 5, got_cb, &g),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	/* A failed framer stays failed, whatever follows. */
	grpc_frame_prefix(p, 1);
	ck_assert_int_eq(grpc_framer_feed(&f, p, 5, got_cb, &g),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	ck_assert_int_eq(g.n, 0);
	grpc_framer_reset(&f);
}
END_TEST

START_TEST(framer_exactly_max_is_accepted)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[105];

	grpc_framer_init(&f, 100);
	grpc_frame_prefix(in, 100);
	memset(in + 5, 'a', 100);
	ck_assert_int_eq(grpc_framer_feed(&f, in, sizeof(in), got_cb, &g), 0);
	ck_assert_int_eq(g.n, 1);
	ck_assert_uint_eq(g.lens[0], 100);
}
END_TEST

START_TEST(framer_huge_prefix_allocates_nothing_up_front)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[5 + 10];

	/* 4 MiB promised, 10 bytes sent: the buffer follows the data. */
	grpc_framer_init(&f, 0);
	grpc_frame_prefix(in, GRPC_DEFAULT_MAX_RECV);
	memset(in + 5, 'z', 10);
	ck_assert_int_eq(grpc_framer_feed(&f, in, sizeof(in), got_cb, &g), 0);
	ck_assert_int_eq(g.n, 0);
	ck_assert_uint_eq(f.have, 10);
	ck_assert_uint_le(malloc_usable_size(f.msg), 70000);
	grpc_framer_reset(&f);
	ck_assert_ptr_null(f.msg);
}
END_TEST

START_TEST(framer_compressed_flag_is_internal)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[6] = { 1, 0, 0, 0, 1, 'x' };

	grpc_framer_init(&f, 0);
	ck_assert_int_eq(grpc_framer_feed(&f, in, sizeof(in), got_cb, &g),
	    GRPC_STATUS_INTERNAL);
	ck_assert_int_eq(g.n, 0);
	in[0] = 0x80;	/* unknown flag bits too */
	grpc_framer_init(&f, 0);
	ck_assert_int_eq(grpc_framer_feed(&f, in, sizeof(in), got_cb, &g),
	    GRPC_STATUS_INTERNAL);
}
END_TEST

START_TEST(framer_zero_length_messages)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[15] = { 0 };

	grpc_framer_init(&f, 0);
	ck_assert_int_eq(grpc_framer_feed(&f, in, 15, got_cb, &g), 0);
	ck_assert_int_eq(g.n, 3);
	ck_assert_uint_eq(g.lens[0] + g.lens[1] + g.lens[2], 0);
}
END_TEST

START_TEST(framer_callback_error_stops)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[64];
	size_t n = three_messages(in);

	g.stop_at = 2;
	grpc_framer_init(&f, 0);
	ck_assert_int_eq(grpc_framer_feed(&f, in, n, got_cb, &g), 99);
	ck_assert_int_eq(g.n, 2);
	ck_assert_int_eq(grpc_framer_feed(&f, in, n, got_cb, &g), 99);
	ck_assert_int_eq(g.n, 2);
}
END_TEST

START_TEST(framer_reset_mid_message_starts_over)
{
	struct grpc_framer f;
	static struct got g;
	uint8_t in[64];
	size_t n = three_messages(in);

	grpc_framer_init(&f, 0);
	ck_assert_int_eq(grpc_framer_feed(&f, in, 7, got_cb, &g), 0);
	grpc_framer_reset(&f);
	ck_assert_int_eq(grpc_framer_feed(&f, in, n, got_cb, &g), 0);
	assert_three(&g);
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc;

	tc = tcase_create("status");
	tcase_add_test(tc, status_names_round_trip);
	tcase_add_test(tc, status_name_out_of_range_is_unknown);
	suite_add_tcase(s, tc);

	tc = tcase_create("metadata");
	tcase_add_test(tc, md_keys_lowercased_and_found_case_insensitively);
	tcase_add_test(tc, md_binary_values_keep_zeros);
	tcase_add_test(tc, md_grows_and_keeps_order);
	tcase_add_test(tc, md_keys_the_server_and_client_may_send);
	tcase_add_test(tc, md_bin_keys_end_in_dash_bin);
	tcase_add_test(tc, md_text_values_are_printable_ascii_binary_anything);
	tcase_add_test(tc, md_reserved_keys);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeout");
	tcase_add_test(tc, timeout_every_unit);
	tcase_add_test(tc, timeout_sub_millisecond_rounds_up);
	tcase_add_test(tc, timeout_malformed);
	tcase_add_test(tc, timeout_format_fits_and_never_shortens);
	suite_add_tcase(s, tc);

	tc = tcase_create("percent");
	tcase_add_test(tc, percent_ascii_passes_through);
	tcase_add_test(tc, percent_encodes_percent_controls_and_utf8);
	tcase_add_test(tc, percent_round_trip_every_byte);
	tcase_add_test(tc, percent_decode_keeps_malformed_escapes);
	suite_add_tcase(s, tc);

	tc = tcase_create("base64");
	tcase_add_test(tc, b64_encode_padded);
	tcase_add_test(tc, b64_decode_padded_and_unpadded);
	tcase_add_test(tc, b64_decode_url_safe_alphabet);
	tcase_add_test(tc, b64_decode_rejects_invalid);
	tcase_add_test(tc, b64_round_trip_every_length);
	suite_add_tcase(s, tc);

	tc = tcase_create("framer");
	tcase_add_test(tc, framer_prefix_is_big_endian);
	tcase_add_test(tc, framer_whole_input);
	tcase_add_test(tc, framer_every_two_way_split);
	tcase_add_test(tc, framer_byte_by_byte);
	tcase_add_test(tc, framer_large_message_in_random_chunks);
	tcase_add_test(tc, framer_oversize_is_resource_exhausted_and_sticks);
	tcase_add_test(tc, framer_exactly_max_is_accepted);
	tcase_add_test(tc, framer_huge_prefix_allocates_nothing_up_front);
	tcase_add_test(tc, framer_compressed_flag_is_internal);
	tcase_add_test(tc, framer_zero_length_messages);
	tcase_add_test(tc, framer_callback_error_stops);
	tcase_add_test(tc, framer_reset_mid_message_starts_over);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(wire_suite());
}
