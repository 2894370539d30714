/*
 * server.c - the gRPC server's connections and HTTP/2: the nghttp2 session
 * of each connection over a libevent bufferevent, the frames that concern
 * the connection (SETTINGS, PING, RST_STREAM, GOAWAY), flushing its output,
 * and the server object: its defaults, its method table, its listener, its
 * shutdown. A call's life (its request, the grpc_call_* API, its response)
 * is server_call.c's; the memory budget, the counts per address, admission
 * of connections and the timeouts are server_limits.c's; server_int.h is
 * what they share. It does not log: what goes wrong on the wire goes back
 * to the peer as a gRPC status or an HTTP/2 error, and the process layer
 * sees only its handlers' calls and the events of opts.on_event.
 *
 * I/O discipline: nghttp2 is fed from the bufferevent's read callback and
 * asked for output only from conn_flush(), which runs after input was
 * processed or from a per-connection event that replies made pending. Nothing
 * calls nghttp2_session_send() from inside an nghttp2 callback, so handlers
 * may reply synchronously (inside on_frame_recv) or later from the loop.
 *
 * Unsent bytes per connection are bounded by conn_out_max, above which the
 * connection stops reading (the rest of the bounds: server_limits.c).
 * Per-stream state is freed in grpc_server_stream_free() only, reached from
 * nghttp2's on_stream_close or, when a connection dies, from
 * grpc_server_conn_free().
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "grpc/grpc.h"
#include "grpc/server.h"
#include "grpc/server_int.h"
#include "tls.h"
#include "util.h"

#define DEF_MAX_STREAMS		1000
#define DEF_MAX_HEADER_LIST	(16 * 1024)
#define DEF_STREAM_QUEUE	(1024 * 1024)
#define DEF_CONN_OUT		(1024 * 1024)
#define DEF_CONN_IN		(64 * 1024 * 1024)
#define DEF_MAX_CONNS		10000
#define STREAM_WINDOW		(1024 * 1024)
#define CONN_WINDOW		(2 * 1024 * 1024)
#define GOAWAY_GRACE_MS		1000	/* final GOAWAY if the PING is not answered */
#define MAX_RESETS_PER_SEC	1000	/* more is a rapid-reset attack: GOAWAY */
#define DEF_MEMORY_MAX		((size_t)1024 * 1024 * 1024)
#define DEF_MAX_PER_IP		1000
#define DEF_STREAMING_PER_IP	256
#define DEF_HANDSHAKE_MS	10000
#define DEF_IDLE_MS		300000

/* --- nghttp2 callbacks: output and the connection's frames -------------- */

static ssize_t
send_cb(nghttp2_session *h2 SAGAD_UNUSED, const uint8_t *data, size_t len,
    int flags SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(out) + evbuffer_get_length(conn->wbuf) >=
	    conn->srv->opts.conn_out_max) {
		conn->send_blocked = 1;
		return NGHTTP2_ERR_WOULDBLOCK;
	}
	evbuffer_add(conn->wbuf, data, len);
	return (ssize_t)len;
}

/* No new streams; the connection closes once its calls are done. */
void
grpc_server_conn_final_goaway(struct conn *conn)
{
	if (conn->goaway >= 2)
		return;
	conn->goaway = 2;
	event_del(&conn->goaway_ev);
	nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
	    nghttp2_session_get_last_proc_stream_id(conn->h2),
	    NGHTTP2_NO_ERROR, NULL, 0);
	grpc_server_conn_schedule_flush(conn);
}

static int
on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		c = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (c == NULL)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			grpc_server_call_headers_done(c);
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			grpc_server_call_dispatch(c);
		break;
	case NGHTTP2_DATA:
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			break;
		c = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (c != NULL)
			grpc_server_call_dispatch(c);
		break;
	case NGHTTP2_RST_STREAM:
		/* Opening and resetting streams costs us more than the peer. */
		if (util_mono_ms() - conn->rst_window >= 1000) {
			conn->rst_window = util_mono_ms();
			conn->rst_count = 0;
		}
		if (++conn->rst_count > MAX_RESETS_PER_SEC)
			nghttp2_session_terminate_session(h2,
			    NGHTTP2_ENHANCE_YOUR_CALM);
		break;
	case NGHTTP2_PING:
		if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && conn->goaway == 1)
			grpc_server_conn_final_goaway(conn);
		break;
	case NGHTTP2_SETTINGS:
		/* The preface and the client's first SETTINGS: handshaken. */
		if (!conn->handshaken) {
			conn->handshaken = 1;
			TAILQ_REMOVE(&conn->srv->handshaking, conn, hs_entry);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int
on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame,
    void *user SAGAD_UNUSED)
{
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (c != NULL && c->rst_after &&
	    nghttp2_session_get_stream_remote_close(h2, c->id) == 0) {
		c->rst_after = 0;
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, c->id,
		    NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int
on_stream_close(nghttp2_session *h2, int32_t id,
    uint32_t error_code SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (conn->dead)
		return 0;
	c = nghttp2_session_get_stream_user_data(h2, id);
	if (c != NULL) {
		nghttp2_session_set_stream_user_data(h2, id, NULL);
		grpc_server_stream_free(c);
	}
	return 0;
}

/* --- connections ---------------------------------------------------------- */

static void
server_check_done(struct grpc_server *srv)
{
	if (srv->shutting_down && srv->nconns == 0 && srv->done_ev != NULL)
		event_active(srv->done_ev, EV_TIMEOUT, 0);
}

void
grpc_server_conn_free(struct conn *conn)
{
	struct grpc_server *srv = conn->srv;
	struct grpc_call *c;

	/* nghttp2 must not call back into streams we are about to free. */
	conn->dead = 1;
	nghttp2_session_del(conn->h2);
	conn->h2 = NULL;
	while ((c = TAILQ_FIRST(&conn->calls)) != NULL)
		grpc_server_stream_free(c);
	event_del(&conn->flush_ev);
	event_del(&conn->goaway_ev);
	grpc_server_mem_sub(conn, &conn->out_acct, conn->out_acct);
	bufferevent_free(conn->bev);
	evbuffer_free(conn->wbuf);
	TAILQ_REMOVE(&srv->conns, conn, entry);
	if (!conn->handshaken)
		TAILQ_REMOVE(&srv->handshaking, conn, hs_entry);
	if (conn->addr != NULL) {
		conn->addr->nconns--;
		grpc_server_peer_release(srv, conn->addr);
	}
	srv->nconns--;
	free(conn->subject);
	free(conn);
	server_check_done(srv);
}

void
grpc_server_conn_schedule_flush(struct conn *conn)
{
	if (conn->in_io || conn->dead)
		return;
	if (!event_pending(&conn->flush_ev, EV_TIMEOUT, NULL))
		event_active(&conn->flush_ev, EV_TIMEOUT, 0);
}

/*
 * Hands a flush's output to the socket. When nothing waits in the
 * bufferevent, a socket gets it by a direct write: a reply then costs no
 * epoll_ctl to arm and disarm the write event. What the kernel does not take
 * goes to the bufferevent, in order.
 */
static void
conn_push(struct conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(conn->wbuf) == 0)
		return;
	if (conn->fd >= 0 && evbuffer_get_length(out) == 0)
		evbuffer_write(conn->wbuf, conn->fd);
	if (evbuffer_get_length(conn->wbuf) > 0)
		bufferevent_write_buffer(conn->bev, conn->wbuf);
}

/*
 * Sends what nghttp2 has, up to conn_out_max unsent bytes, runs writable
 * callbacks, and closes the connection when HTTP/2 is done with it. Returns
 * -1 if the connection is gone.
 */
static int
conn_flush(struct conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	size_t max = conn->srv->opts.conn_out_max;
	struct grpc_call *c;

	for (;;) {
		conn->in_io = 1;
		conn->send_blocked = 0;
		if (nghttp2_session_send(conn->h2) != 0) {
			conn->in_io = 0;
			grpc_server_conn_free(conn);
			return -1;
		}
		conn->in_io = 0;
		conn_push(conn);
		if (conn->writable_pending) {
			conn->writable_pending = 0;
			TAILQ_FOREACH(c, &conn->calls, entry) {
				if (!c->writable_pending)
					continue;
				c->writable_pending = 0;
				if (c->state == CALL_ACTIVE &&
				    c->writable_cb != NULL)
					c->writable_cb(c, c->writable_arg);
			}
			continue;
		}
		/*
		 * send_cb stopped at conn_out_max and the socket took it all
		 * directly: no write callback will come, so go on now. When
		 * the kernel refuses some, the rest waits in the bufferevent
		 * and its write callback (at half of conn_out_max) resumes.
		 */
		if (conn->send_blocked && evbuffer_get_length(out) == 0)
			continue;
		break;
	}
	grpc_server_conn_account_out(conn);
	if (evbuffer_get_length(out) >= max) {
		if (!conn->read_paused) {
			conn->read_paused = 1;
			bufferevent_disable(conn->bev, EV_READ);
		}
	} else if (conn->read_paused) {
		conn->read_paused = 0;
		bufferevent_enable(conn->bev, EV_READ);
	}
	if (!nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2) &&
	    evbuffer_get_length(out) == 0) {
		grpc_server_conn_free(conn);
		return -1;
	}
	if (conn->goaway == 2 && TAILQ_EMPTY(&conn->calls) &&
	    !nghttp2_session_want_write(conn->h2) &&
	    evbuffer_get_length(out) == 0) {
		grpc_server_conn_free(conn);
		return -1;
	}
	return 0;
}

static void
conn_flush_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	conn_flush(arg);
}

static void
conn_goaway_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct conn *conn = arg;

	grpc_server_conn_final_goaway(conn);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[16];
	int n;

	conn->last_active = util_mono_ms();
	while ((n = evbuffer_peek(in, -1, NULL, v, 16)) > 0) {
		size_t total = 0;

		if (n > 16)
			n = 16;
		conn->in_io = 1;
		for (int i = 0; i < n; i++) {
			ssize_t rv = nghttp2_session_mem_recv(conn->h2,
			    v[i].iov_base, v[i].iov_len);
			if (rv < 0) {
				conn->in_io = 0;
				grpc_server_conn_free(conn);
				return;
			}
			total += v[i].iov_len;
		}
		conn->in_io = 0;
		evbuffer_drain(in, total);
	}
	conn_flush(conn);
}

static void
conn_write_cb(struct bufferevent *bev SAGAD_UNUSED, void *arg)
{
	conn_flush(arg);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn	*conn = arg;
	char		 subject[256];

	/* TLS handshaken: the client's certificate names the caller. */
	if ((what & BEV_EVENT_CONNECTED) && conn->tls &&
	    tls_peer_subject(bev, subject, sizeof(subject)) == 0) {
		free(conn->subject);
		conn->subject = util_xstrdup(subject);
	}
	/* A refused client (no certificate, no h2...): say why, rarely. */
	if ((what & BEV_EVENT_ERROR) && conn->tls && !conn->handshaken &&
	    tls_bev_error(bev, subject, sizeof(subject)) != NULL) {
		char msg[400];

		snprintf(msg, sizeof(msg), "TLS handshake with %s failed: %s",
		    conn->peer, subject);
		grpc_server_event(conn->srv, GRPC_SERVER_EV_TLS, msg);
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		grpc_server_conn_free(conn);
}

static void
format_peer(char *buf, size_t len, const struct sockaddr *sa, socklen_t salen)
{
	char host[INET6_ADDRSTRLEN] = "";

	if (sa == NULL || salen == 0) {
		snprintf(buf, len, "unknown");
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)
		    (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "ipv4:%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)
		    (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "ipv6:[%s]:%u", host,
		    ntohs(in6->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "unix:");
	} else
		snprintf(buf, len, "unknown");
}

int
grpc_server_conn_new(struct grpc_server *srv, struct bufferevent *bev,
    const struct sockaddr *sa, socklen_t salen, evutil_socket_t fd)
{
	struct conn *conn;
	nghttp2_settings_entry iv[3];

	if (srv->shutting_down || srv->nconns >= (size_t)srv->opts.max_connections) {
		bufferevent_free(bev);
		return -1;
	}
	conn = util_xcalloc(1, sizeof(*conn));
	conn->srv = srv;
	conn->bev = bev;
	conn->fd = fd;
	conn->tls = bufferevent_openssl_get_ssl(bev) != NULL;
	conn->born = conn->last_active = util_mono_ms();
	TAILQ_INIT(&conn->calls);
	format_peer(conn->peer, sizeof(conn->peer), sa, salen);
	if ((conn->wbuf = evbuffer_new()) == NULL ||
	    nghttp2_session_server_new2(&conn->h2, srv->cbs, conn,
	    srv->h2opt) != 0) {
		if (conn->wbuf != NULL)
			evbuffer_free(conn->wbuf);
		bufferevent_free(bev);
		free(conn);
		return -1;
	}
	event_assign(&conn->flush_ev, srv->base, -1, 0, conn_flush_cb, conn);
	evtimer_assign(&conn->goaway_ev, srv->base, conn_goaway_cb, conn);
	TAILQ_INSERT_TAIL(&srv->conns, conn, entry);
	TAILQ_INSERT_TAIL(&srv->handshaking, conn, hs_entry);
	srv->nconns++;
	if ((conn->addr = grpc_server_peer_get(srv, sa)) != NULL)
		conn->addr->nconns++;
	if (!evtimer_pending(srv->sweep_ev, NULL)) {
		struct timeval tv = { 1, 0 };
		evtimer_add(srv->sweep_ev, &tv);
	}

	iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
	iv[0].value = srv->opts.max_concurrent_streams;
	iv[1].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
	iv[1].value = srv->opts.max_header_list;
	iv[2].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
	iv[2].value = STREAM_WINDOW;
	nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, 3);
	nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
	    CONN_WINDOW);

	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb,
	    conn);
	bufferevent_setwatermark(bev, EV_WRITE, srv->opts.conn_out_max / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	grpc_server_conn_schedule_flush(conn);
	return 0;
}

int
grpc_server_adopt(struct grpc_server *srv, struct bufferevent *bev,
    const struct sockaddr *sa, socklen_t salen)
{
	return grpc_server_conn_new(srv, bev, sa, salen, -1);
}

/* --- the server ----------------------------------------------------------- */

static void
done_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct grpc_server *srv = arg;
	grpc_server_done_cb cb = srv->done_cb;

	srv->done_cb = NULL;
	if (cb != NULL)
		cb(srv, srv->done_arg);
}

struct grpc_server *
grpc_server_new(struct event_base *base, const struct grpc_server_opts *opts,
    char *err, size_t errlen)
{
	struct grpc_server *srv;

	srv = util_xcalloc(1, sizeof(*srv));
	srv->base = base;
	if (opts != NULL)
		srv->opts = *opts;
	if (srv->opts.max_recv_msg == 0)
		srv->opts.max_recv_msg = GRPC_DEFAULT_MAX_RECV;
	if (srv->opts.max_concurrent_streams == 0)
		srv->opts.max_concurrent_streams = DEF_MAX_STREAMS;
	if (srv->opts.max_header_list == 0)
		srv->opts.max_header_list = DEF_MAX_HEADER_LIST;
	if (srv->opts.stream_queue_max == 0)
		srv->opts.stream_queue_max = DEF_STREAM_QUEUE;
	if (srv->opts.conn_out_max == 0)
		srv->opts.conn_out_max = DEF_CONN_OUT;
	if (srv->opts.conn_in_max == 0)
		srv->opts.conn_in_max = DEF_CONN_IN;
	if (srv->opts.max_connections <= 0)
		srv->opts.max_connections = DEF_MAX_CONNS;
	if (srv->opts.memory_max == 0)
		srv->opts.memory_max = DEF_MEMORY_MAX;
	if (srv->opts.max_connections_per_ip <= 0)
		srv->opts.max_connections_per_ip = DEF_MAX_PER_IP;
	if (srv->opts.max_streaming_per_ip <= 0)
		srv->opts.max_streaming_per_ip = DEF_STREAMING_PER_IP;
	if (srv->opts.handshake_timeout_ms <= 0)
		srv->opts.handshake_timeout_ms = DEF_HANDSHAKE_MS;
	if (srv->opts.idle_timeout_ms == 0)
		srv->opts.idle_timeout_ms = DEF_IDLE_MS;
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->handshaking);

	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 ||
	    nghttp2_option_new(&srv->h2opt) != 0) {
		snprintf(err, errlen, "nghttp2: out of memory");
		grpc_server_free(srv);
		return NULL;
	}
	nghttp2_session_callbacks_set_send_callback(srv->cbs, send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(srv->cbs,
	    grpc_server_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->cbs,
	    grpc_server_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs,
	    grpc_server_on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs,
	    on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs,
	    on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs,
	    on_stream_close);
	/* Our own header blocks are bounded too; nghttp2 enforces it. */
	nghttp2_option_set_max_send_header_block_length(srv->h2opt, 64 * 1024);
	nghttp2_option_set_max_deflate_dynamic_table_size(srv->h2opt, 4096);
	srv->done_ev = event_new(base, -1, 0, done_cb, srv);
	srv->sweep_ev = evtimer_new(base, grpc_server_sweep_cb, srv);
	srv->accept_ev = evtimer_new(base, grpc_server_accept_resume_cb, srv);
	if (srv->done_ev == NULL || srv->sweep_ev == NULL ||
	    srv->accept_ev == NULL) {
		snprintf(err, errlen, "libevent: cannot create an event");
		grpc_server_free(srv);
		return NULL;
	}
	return srv;
}

int
grpc_server_register(struct grpc_server *srv, const struct grpc_method *m,
    char *err, size_t errlen)
{
	if (m->path == NULL || m->path[0] != '/' || m->handler == NULL) {
		snprintf(err, errlen, "method %s: a path \"/pkg.Service/Method\""
		    " and a handler are required", m->path ? m->path : "(null)");
		return -1;
	}
	if (grpc_server_method_find(srv, m->path) != NULL) {
		snprintf(err, errlen, "method %s is registered twice", m->path);
		return -1;
	}
	srv->methods = util_xrealloc(srv->methods,
	    (srv->nmethods + 1) * sizeof(*srv->methods));
	srv->methods[srv->nmethods++] = *m;
	return 0;
}

static int
server_listen_common(struct grpc_server *srv, evutil_socket_t fd, char *err,
    size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (srv->lev != NULL) {
		snprintf(err, errlen, "the server already listens");
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	srv->lev = evconnlistener_new(srv->base, grpc_server_accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024, fd);
	if (srv->lev == NULL) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(srv->lev, grpc_server_accept_error_cb);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			srv->port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return 0;
}

int
grpc_server_listen(struct grpc_server *srv, const char *host, int port,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char portstr[16];
	int fd, rv, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
		host = NULL;
	if ((rv = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s:%d: %s", host ? host : "*", port,
		    gai_strerror(rv));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    res->ai_protocol);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 1024) == -1) {
		snprintf(err, errlen, "bind %s:%d: %s", host ? host : "*",
		    port, strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (server_listen_common(srv, fd, err, errlen) != 0) {
		close(fd);
		return -1;
	}
	return 0;
}

int
grpc_server_listen_fd(struct grpc_server *srv, int fd, char *err,
    size_t errlen)
{
	/* listen() again is harmless on a listening socket. */
	if (listen(fd, 1024) == -1) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		return -1;
	}
	return server_listen_common(srv, fd, err, errlen);
}

int
grpc_server_port(const struct grpc_server *srv)
{
	return srv->port;
}

size_t
grpc_server_nconns(const struct grpc_server *srv)
{
	return srv->nconns;
}

size_t
grpc_server_ncalls(const struct grpc_server *srv)
{
	return srv->ncalls;
}

struct event_base *
grpc_server_base(const struct grpc_server *srv)
{
	return srv->base;
}

void
grpc_server_shutdown(struct grpc_server *srv, grpc_server_done_cb cb,
    void *arg)
{
	struct conn *conn;
	struct timeval tv = { GOAWAY_GRACE_MS / 1000,
	    (GOAWAY_GRACE_MS % 1000) * 1000 };

	srv->done_cb = cb;
	srv->done_arg = arg;
	if (srv->lev != NULL) {
		evconnlistener_free(srv->lev);
		srv->lev = NULL;
	}
	event_del(srv->accept_ev);
	if (!srv->shutting_down) {
		srv->shutting_down = 1;
		TAILQ_FOREACH(conn, &srv->conns, entry) {
			if (conn->goaway != 0)
				continue;
			conn->goaway = 1;
			nghttp2_submit_shutdown_notice(conn->h2);
			nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL);
			evtimer_add(&conn->goaway_ev, &tv);
			grpc_server_conn_schedule_flush(conn);
		}
	}
	server_check_done(srv);
}

void
grpc_server_free(struct grpc_server *srv)
{
	struct conn *conn;

	if (srv == NULL)
		return;
	if (srv->lev != NULL)
		evconnlistener_free(srv->lev);
	srv->shutting_down = 1;
	srv->done_cb = NULL;
	while ((conn = TAILQ_FIRST(&srv->conns)) != NULL)
		grpc_server_conn_free(conn);
	if (srv->done_ev != NULL)
		event_free(srv->done_ev);
	if (srv->sweep_ev != NULL)
		event_free(srv->sweep_ev);
	if (srv->accept_ev != NULL)
		event_free(srv->accept_ev);
	for (size_t i = 0; i < GRPC_SERVER_PEER_BUCKETS; i++)
		while (srv->peers[i] != NULL) {
			struct peer *p = srv->peers[i];

			srv->peers[i] = p->next;
			free(p);
		}
	if (srv->cbs != NULL)
		nghttp2_session_callbacks_del(srv->cbs);
	if (srv->h2opt != NULL)
		nghttp2_option_del(srv->h2opt);
	tls_free(srv->tls);
	free(srv->methods);
	free(srv);
}

void
grpc_server_set_tls(struct grpc_server *srv, struct tls *tls)
{
	struct tls *old = srv->tls;

	srv->tls = tls_ref(tls);
	tls_free(old);
}
