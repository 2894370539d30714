/*
 * cbsink.c - the callback receiver of bench/async.sh CALLBACK=1: an HTTP
 * server (libevent's evhttp, one thread, keep-alive) that answers every
 * request 200 and prints "SECONDS POSTS CONNECTIONS" every 0.5 s, so the
 * bench reads its completion rate off the callbacks received. Not part of
 * sagad: the script compiles it with cc.
 *
 *   cbsink PORT
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

static unsigned long	posts, conns;
static struct timespec	t0;

static void
handle(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = arg;

	posts++;
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(out, "{}", 2);
	evhttp_send_reply(req, 200, "OK", out);
}

static struct bufferevent *
newconn(struct event_base *base, void *arg)
{
	(void)arg;
	conns++;
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct timespec	now;

	(void)fd; (void)what; (void)arg;
	clock_gettime(CLOCK_MONOTONIC, &now);
	printf("%.2f %lu %lu\n", (double)(now.tv_sec - t0.tv_sec) +
	    (now.tv_nsec - t0.tv_nsec) / 1e9, posts, conns);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct event_base	*base = event_base_new();
	struct evhttp		*http = evhttp_new(base);
	struct timeval		 half = { 0, 500000 };
	struct event		*ev;

	if (argc != 2 || evhttp_bind_socket(http, "127.0.0.1",
	    (unsigned short)atoi(argv[1])) == -1) {
		fprintf(stderr, "usage: cbsink PORT (a free one)\n");
		return 2;
	}
	evhttp_set_bevcb(http, newconn, NULL);
	evhttp_set_gencb(http, handle, evbuffer_new());
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ev = event_new(base, -1, EV_PERSIST, tick, NULL);
	event_add(ev, &half);
	tick(-1, 0, NULL);
	event_base_dispatch(base);
	return 0;
}
