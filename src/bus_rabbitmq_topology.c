/*
 * bus_rabbitmq_topology.c - what the RabbitMQ driver declares on the broker,
 * on its connection thread: the work, retry, notify and unrouted exchanges,
 * a durable queue per consumer's filter, the retry ladder (a classic queue
 * per delay, made on first use, whose TTL dead-letters a message back to the
 * work), and the start of a consumer or listener (moving work that waited
 * unrouted back through the work exchange). See bus_rabbitmq.c for the
 * design.
 *
 * It is not the thread's loop or its commands (bus_rabbitmq_thread.c), nor
 * the reading of what the broker sends (bus_rabbitmq_recv.c).
 */
#include "autoconf.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "bus_rabbitmq_int.h"
#include "util.h"

/* --- exchanges and queues ------------------------------------------------- */

static amqp_table_t
rmq_queue_args(struct rmq_bus *rb, amqp_table_entry_t *e)
{
	amqp_table_t	t;

	e[0].key = amqp_cstring_bytes("x-queue-type");
	e[0].value.kind = AMQP_FIELD_KIND_UTF8;
	e[0].value.value.bytes = amqp_cstring_bytes(rb->bus->queue_type);
	t.num_entries = 1;
	t.entries = e;
	return t;
}

int
bus_rmq_exchanges(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_table_entry_t	ae[1], qe[1];
	amqp_table_t		aargs;

	if (rb->declared)
		return 0;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), amqp_cstring_bytes("fanout"), 0,
	    1, 0, 0, amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	amqp_queue_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), 0, 1, 0, 0,
	    rmq_queue_args(rb, qe));
	if (bus_rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(rb->unrouted),
	    amqp_cstring_bytes(rb->unrouted), amqp_cstring_bytes(""),
	    amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	ae[0].key = amqp_cstring_bytes("alternate-exchange");
	ae[0].value.kind = AMQP_FIELD_KIND_UTF8;
	ae[0].value.value.bytes = amqp_cstring_bytes(rb->unrouted);
	aargs.num_entries = 1;
	aargs.entries = ae;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xwork), amqp_cstring_bytes("topic"), 0, 1,
	    0, 0, aargs);
	if (bus_rmq_rpc_ok(rb, rb->xwork, err, errlen) == -1)
		return -1;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xretry), amqp_cstring_bytes("headers"), 0,
	    1, 0, 0, amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rb->xretry, err, errlen) == -1)
		return -1;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xnotify), amqp_cstring_bytes("direct"), 0,
	    1, 0, 0, amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rb->xnotify, err, errlen) == -1)
		return -1;
	rb->declared = 1;
	return 0;
}

static int
rmq_has(char *const *list, size_t n, const char *s)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

static void
rmq_add(char ***list, size_t *n, const char *s)
{
	*list = util_xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = util_xstrdup(s);
}

/*
 * The durable queue of a consumer's filter, bound to the work exchange
 * with the filter as its pattern.
 */
static int
rmq_work_queue(struct rmq_bus *rb, const char *filter, char *err,
    size_t errlen)
{
	amqp_table_entry_t	e[1];
	char			pattern[RMQ_NAME_MAX];
	size_t			i;

	if (rmq_has(rb->queues, rb->nqueues, filter))
		return 0;
	if (bus_rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	snprintf(pattern, sizeof(pattern), "%s", filter);
	for (i = 0; pattern[i] != '\0'; i++)
		if (pattern[i] == '>')
			pattern[i] = '#';
	amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(filter),
	    0, 1, 0, 0, rmq_queue_args(rb, e));
	if (bus_rmq_rpc_ok(rb, filter, err, errlen) == -1)
		return -1;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(filter),
	    amqp_cstring_bytes(rb->xwork), amqp_cstring_bytes(pattern),
	    amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, filter, err, errlen) == -1)
		return -1;
	rmq_add(&rb->queues, &rb->nqueues, filter);
	if (!rmq_has(rb->known, rb->nknown, filter))
		rmq_add(&rb->known, &rb->nknown, filter);
	return 0;
}

/* --- the retry ladder ----------------------------------------------------- */

/* The retry delays a nak is rounded up to: one queue each, made on use. */
const int bus_rmq_ladder[] = {
	50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000,
	600000
};
#define RMQ_NLADDER	\
	(int)(sizeof(bus_rmq_ladder) / sizeof(bus_rmq_ladder[0]))

/* The index of the first delay at least ms long, else of the last. */
int
bus_rmq_ladder_index(int ms)
{
	int	i;

	for (i = 0; i < RMQ_NLADDER - 1; i++)
		if (ms <= bus_rmq_ladder[i])
			break;
	return i;
}

/* The classic queue of one retry delay: TTL, then back to the work. */
int
bus_rmq_retry_queue(struct rmq_bus *rb, int i, char *err, size_t errlen)
{
	amqp_table_entry_t	qe[3], be[2];
	amqp_table_t		qa, ba;
	char			q[RMQ_NAME_MAX + 32], ms[16];

	if (rb->retry_made & (1u << i))
		return 0;
	if (bus_rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	snprintf(q, sizeof(q), "%s.%d", rb->xretry, bus_rmq_ladder[i]);
	snprintf(ms, sizeof(ms), "%d", bus_rmq_ladder[i]);
	qe[0].key = amqp_cstring_bytes("x-queue-type");
	qe[0].value.kind = AMQP_FIELD_KIND_UTF8;
	qe[0].value.value.bytes = amqp_cstring_bytes("classic");
	qe[1].key = amqp_cstring_bytes("x-message-ttl");
	qe[1].value.kind = AMQP_FIELD_KIND_I32;
	qe[1].value.value.i32 = bus_rmq_ladder[i];
	qe[2].key = amqp_cstring_bytes("x-dead-letter-exchange");
	qe[2].value.kind = AMQP_FIELD_KIND_UTF8;
	qe[2].value.value.bytes = amqp_cstring_bytes(rb->xwork);
	qa.num_entries = 3;
	qa.entries = qe;
	amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(q), 0, 1,
	    0, 0, qa);
	if (bus_rmq_rpc_ok(rb, q, err, errlen) == -1)
		return -1;
	be[0].key = amqp_cstring_bytes("x-match");
	be[0].value.kind = AMQP_FIELD_KIND_UTF8;
	be[0].value.value.bytes = amqp_cstring_bytes("all");
	be[1].key = amqp_cstring_bytes(RMQ_HDR_DELAY);
	be[1].value.kind = AMQP_FIELD_KIND_UTF8;
	be[1].value.value.bytes = amqp_cstring_bytes(ms);
	ba.num_entries = 2;
	ba.entries = be;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(q),
	    amqp_cstring_bytes(rb->xretry), amqp_cstring_bytes(""), ba);
	if (bus_rmq_rpc_ok(rb, q, err, errlen) == -1)
		return -1;
	rb->retry_made |= 1u << i;
	return 0;
}

/* --- consuming ------------------------------------------------------------ */

/*
 * basic.consume without waiting for consume-ok (nowait): RabbitMQ 3.10 may
 * hold a quorum queue's consume-ok back after a restart while its
 * deliveries flow, and a refusal comes back as a channel.close anyway,
 * which ends the connection. Takes queue (allocated) and frees it.
 */
static int
rmq_consume(struct rmq_bus *rb, char *queue, const char *tag, int no_ack,
    char *err, size_t errlen)
{
	amqp_basic_consume_t	req;
	int			st;

	memset(&req, 0, sizeof(req));
	req.queue = amqp_cstring_bytes(queue);
	req.consumer_tag = amqp_cstring_bytes(tag);
	req.no_ack = no_ack;
	req.exclusive = no_ack;	/* a listener's queue is its own */
	req.nowait = 1;
	req.arguments = amqp_empty_table;
	st = amqp_send_method(rb->conn, RMQ_CHANNEL, AMQP_BASIC_CONSUME_METHOD,
	    &req);
	if (st != AMQP_STATUS_OK)
		snprintf(err, errlen, "rabbitmq: consume %s: %s", queue,
		    amqp_error_string2(st));
	free(queue);
	return st == AMQP_STATUS_OK ? 0 : -1;
}

#define RMQ_MOVE_BATCH	256

struct rmq_moved {
	amqp_bytes_t		 rkey;
	amqp_message_t		 msg;
};

/*
 * Work that waited in the unrouted queue goes through the work exchange
 * again, now that a queue may take it (what still finds none comes back).
 * On its own channel, by batches: get them all (a confirm arriving between
 * a get-ok and its content would confuse rabbitmq-c), publish them
 * confirmed, then ack the gets. Bounded by what waited when it began.
 */
static int
rmq_move_unrouted(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_queue_declare_ok_t	*ok;
	amqp_basic_get_ok_t	*g;
	amqp_rpc_reply_t	 r;
	struct rmq_moved	*mv;
	struct pollfd		 pfd;
	uint64_t		 last_tag, want;
	uint32_t		 left;
	int64_t			 end;
	int			 n, i, st, rv = -1;

	ok = amqp_queue_declare(rb->conn, RMQ_MOVE_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), 1, 0, 0, 0, amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1 || ok == NULL)
		return -1;
	left = ok->message_count;
	mv = util_xcalloc(RMQ_MOVE_BATCH, sizeof(*mv));
	while (left > 0) {
		last_tag = 0;
		for (n = 0; n < RMQ_MOVE_BATCH && left > 0; n++, left--) {
			r = amqp_basic_get(rb->conn, RMQ_MOVE_CHANNEL,
			    amqp_cstring_bytes(rb->unrouted), 0);
			if (r.reply_type != AMQP_RESPONSE_NORMAL) {
				bus_rmq_reply_error(r, rb->unrouted, err,
				    errlen);
				goto out;
			}
			if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
				left = 0;	/* another worker took them */
				break;
			}
			g = r.reply.decoded;
			last_tag = g->delivery_tag;
			mv[n].rkey = amqp_bytes_malloc_dup(g->routing_key);
			r = amqp_read_message(rb->conn, RMQ_MOVE_CHANNEL,
			    &mv[n].msg, 0);
			if (r.reply_type != AMQP_RESPONSE_NORMAL) {
				amqp_bytes_free(mv[n].rkey);
				bus_rmq_reply_error(r, rb->unrouted, err,
				    errlen);
				goto out;
			}
		}
		for (i = 0; i < n; i++) {
			st = amqp_basic_publish(rb->conn, RMQ_MOVE_CHANNEL,
			    amqp_cstring_bytes(rb->xwork), mv[i].rkey, 0, 0,
			    &mv[i].msg.properties, mv[i].msg.body);
			if (st != AMQP_STATUS_OK) {
				snprintf(err, errlen, "rabbitmq: move %s: %s",
				    rb->unrouted, amqp_error_string2(st));
				goto out;
			}
			rb->move_seq++;
		}
		for (i = 0; i < n; i++) {
			amqp_bytes_free(mv[i].rkey);
			amqp_destroy_message(&mv[i].msg);
		}
		n = 0;
		if (last_tag == 0)
			break;
		/* The copies confirmed, the originals go. */
		want = rb->move_seq;
		end = util_mono_ms() + rb->bus->publish_timeout_ms;
		while (rb->move_acked < want && !rb->move_nacked &&
		    util_mono_ms() < end) {
			pfd.fd = amqp_get_sockfd(rb->conn);
			pfd.events = POLLIN;
			pfd.revents = 0;
			if (!amqp_frames_enqueued(rb->conn) &&
			    !amqp_data_in_buffer(rb->conn))
				(void)poll(&pfd, 1, 100);
			if (bus_rmq_read(rb, err, errlen) == -1)
				goto out;
		}
		if (rb->move_acked < want || rb->move_nacked) {
			/* The gets return to the queue with the connection. */
			snprintf(err, errlen, "rabbitmq: moving %s: not "
			    "confirmed", rb->unrouted);
			goto out;
		}
		if (amqp_basic_ack(rb->conn, RMQ_MOVE_CHANNEL, last_tag, 1) !=
		    AMQP_STATUS_OK) {
			snprintf(err, errlen, "rabbitmq: ack %s", rb->unrouted);
			goto out;
		}
	}
	n = 0;
	rv = 0;
out:
	for (i = 0; rv == -1 && i < n; i++) {
		amqp_bytes_free(mv[i].rkey);
		amqp_destroy_message(&mv[i].msg);
	}
	free(mv);
	return rv;
}

int
bus_rmq_start_consumer(struct rmq_bus *rb, struct rmq_consumer *rc, char *err,
    size_t errlen)
{
	int	prefetch = rc->c->concurrency;

	if (rmq_work_queue(rb, rc->c->filter, err, errlen) == -1)
		return -1;
	/* Per consumer: concurrency here, workers x concurrency per topic. */
	amqp_basic_qos(rb->conn, RMQ_CHANNEL, 0,
	    (uint16_t)(prefetch > 65535 ? 65535 : prefetch), 0);
	if (bus_rmq_rpc_ok(rb, "basic.qos", err, errlen) == -1)
		return -1;
	if (rmq_consume(rb, util_xstrdup(rc->c->filter), rc->tag, 0, err,
	    errlen) == -1)
		return -1;
	rc->active = 1;
	return rmq_move_unrouted(rb, err, errlen);
}

int
bus_rmq_start_listener(struct rmq_bus *rb, struct rmq_listener *rl, char *err,
    size_t errlen)
{
	amqp_queue_declare_ok_t	*ok;
	amqp_bytes_t		 q;
	int			 rv;

	if (bus_rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	ok = amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_empty_bytes, 0, 0,
	    1, 1, amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rl->l->subject, err, errlen) == -1 || ok == NULL)
		return -1;
	q = amqp_bytes_malloc_dup(ok->queue);
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, q,
	    amqp_cstring_bytes(rb->xnotify), amqp_cstring_bytes(rl->l->subject),
	    amqp_empty_table);
	if (bus_rmq_rpc_ok(rb, rl->l->subject, err, errlen) == -1) {
		amqp_bytes_free(q);
		return -1;
	}
	rv = rmq_consume(rb, bus_rmq_strndup(q.bytes, q.len), rl->tag, 1, err,
	    errlen);
	amqp_bytes_free(q);
	if (rv == -1)
		return -1;
	rl->active = 1;
	return 0;
}
