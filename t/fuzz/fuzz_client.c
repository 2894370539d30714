/*
 * fuzz_client.c - a libFuzzer target for the step client's reply path: the
 * input is what a participant's server sends after its SETTINGS (prepended),
 * so the fuzzer spends its time on the client's HTTP/2 frames, HPACK, gRPC
 * framing of replies, trailers and statuses. A unary call and a streaming
 * call go out on one loopback connection (the client has no other
 * transport); every input gets a fresh client, freed at the end. FUZZ_DEBUG
 * set: how each call ended, on stderr.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "grpc/client.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct event_base *base;
static int lfd = -1, lport;

static void
done_cb(void *arg, const struct grpc_client_result *r)
{
	(*(int *)arg)++;
	if (getenv("FUZZ_DEBUG") != NULL)
		fprintf(stderr, "status %d %s\n", r->status, r->message);
	/* Read what a step's caller reads. */
	if (r->data != NULL && r->len > 0)
		(void)r->data[r->len - 1];
	(void)strlen(r->message);
}

static void
msg_cb(void *arg SAGAD_UNUSED, const uint8_t *msg, size_t len)
{
	if (len > 0)
		(void)msg[len - 1];
}

static int
listen_once(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) ==
	    -1 || listen(lfd, 16) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) == -1)
		return -1;
	lport = ntohs(sin.sin_port);
	return fcntl(lfd, F_SETFL, O_NONBLOCK);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An empty SETTINGS frame: the server's preface. */
	static const uint8_t settings[9] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	struct grpc_client_opts opts;
	struct grpc_client *cli;
	struct grpc_channel *ch;
	struct pollfd pfd;
	char err[256], buf[65536];
	int fd = -1, done = 0;

	if (base == NULL) {
		/* The client closes on bad input: writes must not kill us. */
		signal(SIGPIPE, SIG_IGN);
		base = event_base_new();
		if (listen_once() == -1)
			abort();
	}
	/* A reconnect of the last input's client may wait: not ours. */
	while ((fd = accept(lfd, NULL, NULL)) != -1)
		close(fd);
	memset(&opts, 0, sizeof(opts));
	opts.max_recv = 64 * 1024;	/* reach the limit cheaply */
	cli = grpc_client_new(base, &opts, err, sizeof(err));
	ch = grpc_client_channel(cli, "127.0.0.1", lport);
	grpc_client_call_start(ch, "/t.S/Unary", (const uint8_t *)"req", 3,
	    NULL, 1000, done_cb, &done);
	grpc_client_stream_start(ch, "/t.S/Stream", NULL, 0, NULL, 1000,
	    msg_cb, done_cb, &done);
	for (int i = 0; i < 50 && fd == -1; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		pfd.fd = lfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 1) == 1)
			fd = accept(lfd, NULL, NULL);
	}
	if (fd != -1) {
		fcntl(fd, F_SETFL, O_NONBLOCK);
		(void)!write(fd, settings, sizeof(settings));
		/*
		 * Let the client see our SETTINGS and open its streams first:
		 * replies to streams it has not opened would only test that
		 * nghttp2 refuses them.
		 */
		for (int i = 0; i < 20; i++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			while (read(fd, buf, sizeof(buf)) > 0)
				;
			pfd.fd = fd;
			pfd.events = POLLIN;
			(void)poll(&pfd, 1, i < 4 ? 1 : 0);
		}
		for (size_t off = 0; off < size;) {
			ssize_t w = write(fd, data + off, size - off);

			if (w == -1 && errno != EAGAIN)
				break;		/* the client hung up */
			if (w <= 0) {
				event_base_loop(base, EVLOOP_NONBLOCK);
				while (read(fd, buf, sizeof(buf)) > 0)
					;
				continue;
			}
			off += (size_t)w;
		}
		for (int i = 0; i < 16; i++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			while (read(fd, buf, sizeof(buf)) > 0)
				;
		}
		close(fd);
		for (int i = 0; i < 4; i++)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	if (getenv("FUZZ_DEBUG") != NULL)
		fprintf(stderr, "accepted %d, calls ended %d\n", fd != -1, done);
	grpc_client_free(cli);
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
