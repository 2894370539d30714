/*
 * server_limits.c - what the gRPC server spends and whom it lets in: the
 * memory budget (memory_max) that covers what every connection buffers,
 * requests and replies alike, with a quarter of it at most for one
 * connection and half for one client address, so that a client that never
 * reads (a zero flow-control window) cannot make the server queue without
 * end; the connections and streaming calls counted per client address; the
 * accepting of a connection (max_connections, max_connections_per_ip); and
 * the once-a-second sweep of handshake and idle timeouts. At the cap, a
 * connection still in its handshake makes room for a new one. accept()
 * failing for want of descriptors (EMFILE, ENFILE) pauses the listener
 * instead of spinning on it.
 *
 * What it is not: the HTTP/2 of a connection (server.c) nor a call's life
 * (server_call.c). It does not log: the refusals and accept errors it sees
 * go to the process layer through opts.on_event, at most once a second per
 * kind.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "grpc/grpc.h"
#include "grpc/server.h"
#include "grpc/server_int.h"
#include "tls.h"
#include "util.h"

#define ACCEPT_PAUSE_MS		100	/* after EMFILE/ENFILE with nothing to evict */
#define EVICT_ON_EMFILE		16	/* handshaking connections closed to make room */

/* --- resource accounting ---------------------------------------------------- */

/* Tells the process layer, at most once a second per kind. */
void
grpc_server_event(struct grpc_server *srv, int kind, const char *what)
{
	int64_t now = util_mono_ms();

	srv->ev_count[kind]++;
	if (srv->opts.on_event == NULL || (srv->ev_last[kind] != 0 &&
	    now - srv->ev_last[kind] < 1000))
		return;
	srv->ev_last[kind] = now;
	srv->opts.on_event(kind, what, srv->ev_count[kind],
	    srv->opts.event_arg);
	srv->ev_count[kind] = 0;
}

/* Would more bytes take the server or this connection past its budget? */
int
grpc_server_mem_over(const struct conn *conn, size_t more)
{
	const struct grpc_server *srv = conn->srv;
	size_t max = srv->opts.memory_max;

	/*
	 * One connection may hold a quarter of the budget, one client
	 * address half of it: others keep room to be served.
	 */
	return srv->mem + more > max || conn->in_buffered +
	    conn->out_queued + conn->out_acct + more > max / 4 ||
	    (conn->addr != NULL && conn->addr->mem + more > max / 2);
}

void
grpc_server_mem_add(struct conn *conn, size_t *what, size_t n)
{
	*what += n;
	conn->srv->mem += n;
	if (conn->addr != NULL)
		conn->addr->mem += n;
}

void
grpc_server_mem_sub(struct conn *conn, size_t *what, size_t n)
{
	*what -= n;
	conn->srv->mem -= n;
	if (conn->addr != NULL)
		conn->addr->mem -= n;
}

/* Counts what waits in the connection's output buffers. */
void
grpc_server_conn_account_out(struct conn *conn)
{
	size_t now = evbuffer_get_length(bufferevent_get_output(conn->bev)) +
	    evbuffer_get_length(conn->wbuf);

	conn->srv->mem = conn->srv->mem - conn->out_acct + now;
	if (conn->addr != NULL)
		conn->addr->mem = conn->addr->mem - conn->out_acct + now;
	conn->out_acct = now;
}

static unsigned
peer_hash(int family, const uint8_t *addr)
{
	unsigned h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 16777619u;
	return (h ^ (unsigned)family) % GRPC_SERVER_PEER_BUCKETS;
}

/* The entry of sa's address, made if need be; NULL for other families. */
struct peer *
grpc_server_peer_get(struct grpc_server *srv, const struct sockaddr *sa)
{
	uint8_t addr[16];
	struct peer *p;
	unsigned h;

	memset(addr, 0, sizeof(addr));
	if (sa == NULL)
		return NULL;
	if (sa->sa_family == AF_INET)
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr, 16);
	else
		return NULL;
	h = peer_hash(sa->sa_family, addr);
	for (p = srv->peers[h]; p != NULL; p = p->next)
		if (p->family == sa->sa_family &&
		    memcmp(p->addr, addr, 16) == 0)
			return p;
	p = util_xcalloc(1, sizeof(*p));
	p->family = sa->sa_family;
	memcpy(p->addr, addr, 16);
	p->next = srv->peers[h];
	srv->peers[h] = p;
	return p;
}

/* Forgets an address nothing counts any more. */
void
grpc_server_peer_release(struct grpc_server *srv, struct peer *p)
{
	struct peer **pp;

	if (p == NULL || p->nconns > 0 || p->nstreaming > 0)
		return;
	for (pp = &srv->peers[peer_hash(p->family, p->addr)]; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}

size_t
grpc_server_memory(const struct grpc_server *srv)
{
	return srv->mem;
}

void
grpc_server_set_limits(struct grpc_server *srv,
    const struct grpc_server_opts *o)
{
	if (o->memory_max > 0)
		srv->opts.memory_max = o->memory_max;
	if (o->max_connections > 0)
		srv->opts.max_connections = o->max_connections;
	if (o->max_connections_per_ip > 0)
		srv->opts.max_connections_per_ip = o->max_connections_per_ip;
	if (o->max_streaming_per_ip > 0)
		srv->opts.max_streaming_per_ip = o->max_streaming_per_ip;
	if (o->handshake_timeout_ms > 0)
		srv->opts.handshake_timeout_ms = o->handshake_timeout_ms;
	if (o->idle_timeout_ms != 0)
		srv->opts.idle_timeout_ms = o->idle_timeout_ms;
}

/* --- admission and timeouts ---------------------------------------------- */

void
grpc_server_accept_cb(struct evconnlistener *lev SAGAD_UNUSED,
    evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct grpc_server *srv = arg;
	struct bufferevent *bev;
	struct peer *p;
	int one = 1;

	if ((p = grpc_server_peer_get(srv, sa)) != NULL &&
	    p->nconns >= srv->opts.max_connections_per_ip) {
		close(fd);
		grpc_server_peer_release(srv, p);
		grpc_server_event(srv, GRPC_SERVER_EV_REFUSED,
		    "a connection refused: max_connections_per_ip reached");
		return;
	}
	if (srv->nconns >= (size_t)srv->opts.max_connections) {
		/* A connection that has not even said hello makes room. */
		struct conn *old = TAILQ_FIRST(&srv->handshaking);

		if (old == NULL) {
			close(fd);
			grpc_server_peer_release(srv, p);
			grpc_server_event(srv, GRPC_SERVER_EV_REFUSED,
			    "a connection refused: max_connections reached");
			return;
		}
		grpc_server_conn_free(old);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * TLS: the handshake runs inside the bufferevent; the connection
	 * counts as handshaking (handshake_timeout_ms) until the client's
	 * SETTINGS, so a peer stuck in TLS is swept like one stuck before
	 * its preface. Its output cannot bypass OpenSSL: no direct writes.
	 */
	if (srv->tls != NULL)
		bev = tls_accept_bev(srv->tls, srv->base, fd, 1);
	else
		bev = bufferevent_socket_new(srv->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		grpc_server_peer_release(srv, p);
		return;
	}
	if (grpc_server_conn_new(srv, bev, sa, (socklen_t)salen,
	    srv->tls != NULL ? -1 : fd) == -1)
		grpc_server_peer_release(srv, p);
}

/*
 * accept() failed. Out of descriptors, accepting again at once would spin
 * (the listening socket stays readable): close a few connections still in
 * their handshake to make room, or pause the listener for a while.
 */
void
grpc_server_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct grpc_server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };
	struct conn *old;
	char what[160];
	int n = 0;

	if (err != EMFILE && err != ENFILE && err != ENOBUFS &&
	    err != ENOMEM) {
		snprintf(what, sizeof(what), "accept: %s", strerror(err));
		grpc_server_event(srv, GRPC_SERVER_EV_ACCEPT, what);
		return;
	}
	while (n < EVICT_ON_EMFILE &&
	    (old = TAILQ_FIRST(&srv->handshaking)) != NULL) {
		grpc_server_conn_free(old);
		n++;
	}
	if (n > 0)
		snprintf(what, sizeof(what), "accept: %s; closed %d "
		    "connections still in their handshake", strerror(err), n);
	else {
		snprintf(what, sizeof(what), "accept: %s; not accepting for "
		    "%d ms", strerror(err), ACCEPT_PAUSE_MS);
		evconnlistener_disable(lev);
		srv->accept_paused = 1;
		evtimer_add(srv->accept_ev, &tv);
	}
	grpc_server_event(srv, GRPC_SERVER_EV_ACCEPT, what);
}

void
grpc_server_accept_resume_cb(evutil_socket_t fd SAGAD_UNUSED,
    short ev SAGAD_UNUSED, void *arg)
{
	struct grpc_server *srv = arg;

	srv->accept_paused = 0;
	if (srv->lev != NULL)
		evconnlistener_enable(srv->lev);
}

/*
 * Once a second while connections exist: close those that did not finish
 * the handshake in time, and send GOAWAY to those idle for too long (no
 * stream open, nothing read); one that ignores it goes after as long again.
 */
void
grpc_server_sweep_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct grpc_server *srv = arg;
	struct timeval tv = { 1, 0 };
	int64_t now = util_mono_ms(), idle = srv->opts.idle_timeout_ms;
	struct conn *conn, *next;

	while ((conn = TAILQ_FIRST(&srv->handshaking)) != NULL &&
	    now - conn->born >= srv->opts.handshake_timeout_ms)
		grpc_server_conn_free(conn);
	for (conn = TAILQ_FIRST(&srv->conns); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		if (!conn->handshaken)
			continue;
		if (!TAILQ_EMPTY(&conn->calls)) {
			conn->last_active = now;
			continue;
		}
		if (idle <= 0 || now - conn->last_active < idle)
			continue;
		if (conn->goaway < 2)
			grpc_server_conn_final_goaway(conn);
		else if (now - conn->last_active >= 2 * idle)
			grpc_server_conn_free(conn);
	}
	if (srv->nconns > 0)
		evtimer_add(srv->sweep_ev, &tv);
}
