/*
 * server_local.c - in-process calls of the gRPC server's methods (see
 * server.h): a request that did not come over HTTP/2 (the HTTP listener's
 * JSON API decodes its own) dispatched to the method's handler as a
 * grpc_call without a connection. The handler cannot tell the difference;
 * its replies and its status go to the front end's callbacks. There is no
 * stream, no flow control and no deadline here: the front end bounds its
 * own connections and output. Like the rest of the server, it never logs.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/buffer.h>

#include "grpc/grpc.h"
#include "grpc/server.h"
#include "grpc/server_int.h"
#include "util.h"

/* A call is freed on the next loop turn, so that nothing above it on the
 * stack (the handler that finished it) can still be using it. */
static void
local_free_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct grpc_call *c = arg;

	grpc_md_clear(&c->md);
	grpc_md_clear(&c->hdrs_out);
	grpc_md_clear(&c->trls_out);
	if (c->reqmsg != NULL)
		protobuf_c_message_free_unpacked(c->reqmsg, NULL);
	evbuffer_free(c->out);
	free(c->path);
	free(c->lpeer);
	free(c->message);
	free(c->caller);
	free(c);
}

static void
local_free_later(struct grpc_call *c)
{
	struct timeval tv = { 0, 0 };

	if (event_base_once(c->lsrv->base, -1, EV_TIMEOUT, local_free_cb, c,
	    &tv) == -1)
		local_free_cb(-1, 0, c);
}

int
grpc_server_call_local(struct grpc_server *srv, const char *path,
    ProtobufCMessage *req, const struct grpc_metadata *md, const char *peer,
    const struct grpc_local_ops *ops, void *arg, struct grpc_call **callp)
{
	const struct grpc_method	*m;
	struct grpc_call		*c;

	*callp = NULL;
	m = grpc_server_method_find(srv, path);
	if (m == NULL || m->req == NULL || req == NULL ||
	    req->descriptor != m->req) {
		if (req != NULL)
			protobuf_c_message_free_unpacked(req, NULL);
		return -1;
	}
	c = util_xcalloc(1, sizeof(*c));
	c->lsrv = srv;
	c->local = ops;
	c->local_arg = arg;
	c->lpeer = util_xstrdup(peer != NULL ? peer : "local");
	c->method = m;
	c->path = util_xstrdup(path);
	c->out = evbuffer_new();
	c->reqmsg = req;
	if (md != NULL)
		for (size_t i = 0; i < md->n; i++)
			grpc_md_add(&c->md, md->items[i].key,
			    md->items[i].value, md->items[i].len);
	c->state = CALL_ACTIVE;
	*callp = c;
	/*
	 * The same check as a call from the network: it names the caller
	 * from a forwarded authorization (the HTTP listener has checked it
	 * already with the same tokens and roles).
	 */
	if (srv->opts.authorize != NULL) {
		char	msg[256];
		int	st = srv->opts.authorize(c, srv->opts.authorize_arg, msg,
			    sizeof(msg));

		if (st != GRPC_STATUS_OK) {
			grpc_call_finish(c, st, msg);
			return 0;
		}
	}
	m->handler(c, m->arg);
	return 0;
}

int
grpc_server_local_send(struct grpc_call *c, const ProtobufCMessage *msg)
{
	int rv;

	if (c->method->resp == NULL || msg->descriptor != c->method->resp)
		return GRPC_CALL_EINVAL;
	if (!c->method->server_streaming && c->nmsgs >= 1)
		return GRPC_CALL_EINVAL;
	if ((rv = c->local->on_message(msg, c->local_arg)) != GRPC_CALL_OK)
		return rv;
	c->nmsgs++;
	return GRPC_CALL_OK;
}

int
grpc_server_local_finish(struct grpc_call *c, int status, const char *message)
{
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	c->finished = 1;
	c->state = CALL_DONE;
	c->local->on_finish(status, message, c->local_arg);
	local_free_later(c);
	return GRPC_CALL_OK;
}

void
grpc_server_call_local_cancel(struct grpc_call *c)
{
	grpc_call_cb fn = c->cancel_cb;
	int was_active = c->state == CALL_ACTIVE && !c->finished;

	if (c->finished)
		return;		/* on_finish ran: already on its way out */
	c->state = CALL_DONE;
	c->finished = 1;
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	if (was_active && fn != NULL)
		fn(c, c->cancel_arg);
	grpc_server_call_done(c, GRPC_STATUS_CANCELLED);
	local_free_later(c);
}
