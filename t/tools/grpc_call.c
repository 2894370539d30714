/*
 * grpc_call.c - a test driver for the gRPC client (src/grpc/client.c): makes
 * calls to a real server and prints what came back, one "key=value" per
 * line, for t/grpc_client_interop.sh to check. Not installed.
 *
 *   grpc_call [options] HOST:PORT /pkg.Service/Method
 *     -t TEXT    request bytes as text        -d HEX   request bytes in hex
 *     -z N       request of N pattern bytes   -m K=V   metadata (K-bin: V in hex)
 *     -T MS      deadline per call            -n N     N concurrent calls
 *     -b TOTAL   bench: TOTAL calls, -n in flight; prints the rate
 *     -L SECS    loop: a call every -i MS (default 100) for SECS; prints statuses
 *     -s         server streaming             -c N     connections per target
 *     -q N       max queued calls             -r N     max receive size
 *     -B MS      reconnect backoff maximum
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "grpc/client.h"
#include "util.h"

static struct event_base	*base;
static struct grpc_client	*cli;
static struct grpc_channel	*ch;
static const char		*method;
static uint8_t			*req;
static size_t			 reqlen;
static struct grpc_metadata	 md;
static int64_t			 timeout_ms;
static int			 nconc = 1, streaming;
static long			 total, started, finished;
static long			 counts[GRPC_STATUS_MAX + 1];
static int64_t			 t0, maxms;
static int			 loop_secs, loop_ms = 100, mode_single = 1;
static struct event		*loop_ev;
static int			 nmsgs;

static void
usage(void)
{
	fprintf(stderr, "usage: grpc_call [-s] [-t TEXT | -d HEX | -z N] "
	    "[-m K=V]... [-T MS] [-n N] [-b TOTAL] [-L SECS [-i MS]] [-c N] "
	    "[-q N] [-r N] [-B MS] HOST:PORT METHOD\n");
	exit(2);
}

static uint8_t *
unhex(const char *s, size_t *len)
{
	size_t	 n = strlen(s) / 2;
	uint8_t	*out = util_xcalloc(1, n + 1);

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			usage();
		out[i] = (uint8_t)v;
	}
	*len = n;
	return out;
}

static void
print_hex(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		printf("%02x", p[i]);
}

static void
print_md(const char *what, const struct grpc_metadata *m)
{
	for (size_t i = 0; i < m->n; i++) {
		size_t kl = strlen(m->items[i].key);
		printf("%s %s=", what, m->items[i].key);
		if (kl > 4 && strcmp(m->items[i].key + kl - 4, "-bin") == 0)
			print_hex(m->items[i].value, m->items[i].len);
		else
			fwrite(m->items[i].value, 1, m->items[i].len, stdout);
		printf("\n");
	}
}

static void start_one(void);

static void
on_msg(void *arg, const uint8_t *msg, size_t len)
{
	(void)arg;
	nmsgs++;
	printf("msg=");
	fwrite(msg, 1, len, stdout);
	printf("\n");
}

static void
on_done(void *arg, const struct grpc_client_result *r)
{
	int64_t	start = (int64_t)(intptr_t)arg, ms = util_mono_ms() - start;

	finished++;
	if (r->status >= 0 && r->status <= GRPC_STATUS_MAX)
		counts[r->status]++;
	if (ms > maxms)
		maxms = ms;
	if (mode_single) {
		printf("status=%d %s\n", r->status,
		    grpc_status_name(r->status));
		printf("message=%s\n", r->message);
		printf("len=%zu\n", r->len);
		printf("echo=%s\n", r->len == reqlen && (reqlen == 0 ||
		    memcmp(r->data, req, reqlen) == 0) ? "yes" : "no");
		if (r->len <= 256) {
			int text = 1;
			for (size_t i = 0; i < r->len; i++)
				if (r->data[i] < 0x20 || r->data[i] == 0x7f)
					text = 0;
			printf(text ? "data=" : "hex=");
			if (text && r->len > 0)
				fwrite(r->data, 1, r->len, stdout);
			else
				print_hex(r->data, r->len);
			printf("\n");
		}
		if (streaming)
			printf("msgs=%d\n", nmsgs);
		print_md("header", r->headers);
		print_md("trailer", r->trailers);
		printf("ms=%lld\n", (long long)ms);
	} else if (loop_secs > 0) {
		printf("status=%s\n", grpc_status_name(r->status));
		if (r->status != 0)
			printf("# %s\n", r->message);
		fflush(stdout);
	}
	if (loop_secs == 0 && started < total)
		start_one();
	if (loop_secs == 0 && finished == total)
		event_base_loopbreak(base);
	if (loop_secs > 0 && finished == started &&
	    util_mono_ms() - t0 >= (int64_t)loop_secs * 1000)
		event_base_loopbreak(base);
}

static void
start_one(void)
{
	void *arg = (void *)(intptr_t)util_mono_ms();

	started++;
	if (streaming)
		grpc_client_stream_start(ch, method, req, reqlen, &md,
		    timeout_ms, on_msg, on_done, arg);
	else
		grpc_client_call_start(ch, method, req, reqlen, &md,
		    timeout_ms, on_done, arg);
}

static void
loop_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct timeval tv = { loop_ms / 1000, (loop_ms % 1000) * 1000 };

	(void)fd;
	(void)ev;
	(void)arg;
	if (util_mono_ms() - t0 >= (int64_t)loop_secs * 1000) {
		if (finished == started)
			event_base_loopbreak(base);
		return;
	}
	start_one();
	evtimer_add(loop_ev, &tv);
}

int
main(int argc, char *argv[])
{
	struct grpc_client_opts		 opts;
	struct grpc_channel_stats	 st;
	char				 host[256], err[SAGAD_ERRLEN], *eq;
	int				 port, c;
	long				 bench = 0;
	int64_t				 elapsed;

	memset(&opts, 0, sizeof(opts));
	req = util_xcalloc(1, 1);
	while ((c = getopt(argc, argv, "t:d:z:m:T:n:b:L:i:sc:q:r:B:")) != -1) {
		switch (c) {
		case 't':
			free(req);
			req = (uint8_t *)util_xstrdup(optarg);
			reqlen = strlen(optarg);
			break;
		case 'd':
			free(req);
			req = unhex(optarg, &reqlen);
			break;
		case 'z':
			free(req);
			reqlen = strtoul(optarg, NULL, 10);
			req = util_xcalloc(1, reqlen + 1);
			for (size_t i = 0; i < reqlen; i++)
				req[i] = (uint8_t)(i * 7 + i / 251);
			break;
		case 'm':
			if ((eq = strchr(optarg, '=')) == NULL)
				usage();
			*eq++ = '\0';
			if (strlen(optarg) > 4 &&
			    strcmp(optarg + strlen(optarg) - 4, "-bin") == 0) {
				size_t	 bl;
				uint8_t	*b = unhex(eq, &bl);
				grpc_md_add(&md, optarg, b, bl);
				free(b);
			} else
				grpc_md_add(&md, optarg, eq, strlen(eq));
			break;
		case 'T':
			timeout_ms = strtoll(optarg, NULL, 10);
			break;
		case 'n':
			nconc = atoi(optarg);
			break;
		case 'b':
			bench = atol(optarg);
			break;
		case 'L':
			loop_secs = atoi(optarg);
			break;
		case 'i':
			loop_ms = atoi(optarg);
			break;
		case 's':
			streaming = 1;
			break;
		case 'c':
			opts.conns_per_target = atoi(optarg);
			break;
		case 'q':
			opts.max_queued = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			opts.max_recv = strtoul(optarg, NULL, 10);
			break;
		case 'B':
			opts.backoff_max_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 2 || nconc < 1)
		usage();
	if (util_parse_hostport(argv[0], host, sizeof(host), &port, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "grpc_call: %s\n", err);
		return 2;
	}
	method = argv[1];
	if ((base = event_base_new()) == NULL ||
	    (cli = grpc_client_new(base, &opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "grpc_call: %s\n", err);
		return 1;
	}
	ch = grpc_client_channel(cli, host, port);
	t0 = util_mono_ms();
	if (loop_secs > 0) {
		mode_single = 0;
		loop_ev = evtimer_new(base, loop_tick, NULL);
		loop_tick(-1, 0, NULL);
	} else {
		total = bench > 0 ? bench : nconc;
		mode_single = total == 1;
		for (int i = 0; i < nconc && started < total; i++)
			start_one();
	}
	event_base_dispatch(base);
	elapsed = util_mono_ms() - t0;
	grpc_client_channel_stats(ch, &st);
	if (!mode_single && loop_secs == 0) {
		printf("calls=%ld\n", finished);
		for (int s = 0; s <= GRPC_STATUS_MAX; s++)
			if (counts[s] > 0)
				printf("%s=%ld\n", grpc_status_name(s),
				    counts[s]);
		printf("max_ms=%lld\n", (long long)maxms);
		if (bench > 0)
			printf("rate=%.0f\n", elapsed > 0 ?
			    finished * 1000.0 / elapsed : 0.0);
	}
	printf("connects=%llu\n", (unsigned long long)st.connects);
	if (loop_ev != NULL)
		event_free(loop_ev);
	grpc_client_free(cli);
	event_base_free(base);
	grpc_md_clear(&md);
	free(req);
	return 0;
}
