/*
 * fuzz_server.c - a libFuzzer target for the gRPC server: each input is what
 * a client sends after the HTTP/2 connection preface (which is prepended, so
 * the fuzzer spends its time on frames, HPACK, gRPC framing and protobuf
 * decoding of health requests). The server runs on a bufferevent pair in one
 * event_base; every input gets a fresh server that is freed at the end, so
 * leaks and use-after-free on every close path show up under ASan.
 *
 * Build: make fuzz (clang). Run: t/fuzz/fuzz_server CORPUS_DIR
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "grpc/server.h"
#include "health.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct event_base *base;

static void
echo(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	const struct grpc_metadata *md = grpc_call_metadata(call);
	const uint8_t *req;
	size_t len;

	for (size_t i = 0; i < md->n; i++)
		grpc_call_add_header(call, md->items[i].key,
		    md->items[i].value, md->items[i].len);
	req = grpc_call_request_raw(call, &len);
	if (len > 0 && req[0] == 's')
		grpc_call_finish(call, GRPC_STATUS_ABORTED, (const char *)"\xc3\xa9%");
	else
		grpc_call_reply_raw(call, req, len);
}

static void
stream(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	for (int i = 0; i < 3; i++)
		if (grpc_call_send_raw(call, "abc", 3) != GRPC_CALL_OK)
			break;
	grpc_call_add_trailer(call, "t-bin", "\x00\x01", 2);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void
hold_cancel(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	(*(int *)arg)++;
}

/* Never answers: only the cancel callback (deadline, reset, close) ends it. */
static void
hold(struct grpc_call *call, void *arg)
{
	grpc_call_on_cancel(call, hold_cancel, arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct grpc_server_opts opts;
	struct grpc_server *srv;
	struct health *h;
	struct bufferevent *pair[2];
	struct grpc_method m;
	char err[SAGAD_ERRLEN];
	int cancels = 0;

	if (base == NULL)
		base = event_base_new();
	memset(&opts, 0, sizeof(opts));
	opts.max_recv_msg = 64 * 1024;	/* reach the limit cheaply */
	opts.stream_queue_max = 1024;
	srv = grpc_server_new(base, &opts, err, sizeof(err));
	h = health_new(srv, err, sizeof(err));
	memset(&m, 0, sizeof(m));
	m.path = "/t.E/Echo";
	m.handler = echo;
	grpc_server_register(srv, &m, err, sizeof(err));
	m.path = "/t.E/Stream";
	m.handler = stream;
	m.server_streaming = 1;
	grpc_server_register(srv, &m, err, sizeof(err));
	m.path = "/t.E/Hold";
	m.handler = hold;
	m.arg = &cancels;
	grpc_server_register(srv, &m, err, sizeof(err));

	bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE, pair);
	grpc_server_adopt(srv, pair[1], NULL, 0);
	bufferevent_enable(pair[0], EV_READ | EV_WRITE);
	bufferevent_write(pair[0], preface, sizeof(preface) - 1);
	bufferevent_write(pair[0], data, size);
	for (int i = 0; i < 32; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		/* Drain what the server says, as a reading client would. */
		evbuffer_drain(bufferevent_get_input(pair[0]),
		    evbuffer_get_length(bufferevent_get_input(pair[0])));
	}
	if (size > 0 && data[0] == 'G') {
		/* Sometimes shut down gracefully before the end. */
		health_shutdown(h);
		grpc_server_shutdown(srv, NULL, NULL);
		for (int i = 0; i < 8; i++)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	bufferevent_free(pair[0]);
	grpc_server_free(srv);
	health_free(h);
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
