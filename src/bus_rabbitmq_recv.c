/*
 * bus_rabbitmq_recv.c - what the broker sends the RabbitMQ driver's
 * connection thread, frame by frame: publisher confirms (and the returns of
 * what no queue took), which answer the publishes waiting for them or ack
 * the original of a retry copy; deliveries, assembled and handed to their
 * consumer's queue (the delivery count taken from the headers) or to their
 * listener; and publishes that waited too long for their confirm. Work
 * delivered more than once marks its unit of work "handled again" here, for
 * the next minute's publishes (see bus_rabbitmq.c on deduplication).
 *
 * It does not wait or decide to reconnect: bus_rmq_read returns -1 and the
 * thread (bus_rabbitmq_thread.c) drops the connection.
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "bus.h"
#include "bus_driver.h"
#include "bus_rabbitmq_int.h"
#include "util.h"

/* --- small helpers ------------------------------------------------------------ */

char *
bus_rmq_strndup(const void *p, size_t n)
{
	char	*s = util_xcalloc(1, n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static int
rmq_bytes_eq(amqp_bytes_t b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

void
bus_rmq_rmsg_free(struct rmq_msg *rm)
{
	if (rm == NULL)
		return;
	free(rm->subject);
	free(rm->msg_id);
	free(rm->body);
	free(rm);
}

/* --- work handled again --------------------------------------------------- */

/* FNV-1a of a message id up to its first ':', its unit of work. */
static uint64_t
rmq_unit_hash(const char *id)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *id != '\0' && *id != ':'; id++) {
		h ^= (unsigned char)*id;
		h *= 1099511628211ULL;
	}
	return h | 1;	/* 0 marks a free slot */
}

/* Marks id's unit of work as handled again, for RMQ_TAINT_MS. */
static void
rmq_taint_add(struct rmq_bus *rb, const char *id)
{
	struct rmq_taint	*t, *old = NULL;
	uint64_t		 h;
	int64_t			 now = util_mono_ms();
	int			 i;

	if (id == NULL)
		return;
	h = rmq_unit_hash(id);
	for (i = 0; i < RMQ_TAINT_PROBE; i++) {
		t = &rb->taint[(h + (uint64_t)i) % RMQ_TAINT_SLOTS];
		if (t->h == h || t->until <= now) {
			old = t;
			break;
		}
		if (old == NULL || t->until < old->until)
			old = t;
	}
	old->h = h;
	old->until = now + RMQ_TAINT_MS;
}

/* Whether id's unit of work was handled again lately (RMQ_HDR_AGAIN). */
int
bus_rmq_tainted(struct rmq_bus *rb, const char *id)
{
	struct rmq_taint	*t;
	uint64_t		 h;
	int64_t			 now;
	int			 i;

	if (id == NULL)
		return 0;
	h = rmq_unit_hash(id);
	now = util_mono_ms();
	for (i = 0; i < RMQ_TAINT_PROBE; i++) {
		t = &rb->taint[(h + (uint64_t)i) % RMQ_TAINT_SLOTS];
		if (t->h == h && t->until > now)
			return 1;
	}
	return 0;
}

/* --- what the broker sends ------------------------------------------------ */

/*
 * A confirm for seq, and for every one before it when multiple. Confirms
 * may come out of order when messages went to different queues.
 */
static void
rmq_confirmed(struct rmq_bus *rb, uint64_t tag, int multiple, int ok)
{
	struct rmq_pend	*pd, *next;
	char		 err[SAGAD_ERRLEN];

	for (pd = TAILQ_FIRST(&rb->pends); pd != NULL; pd = next) {
		next = TAILQ_NEXT(pd, entry);
		if (pd->seq > tag)
			break;
		if (!multiple && pd->seq != tag)
			continue;
		TAILQ_REMOVE(&rb->pends, pd, entry);
		if (!ok)
			snprintf(err, sizeof(err), "rabbitmq: publish %s: the "
			    "broker refused it (nack)",
			    pd->subject != NULL ? pd->subject : "");
		else if (pd->returned)
			snprintf(err, sizeof(err), "rabbitmq: publish %s: no "
			    "queue took it", pd->subject);
		if (pd->ack_tag != 0) {
			/* A retry copy: only now is the original done. */
			if (ok && !pd->returned)
				(void)amqp_basic_ack(rb->conn, RMQ_CHANNEL,
				    pd->ack_tag, 0);
			else
				(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL,
				    pd->ack_tag, 0, 1);
		} else
			bus_rmq_answer(rb, pd->pub, ok && !pd->returned ? NULL :
			    err, 1, pd->seq);
		bus_rmq_pend_free(pd);
	}
}

static int
rmq_int_value(const amqp_field_value_t *v, int *out)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_I8:
		*out = v->value.i8;
		return 0;
	case AMQP_FIELD_KIND_U8:
		*out = v->value.u8;
		return 0;
	case AMQP_FIELD_KIND_I16:
		*out = v->value.i16;
		return 0;
	case AMQP_FIELD_KIND_U16:
		*out = v->value.u16;
		return 0;
	case AMQP_FIELD_KIND_I32:
		*out = v->value.i32;
		return 0;
	case AMQP_FIELD_KIND_U32:
		*out = (int)v->value.u32;
		return 0;
	case AMQP_FIELD_KIND_I64:
		*out = (int)v->value.i64;
		return 0;
	case AMQP_FIELD_KIND_U64:
		*out = (int)v->value.u64;
		return 0;
	default:
		return -1;
	}
}

/* The whole of a delivery is here: to its consumer or its listener. */
static void
rmq_delivered(struct rmq_bus *rb)
{
	struct rmq_incoming	*in = &rb->in;
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_msg		*rm;
	struct bus_msg		*m;
	int			 handled = 0;

	pthread_mutex_lock(&rb->mu);
	LIST_FOREACH(rl, &rb->listeners, entry)
		if (strcmp(rl->tag, in->ctag) == 0)
			break;
	if (rl != NULL) {
		pthread_mutex_unlock(&rb->mu);
		bus_post_note(rl->l, in->rkey, in->body, in->got);
		return;
	}
	LIST_FOREACH(rc, &rb->consumers, entry)
		if (strcmp(rc->tag, in->ctag) == 0)
			break;
	if (rc != NULL && in->delivered > 1)
		rmq_taint_add(rb, in->msg_id);
	if (rc != NULL && (rc->c->max_deliver == 0 ||
	    in->delivered <= rc->c->max_deliver)) {
		rm = util_xcalloc(1, sizeof(*rm));
		m = util_xcalloc(1, sizeof(*m));
		rm->m = m;
		rm->tag = in->tag;
		rm->epoch = rb->epoch;
		rm->subject = in->rkey;
		rm->msg_id = in->msg_id;
		rm->body = in->body;
		rm->len = in->got;
		rm->delivered = in->delivered;
		in->rkey = in->msg_id = NULL;
		in->body = NULL;
		m->drv = rm;
		m->subject = rm->subject;
		m->data = rm->body != NULL ? rm->body : (void *)"";
		m->len = rm->len;
		m->delivered = rm->delivered;
		TAILQ_INSERT_TAIL(&rc->ready, rm, entry);
		pthread_cond_signal(&rc->cv);
		handled = 1;
	}
	pthread_mutex_unlock(&rb->mu);
	if (!handled)	/* a cancelled consumer's, or delivered too often */
		(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL, in->tag, 0,
		    rc == NULL);
}

static void
rmq_incoming_clear(struct rmq_incoming *in)
{
	free(in->rkey);
	free(in->msg_id);
	free(in->body);
	memset(in, 0, sizeof(*in));
}

/* The end of an incoming message: delivered, or a return noted. */
static void
rmq_incoming_done(struct rmq_bus *rb)
{
	struct rmq_pend	*pd;

	if (rb->in.kind == 1)
		rmq_delivered(rb);
	else if (rb->in.kind == 2)
		TAILQ_FOREACH(pd, &rb->pends, entry)
			if (pd->seq == rb->in.seq) {
				pd->returned = 1;
				break;
			}
	rmq_incoming_clear(&rb->in);
}

static void
rmq_header_frame(struct rmq_bus *rb, amqp_frame_t *f)
{
	struct rmq_incoming	*in = &rb->in;
	amqp_basic_properties_t	*p = f->payload.properties.decoded;
	int			 i, v, sagad = 0, count = 0;

	in->size = (size_t)f->payload.properties.body_size;
	in->got = 0;
	if (p != NULL && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
		in->msg_id = bus_rmq_strndup(p->message_id.bytes,
		    p->message_id.len);
	if (in->kind == 2 && p != NULL &&
	    (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)) {
		char	buf[24];

		snprintf(buf, sizeof(buf), "%.*s",
		    (int)(p->correlation_id.len < 23 ? p->correlation_id.len :
		    23), (const char *)p->correlation_id.bytes);
		in->seq = strtoull(buf, NULL, 10);
	}
	if (p != NULL && (p->_flags & AMQP_BASIC_HEADERS_FLAG))
		for (i = 0; i < p->headers.num_entries; i++) {
			amqp_table_entry_t *e = &p->headers.entries[i];

			if (rmq_bytes_eq(e->key, RMQ_HDR_DELIVERED) &&
			    rmq_int_value(&e->value, &v) == 0)
				sagad = v;
			else if (rmq_bytes_eq(e->key, "x-delivery-count") &&
			    rmq_int_value(&e->value, &v) == 0)
				count = v;
			else if (rmq_bytes_eq(e->key, RMQ_HDR_AGAIN))
				in->again = 1;
		}
	/*
	 * The count so far: the retries' header, plus the broker's own
	 * returns (quorum queues count them; classic ones only flag it).
	 */
	in->delivered = sagad > 0 ? sagad : 1;
	if (in->redelivered)
		in->delivered += count > 0 ? count : 1;
	if (in->again && in->delivered < 2)
		in->delivered = 2;	/* maybe a copy of work handled again */
	in->body = util_xcalloc(1, in->size > 0 ? in->size : 1);
	if (in->size == 0)
		rmq_incoming_done(rb);
}

/* Handles one frame; returns -1 when the connection must go. */
static int
rmq_frame(struct rmq_bus *rb, amqp_frame_t *f, char *why, size_t whylen)
{
	struct rmq_incoming	*in = &rb->in;
	amqp_basic_deliver_t	*d;
	amqp_basic_ack_t	*a;
	amqp_basic_nack_t	*n;
	amqp_basic_return_t	*r;
	size_t			 take;

	if (f->channel == RMQ_MOVE_CHANNEL) {
		/* Only the confirms of moved work come on it unasked. */
		if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
			a = f->payload.method.decoded;
			if (a->delivery_tag > rb->move_acked)
				rb->move_acked = a->delivery_tag;
		} else if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_BASIC_NACK_METHOD)
			rb->move_nacked = 1;
		else if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
			snprintf(why, whylen, "the broker closed the move "
			    "channel");
			return -1;
		}
		return 0;
	}
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		switch (f->payload.method.id) {
		case AMQP_BASIC_ACK_METHOD:
			a = f->payload.method.decoded;
			rmq_confirmed(rb, a->delivery_tag, a->multiple, 1);
			return 0;
		case AMQP_BASIC_NACK_METHOD:
			n = f->payload.method.decoded;
			rmq_confirmed(rb, n->delivery_tag, n->multiple, 0);
			return 0;
		case AMQP_BASIC_DELIVER_METHOD:
			d = f->payload.method.decoded;
			rmq_incoming_clear(in);
			in->kind = 1;
			snprintf(in->ctag, sizeof(in->ctag), "%.*s",
			    (int)d->consumer_tag.len,
			    (const char *)d->consumer_tag.bytes);
			in->tag = d->delivery_tag;
			in->redelivered = d->redelivered;
			in->rkey = bus_rmq_strndup(d->routing_key.bytes,
			    d->routing_key.len);
			return 0;
		case AMQP_BASIC_RETURN_METHOD:
			r = f->payload.method.decoded;
			rmq_incoming_clear(in);
			in->kind = 2;
			in->rkey = bus_rmq_strndup(r->routing_key.bytes,
			    r->routing_key.len);
			return 0;
		case AMQP_BASIC_CANCEL_METHOD:
			/* The broker cancelled a consumer (queue deleted). */
			snprintf(why, whylen, "the broker cancelled a "
			    "consumer");
			return -1;
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD: {
			amqp_rpc_reply_t	rr;

			memset(&rr, 0, sizeof(rr));
			rr.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
			rr.reply = f->payload.method;
			bus_rmq_reply_error(rr, rb->where, why, whylen);
			return -1;
		}
		default:
			return 0;	/* late replies of cancels and such */
		}
	case AMQP_FRAME_HEADER:
		if (in->kind != 0)
			rmq_header_frame(rb, f);
		return 0;
	case AMQP_FRAME_BODY:
		if (in->kind == 0 || in->body == NULL)
			return 0;
		take = f->payload.body_fragment.len;
		if (take > in->size - in->got)
			take = in->size - in->got;
		memcpy(in->body + in->got, f->payload.body_fragment.bytes,
		    take);
		in->got += take;
		if (in->got == in->size)
			rmq_incoming_done(rb);
		return 0;
	default:
		return 0;
	}
}

/* Publishes that waited past publish_timeout_ms fail (front first). */
void
bus_rmq_expire(struct rmq_bus *rb)
{
	struct rmq_pend	*pd;
	int64_t		 now = util_mono_ms();
	char		 err[SAGAD_ERRLEN];

	while ((pd = TAILQ_FIRST(&rb->pends)) != NULL && pd->deadline <= now) {
		TAILQ_REMOVE(&rb->pends, pd, entry);
		snprintf(err, sizeof(err), "rabbitmq: publish %s: not confirmed "
		    "in %d ms", pd->subject != NULL ? pd->subject : "",
		    rb->bus->publish_timeout_ms);
		if (pd->ack_tag != 0)
			(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL, pd->ack_tag,
			    0, 1);
		else
			bus_rmq_answer(rb, pd->pub, err, 0, pd->seq);
		bus_rmq_pend_free(pd);
	}
}

/* Reads what is there without waiting; -1 when the connection failed. */
int
bus_rmq_read(struct rmq_bus *rb, char *why, size_t whylen)
{
	struct timeval	zero = { 0, 0 };
	amqp_frame_t	f;
	int		st, n;

	for (n = 0; n < 4096; n++) {
		st = amqp_simple_wait_frame_noblock(rb->conn, &f, &zero);
		if (st == AMQP_STATUS_TIMEOUT)
			break;
		if (st != AMQP_STATUS_OK) {
			snprintf(why, whylen, "%s", amqp_error_string2(st));
			return -1;
		}
		if (rmq_frame(rb, &f, why, whylen) == -1)
			return -1;
	}
	amqp_maybe_release_buffers(rb->conn);
	return 0;
}
