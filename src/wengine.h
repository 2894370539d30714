/*
 * wengine.h - the worker's engine: what sagad-worker does with each message
 * of its topic. For a step topic (Flow/Node of an async or throttling flow)
 * one message is one call of the node's action or compensation:
 *
 *	bus message -> read the saga -> saga_resume (what the stored state
 *	implies) -> record the call as started -> call the participant ->
 *	record its result and the next call -> publish the next message (or
 *	the saga's end: callback work, the throttling pod's done notice) ->
 *	ack
 *
 * Every decision comes from the stored saga and src/saga.c's rules, so a
 * message delivered twice (a worker killed, an ack lost) finds its step done
 * and only publishes what follows, deduplicated by message id. A retryable
 * failure is recorded and the message is handed back to the bus with the
 * backoff as its delay. For the callbacks topic one message is one attempt to
 * POST the ended saga to its callback URL.
 *
 * Library code: it never logs (it reports through the log callback) and
 * never exits. Everything runs on the loop thread of the event_base.
 */
#ifndef SAGAD_WENGINE_H
#define SAGAD_WENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct event_base;
struct bus;
struct bus_msg;
struct bus_consumer_opts;
struct store;
struct grpc_client;
struct config;
struct wengine;

struct wengine_params {
	struct event_base	*base;
	struct bus		*bus;
	struct store		*store;
	struct grpc_client	*client;
	struct config		*cfg;		/* referenced, not taken */
	const char		*topic;		/* "Flow/Node" or "callbacks" */
	util_log_fn		 log;		/* may be NULL */
	void			*log_arg;
};

struct wengine_stats {
	uint64_t	 messages;	/* handed to the engine */
	uint64_t	 unread;	/* decided from the record they carried */
	uint64_t	 calls;		/* participant calls made */
	uint64_t	 republished;	/* redeliveries that found work done */
	uint64_t	 ended;		/* sagas this engine ended */
	uint64_t	 naks;		/* messages handed back for later */
	uint64_t	 delivered;	/* callbacks answered 2xx */
	uint64_t	 given_up;	/* callbacks abandoned */
	uint64_t	 cancelled;	/* sagas an operator's Cancel stopped */
};

/*
 * A topic a reload removed, read until its queued work is done (the master
 * decides): "Flow/Node~MODE" (MODE async or throttling).
 */
#define WENGINE_LINGER_SEP	'~'

/* NULL with err when the topic is not in the config. */
struct wengine	*wengine_new(const struct wengine_params *, char *err,
		    size_t errlen);
/*
 * The consumer this topic reads: durable name, filter subject, MaxAckPending
 * = the node's workers x concurrency, AckWait from the node's timeout. The
 * strings are the engine's.
 */
void		 wengine_consumer_opts(const struct wengine *, int concurrency,
		    struct bus_consumer_opts *);
/* The bus_msg_cb of the topic's consumer; arg is the engine. */
void		 wengine_handle(struct bus_msg *, void *arg);
/*
 * SIGHUP: new messages use cfg (timeouts, retries, callback allow list);
 * messages in flight finish with the config they started with. -1 with err
 * when the topic is gone from cfg (the engine keeps the old one).
 */
int		 wengine_set_config(struct wengine *, struct config *,
		    char *err, size_t errlen);
int		 wengine_inflight(const struct wengine *);
void		 wengine_stats(const struct wengine *, struct wengine_stats *);
/*
 * Periodic work (about once a second): listens on saga.cancel once the bus
 * is up, so that an operator's Cancel stops a call in flight at once.
 */
void		 wengine_cron(struct wengine *);
/*
 * Stops all work at once: calls in flight are cancelled and the messages
 * left unfinished (the bus redelivers them once closed). Call before
 * bus_close() and store_free(), then wengine_free() after them.
 */
void		 wengine_close(struct wengine *);
void		 wengine_free(struct wengine *);

#endif
