/*
 * bus_rabbitmq_thread.c - the RabbitMQ driver's connection thread, the only
 * one that uses the connection: connecting (the first attempt runs in
 * rmq_open, before the thread starts), running the loop's commands in
 * order (publishes, acks, naks into the retry ladder, consumers and
 * listeners), waiting on the socket and the wake-up eventfd, and after a
 * loss dropping what was tied to the connection and reconnecting with a
 * doubling delay. At close it flushes what is queued and waits a while for
 * the confirms still due. See bus_rabbitmq.c for the design.
 *
 * It is not what the thread declares on the broker (bus_rabbitmq_topology.c)
 * nor how it reads the broker's frames (bus_rabbitmq_recv.c).
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "bus.h"
#include "bus_driver.h"
#include "bus_rabbitmq_int.h"
#include "util.h"

/* --- small helpers ------------------------------------------------------------ */

/* What went wrong with the last RPC, in words, with the broker's text. */
void
bus_rmq_reply_error(amqp_rpc_reply_t r, const char *what, char *err,
    size_t errlen)
{
	amqp_connection_close_t	*cc;
	amqp_channel_close_t	*ch;

	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		snprintf(err, errlen, "rabbitmq: %s: failed", what);
		break;
	case AMQP_RESPONSE_NONE:
		snprintf(err, errlen, "rabbitmq: %s: no reply", what);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		snprintf(err, errlen, "rabbitmq: %s: %s", what,
		    amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			cc = r.reply.decoded;
			snprintf(err, errlen, "rabbitmq: %s: %u %.*s", what,
			    cc->reply_code, (int)cc->reply_text.len,
			    (const char *)cc->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			ch = r.reply.decoded;
			snprintf(err, errlen, "rabbitmq: %s: %u %.*s", what,
			    ch->reply_code, (int)ch->reply_text.len,
			    (const char *)ch->reply_text.bytes);
		} else
			snprintf(err, errlen, "rabbitmq: %s: broker method "
			    "0x%08x", what, (unsigned)r.reply.id);
		break;
	}
}

/* After a synchronous call on the thread: 0, or -1 with err. */
int
bus_rmq_rpc_ok(struct rmq_bus *rb, const char *what, char *err, size_t errlen)
{
	amqp_rpc_reply_t	r = amqp_get_rpc_reply(rb->conn);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	bus_rmq_reply_error(r, what, err, errlen);
	return -1;
}

void
bus_rmq_pend_free(struct rmq_pend *pd)
{
	free(pd->subject);
	free(pd);
}

/* Answers a publish: with an error when err is not NULL. */
void
bus_rmq_answer(struct rmq_bus *rb, struct bus_pub *pub, const char *err,
    int refused, uint64_t seq)
{
	struct bus_pub	*p;

	if (pub == NULL || (p = bus_pub_take(rb->bus, pub)) == NULL)
		return;		/* bus_close answered it */
	p->res.seq = seq;	/* its place on the channel, not a stream */
	p->res.refused = err != NULL && refused;
	if (err != NULL)
		snprintf(p->errbuf, sizeof(p->errbuf), "%.*s",
		    (int)sizeof(p->errbuf) - 1, err);
	bus_post(rb->bus, &p->item);
}

/* --- connecting and losing ------------------------------------------------ */

int
bus_rmq_connect(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_socket_t		*sock;
	amqp_table_entry_t	 pe[2], ce[2];
	amqp_table_t		 props;
	amqp_rpc_reply_t	 r;
	struct timeval		 tv;
	int			 st;

	tv.tv_sec = rb->bus->timeout_ms / 1000;
	tv.tv_usec = (rb->bus->timeout_ms % 1000) * 1000;
	rb->conn = amqp_new_connection();
	if ((sock = amqp_tcp_socket_new(rb->conn)) == NULL) {
		snprintf(err, errlen, "rabbitmq: cannot make a socket");
		goto fail;
	}
	if ((st = amqp_socket_open_noblock(sock, rb->host, rb->port, &tv)) !=
	    AMQP_STATUS_OK) {
		snprintf(err, errlen, "rabbitmq: %s: %s", rb->where,
		    amqp_error_string2(st));
		goto fail;
	}
	amqp_set_handshake_timeout(rb->conn, &tv);
	amqp_set_rpc_timeout(rb->conn, &tv);
	pe[0].key = amqp_cstring_bytes("connection_name");
	pe[0].value.kind = AMQP_FIELD_KIND_UTF8;
	pe[0].value.value.bytes = amqp_cstring_bytes(rb->name);
	/*
	 * The broker tells a consumer whose queue was deleted only a client
	 * that says it can hear it: without, the consumer just stops getting
	 * messages. Told, the thread reconnects and declares it again.
	 */
	ce[0].key = amqp_cstring_bytes("consumer_cancel_notify");
	ce[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	ce[0].value.value.boolean = 1;
	ce[1].key = amqp_cstring_bytes("authentication_failure_close");
	ce[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	ce[1].value.value.boolean = 1;
	pe[1].key = amqp_cstring_bytes("capabilities");
	pe[1].value.kind = AMQP_FIELD_KIND_TABLE;
	pe[1].value.value.table.num_entries = 2;
	pe[1].value.value.table.entries = ce;
	props.num_entries = 2;
	props.entries = pe;
	r = amqp_login_with_properties(rb->conn, rb->vhost, 0, RMQ_FRAME_MAX,
	    RMQ_HEARTBEAT_S, &props, AMQP_SASL_METHOD_PLAIN, rb->user,
	    rb->pass);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		bus_rmq_reply_error(r, rb->where, err, errlen);
		goto fail;
	}
	amqp_channel_open(rb->conn, RMQ_CHANNEL);
	if (bus_rmq_rpc_ok(rb, "channel.open", err, errlen) == -1)
		goto fail;
	amqp_confirm_select(rb->conn, RMQ_CHANNEL);
	if (bus_rmq_rpc_ok(rb, "confirm.select", err, errlen) == -1)
		goto fail;
	amqp_channel_open(rb->conn, RMQ_MOVE_CHANNEL);
	if (bus_rmq_rpc_ok(rb, "channel.open", err, errlen) == -1)
		goto fail;
	amqp_confirm_select(rb->conn, RMQ_MOVE_CHANNEL);
	if (bus_rmq_rpc_ok(rb, "confirm.select", err, errlen) == -1)
		goto fail;
	rb->move_seq = rb->move_acked = 0;
	rb->move_nacked = 0;
	rb->epoch++;
	rb->next_seq = 1;
	rb->declared = 0;
	rb->retry_made = 0;
	if (bus_rmq_exchanges(rb, err, errlen) == -1)
		goto fail;
	return 0;
fail:
	amqp_destroy_connection(rb->conn);
	rb->conn = NULL;
	return -1;
}

/*
 * The connection is gone (or being closed): everything tied to it goes.
 * Unanswered publishes fail with why; deliveries not fetched are dropped,
 * as the broker gives them to someone again.
 */
void
bus_rmq_drop(struct rmq_bus *rb, const char *why)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_pend		*pd;
	struct rmq_msg		*rm;
	struct rmq_msgs		 dead;
	char			 msg[SAGAD_ERRLEN];
	size_t			 i;

	if (rb->conn != NULL) {
		amqp_destroy_connection(rb->conn);
		rb->conn = NULL;
	}
	snprintf(msg, sizeof(msg), "rabbitmq: connection to %s lost before "
	    "the broker confirmed%s%s", rb->where, why != NULL ? ": " : "",
	    why != NULL ? why : "");
	while ((pd = TAILQ_FIRST(&rb->pends)) != NULL) {
		TAILQ_REMOVE(&rb->pends, pd, entry);
		bus_rmq_answer(rb, pd->pub, msg, 0, pd->seq);
		bus_rmq_pend_free(pd);
	}
	for (i = 0; i < rb->nqueues; i++)
		free(rb->queues[i]);
	free(rb->queues);
	rb->queues = NULL;
	rb->nqueues = 0;
	free(rb->in.rkey);
	free(rb->in.msg_id);
	free(rb->in.body);
	memset(&rb->in, 0, sizeof(rb->in));
	TAILQ_INIT(&dead);
	pthread_mutex_lock(&rb->mu);
	rb->connected = 0;
	LIST_FOREACH(rc, &rb->consumers, entry) {
		rc->active = 0;
		TAILQ_CONCAT(&dead, &rc->ready, entry);
	}
	LIST_FOREACH(rl, &rb->listeners, entry)
		rl->active = 0;
	pthread_mutex_unlock(&rb->mu);
	/*
	 * bus.c counted nothing for these yet: they are the driver's own.
	 * Freed here, their bus_msg shells too.
	 */
	while ((rm = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, rm, entry);
		free(rm->m);
		bus_rmq_rmsg_free(rm);
	}
}

/* --- commands ------------------------------------------------------------- */

static void
rmq_sync_done(struct rmq_bus *rb, struct rmq_cmd *cmd, int rc)
{
	pthread_mutex_lock(&rb->mu);
	cmd->rc_ = rc;
	cmd->done = 1;
	if (cmd->abandoned) {
		pthread_mutex_unlock(&rb->mu);
		bus_rmq_cmd_free(cmd);
		return;
	}
	pthread_cond_broadcast(&rb->cv);
	pthread_mutex_unlock(&rb->mu);
}

static int
rmq_basic_publish(struct rmq_bus *rb, const char *exchange,
    const char *rkey, const void *data, size_t len, const char *msg_id,
    int delivered, int delay_ms, int confirm)
{
	amqp_basic_properties_t	props;
	amqp_table_entry_t	h[3];
	amqp_bytes_t		body;
	char			corr[24], delay[16];
	int			nh = 0;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
	    AMQP_BASIC_CORRELATION_ID_FLAG;
	props.delivery_mode = confirm ? 2 : 1;
	snprintf(corr, sizeof(corr), "%" PRIu64, rb->next_seq);
	props.correlation_id = amqp_cstring_bytes(corr);
	if (msg_id != NULL) {
		props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		props.message_id = amqp_cstring_bytes(msg_id);
	}
	if (delivered > 0) {
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_DELIVERED);
		h[nh].value.kind = AMQP_FIELD_KIND_I32;
		h[nh++].value.value.i32 = delivered;
	}
	if (confirm && bus_rmq_tainted(rb, msg_id)) {
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_AGAIN);
		h[nh].value.kind = AMQP_FIELD_KIND_I32;
		h[nh++].value.value.i32 = 1;
	}
	if (delay_ms > 0) {
		snprintf(delay, sizeof(delay), "%d", delay_ms);
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_DELAY);
		h[nh].value.kind = AMQP_FIELD_KIND_UTF8;
		h[nh++].value.value.bytes = amqp_cstring_bytes(delay);
	}
	if (nh > 0) {
		props._flags |= AMQP_BASIC_HEADERS_FLAG;
		props.headers.num_entries = nh;
		props.headers.entries = h;
	}
	body.bytes = (void *)(uintptr_t)data;
	body.len = len;
	rb->next_seq++;		/* every publish counts in confirm mode */
	return amqp_basic_publish(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(exchange), amqp_cstring_bytes(rkey),
	    confirm, 0, &props, body);
}

static struct rmq_pend *
rmq_pend_add(struct rmq_bus *rb, uint64_t seq, struct bus_pub *pub,
    const char *subject)
{
	struct rmq_pend	*pd = util_xcalloc(1, sizeof(*pd));

	pd->seq = seq;
	pd->pub = pub;
	pd->subject = subject != NULL ? util_xstrdup(subject) : NULL;
	pd->deadline = util_mono_ms() + rb->bus->publish_timeout_ms;
	TAILQ_INSERT_TAIL(&rb->pends, pd, entry);
	return pd;
}

/* Runs one command; returns -1 when the connection failed doing it. */
static int
rmq_run(struct rmq_bus *rb, struct rmq_cmd *cmd)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_msg		*rm;
	struct rmq_pend		*pd;
	amqp_queue_declare_ok_t	*ok;
	char			 err[SAGAD_ERRLEN], q[RMQ_NAME_MAX + 32];
	uint64_t		 seq, total;
	int			 st, up = rb->conn != NULL, i, rv;
	size_t			 k;

	err[0] = '\0';
	switch (cmd->kind) {
	case RC_PUBLISH:
		if (!up) {
			snprintf(err, sizeof(err), "rabbitmq: publish %s: not "
			    "connected to %s", cmd->subject, rb->where);
			bus_rmq_answer(rb, cmd->pub, err, 1, 0);
			break;
		}
		seq = rb->next_seq;
		st = rmq_basic_publish(rb, rb->xwork, cmd->subject, cmd->data,
		    cmd->len, cmd->msg_id, 0, 0, 1);
		if (st != AMQP_STATUS_OK) {
			snprintf(err, sizeof(err), "rabbitmq: publish %s: %s",
			    cmd->subject, amqp_error_string2(st));
			bus_rmq_answer(rb, cmd->pub, err, 0, 0);
			return -1;
		}
		rmq_pend_add(rb, seq, cmd->pub, cmd->subject);
		break;
	case RC_NOTIFY:
		if (!up)
			break;
		seq = rb->next_seq;
		if (rmq_basic_publish(rb, rb->xnotify, cmd->subject, cmd->data,
		    cmd->len, NULL, 0, 0, 0) != AMQP_STATUS_OK)
			return -1;
		rmq_pend_add(rb, seq, NULL, NULL);
		break;
	case RC_ACK:
	case RC_REQUEUE:
	case RC_DROP:
		/* From an older connection: the broker took it back. */
		if (!up || cmd->epoch != rb->epoch)
			break;
		if (cmd->kind == RC_ACK)
			st = amqp_basic_ack(rb->conn, RMQ_CHANNEL, cmd->tag, 0);
		else
			st = amqp_basic_nack(rb->conn, RMQ_CHANNEL, cmd->tag, 0,
			    cmd->kind == RC_REQUEUE);
		if (st != AMQP_STATUS_OK)
			return -1;
		break;
	case RC_RETRY:
		if (!up || cmd->epoch != rb->epoch)
			break;
		i = bus_rmq_ladder_index(cmd->delay_ms);
		if (bus_rmq_retry_queue(rb, i, err, sizeof(err)) == -1)
			return -1;
		seq = rb->next_seq;
		if (rmq_basic_publish(rb, rb->xretry, cmd->subject, cmd->data,
		    cmd->len, cmd->msg_id, cmd->delivered + 1,
		    bus_rmq_ladder[i], 1) != AMQP_STATUS_OK)
			return -1;
		/* The original is acked once the copy is confirmed. */
		pd = rmq_pend_add(rb, seq, NULL, cmd->subject);
		pd->ack_tag = cmd->tag;
		break;
	case RC_CONSUME:
		rc = cmd->rc;
		rv = -1;
		/* Listed first: its deliveries may come before we return. */
		pthread_mutex_lock(&rb->mu);
		LIST_INSERT_HEAD(&rb->consumers, rc, entry);
		pthread_mutex_unlock(&rb->mu);
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		else if (bus_rmq_start_consumer(rb, rc, cmd->err,
		    sizeof(cmd->err)) == 0)
			rv = 0;
		/* A failed one is taken off by the RC_CANCEL that follows. */
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_CANCEL:
		rc = cmd->rc;
		pthread_mutex_lock(&rb->mu);
		LIST_FOREACH(rc, &rb->consumers, entry)
			if (rc == cmd->rc)
				break;
		if (rc != NULL)
			LIST_REMOVE(rc, entry);
		pthread_mutex_unlock(&rb->mu);
		if (rc != NULL && up && rc->active) {
			amqp_basic_cancel(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(rc->tag));
			(void)bus_rmq_rpc_ok(rb, "basic.cancel", err,
			    sizeof(err));
		}
		/* Delivered, never fetched: back to the broker. */
		while (rc != NULL && (rm = TAILQ_FIRST(&rc->ready)) != NULL) {
			TAILQ_REMOVE(&rc->ready, rm, entry);
			if (up && rm->epoch == rb->epoch)
				(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL,
				    rm->tag, 0, 1);
			free(rm->m);
			bus_rmq_rmsg_free(rm);
		}
		rmq_sync_done(rb, cmd, 0);
		return 0;
	case RC_LISTEN:
		rl = cmd->rl;
		pthread_mutex_lock(&rb->mu);
		LIST_INSERT_HEAD(&rb->listeners, rl, entry);
		pthread_mutex_unlock(&rb->mu);
		rv = 0;
		if (!up) {
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
			rv = -1;
		} else if (bus_rmq_start_listener(rb, rl, cmd->err,
		    sizeof(cmd->err)) == -1)
			rv = -1;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_UNLISTEN:
		pthread_mutex_lock(&rb->mu);
		LIST_FOREACH(rl, &rb->listeners, entry)
			if (rl == cmd->rl)
				break;
		if (rl != NULL)
			LIST_REMOVE(rl, entry);
		pthread_mutex_unlock(&rb->mu);
		if (rl != NULL && up && rl->active) {
			amqp_basic_cancel(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(rl->tag));
			(void)bus_rmq_rpc_ok(rb, "basic.cancel", err,
			    sizeof(err));
		}
		rmq_sync_done(rb, cmd, 0);
		return 0;
	case RC_DECLARE:
		rv = -1;
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		else if (bus_rmq_exchanges(rb, cmd->err, sizeof(cmd->err)) == 0)
			rv = 0;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_DEPTH:
		/*
		 * Ready messages of every work queue this bus has known, and
		 * of the unrouted queue.
		 */
		total = 0;
		rv = up ? 0 : -1;
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		for (k = 0; up && k <= rb->nknown; k++) {
			if (cmd->subject != NULL) {
				/* One queue's (bus_consumer_backlog). */
				snprintf(q, sizeof(q), "%s", cmd->subject);
				k = rb->nknown;
			} else
				snprintf(q, sizeof(q), "%s", k < rb->nknown ?
				    rb->known[k] : rb->unrouted);
			ok = amqp_queue_declare(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(q), 1, 0, 0, 0,
			    amqp_empty_table);
			if (bus_rmq_rpc_ok(rb, q, cmd->err, sizeof(cmd->err)) ==
			    -1 || ok == NULL) {
				rv = -1;
				break;
			}
			total += ok->message_count;
		}
		cmd->count = total;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	}
	bus_rmq_cmd_free(cmd);
	return 0;
}

/* --- the thread's loop ---------------------------------------------------- */

/* Consumers and listeners again, on a new connection. */
static int
rmq_resume(struct rmq_bus *rb, char *err, size_t errlen)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	int			 rv = 0;

	/* The lists change only on this thread: walking them is safe. */
	LIST_FOREACH(rc, &rb->consumers, entry)
		if (rv == 0 && bus_rmq_start_consumer(rb, rc, err,
		    errlen) == -1)
			rv = -1;
	LIST_FOREACH(rl, &rb->listeners, entry)
		if (rv == 0 && bus_rmq_start_listener(rb, rl, err,
		    errlen) == -1)
			rv = -1;
	return rv;
}

/* Sleeps ms unless stopped; returns 1 when stopping. */
static int
rmq_nap(struct rmq_bus *rb, int ms)
{
	struct pollfd	pfd = { rb->wakefd, POLLIN, 0 };
	int64_t		end = util_mono_ms() + ms, now;
	uint64_t	v;
	int		stop;

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		stop = rb->stop;
		pthread_mutex_unlock(&rb->mu);
		if (stop)
			return 1;
		if ((now = util_mono_ms()) >= end)
			return 0;
		if (poll(&pfd, 1, (int)(end - now)) > 0)
			(void)!read(rb->wakefd, &v, sizeof(v));
		/* Commands that cannot wait for the connection: answer them. */
		for (;;) {
			struct rmq_cmd	*cmd;

			pthread_mutex_lock(&rb->mu);
			cmd = TAILQ_FIRST(&rb->cmds);
			if (cmd != NULL)
				TAILQ_REMOVE(&rb->cmds, cmd, entry);
			pthread_mutex_unlock(&rb->mu);
			if (cmd == NULL)
				break;
			(void)rmq_run(rb, cmd);
		}
	}
}

/* At close: what is queued goes out and confirms come, for a while. */
static void
rmq_flush(struct rmq_bus *rb)
{
	struct rmq_cmd	*cmd;
	struct pollfd	 pfd;
	int64_t		 end = util_mono_ms() + RMQ_CLOSE_WAIT_MS;
	char		 why[SAGAD_ERRLEN];

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		cmd = TAILQ_FIRST(&rb->cmds);
		if (cmd != NULL)
			TAILQ_REMOVE(&rb->cmds, cmd, entry);
		pthread_mutex_unlock(&rb->mu);
		if (cmd == NULL)
			break;
		if (rmq_run(rb, cmd) == -1)
			return;
	}
	while (!TAILQ_EMPTY(&rb->pends) && util_mono_ms() < end) {
		pfd.fd = amqp_get_sockfd(rb->conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (!amqp_frames_enqueued(rb->conn) &&
		    !amqp_data_in_buffer(rb->conn))
			(void)poll(&pfd, 1, 100);
		if (bus_rmq_read(rb, why, sizeof(why)) == -1)
			return;
	}
}

void *
bus_rmq_main(void *arg)
{
	struct rmq_bus	*rb = arg;
	struct rmq_cmd	*cmd;
	struct pollfd	 pfd[2];
	char		 why[SAGAD_ERRLEN];
	uint64_t	 v;
	int		 stop, timeout;

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		stop = rb->stop;
		pthread_mutex_unlock(&rb->mu);
		if (stop)
			break;
		if (rb->conn == NULL) {
			if (rmq_nap(rb, rb->wait_ms))
				break;
			if (bus_rmq_connect(rb, rb->lasterr,
			    sizeof(rb->lasterr)) == -1) {
				rb->wait_ms *= 2;
				if (rb->wait_ms > rb->bus->reconnect_max_ms)
					rb->wait_ms = rb->bus->reconnect_max_ms;
				continue;
			}
			if (rmq_resume(rb, rb->lasterr,
			    sizeof(rb->lasterr)) == -1) {
				bus_rmq_drop(rb, rb->lasterr);
				continue;
			}
			rb->wait_ms = rb->bus->reconnect_wait_ms;
			pthread_mutex_lock(&rb->mu);
			rb->connected = 1;
			pthread_mutex_unlock(&rb->mu);
			bus_post_state(rb->bus, rb->ever ? BUS_RECONNECTED :
			    BUS_CONNECTED);
			rb->ever = 1;
		}
		why[0] = '\0';
		/* Commands first, in order, then whatever came in. */
		for (;;) {
			pthread_mutex_lock(&rb->mu);
			cmd = TAILQ_FIRST(&rb->cmds);
			if (cmd != NULL)
				TAILQ_REMOVE(&rb->cmds, cmd, entry);
			pthread_mutex_unlock(&rb->mu);
			if (cmd == NULL)
				break;
			if (rmq_run(rb, cmd) == -1)
				goto lost;
		}
		if (bus_rmq_read(rb, why, sizeof(why)) == -1)
			goto lost;
		bus_rmq_expire(rb);
		if (amqp_frames_enqueued(rb->conn) ||
		    amqp_data_in_buffer(rb->conn))
			continue;
		pfd[0].fd = amqp_get_sockfd(rb->conn);
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = rb->wakefd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		timeout = RMQ_POLL_MS;
		if (!TAILQ_EMPTY(&rb->pends)) {
			int64_t left = TAILQ_FIRST(&rb->pends)->deadline -
			    util_mono_ms();

			if (left < timeout)
				timeout = left < 0 ? 0 : (int)left;
		}
		if (poll(pfd, 2, timeout) > 0 && (pfd[1].revents & POLLIN))
			(void)!read(rb->wakefd, &v, sizeof(v));
		continue;
lost:
		bus_rmq_drop(rb, why[0] != '\0' ? why : NULL);
		bus_post_state_why(rb->bus, BUS_DISCONNECTED,
		    why[0] != '\0' ? why : NULL);
	}
	if (rb->conn != NULL) {
		rmq_flush(rb);
		if (rb->conn != NULL) {
			(void)amqp_channel_close(rb->conn, RMQ_CHANNEL,
			    AMQP_REPLY_SUCCESS);
			(void)amqp_connection_close(rb->conn,
			    AMQP_REPLY_SUCCESS);
		}
	}
	bus_rmq_drop(rb, "the bus is closing");
	/* Synchronous commands that came too late: answer them. */
	for (;;) {
		pthread_mutex_lock(&rb->mu);
		cmd = TAILQ_FIRST(&rb->cmds);
		if (cmd != NULL)
			TAILQ_REMOVE(&rb->cmds, cmd, entry);
		pthread_mutex_unlock(&rb->mu);
		if (cmd == NULL)
			break;
		(void)rmq_run(rb, cmd);
	}
	return NULL;
}
