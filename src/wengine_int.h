/*
 * wengine_int.h - what the worker engine's files share (wengine.c: step
 * messages; wengine_callback.c: callback delivery), and nothing else
 * includes: the engine, its jobs (one per bus message) and how a job ends.
 */
#ifndef SAGAD_WENGINE_INT_H
#define SAGAD_WENGINE_INT_H

#include <sys/queue.h>

#include "config.h"
#include "driver.h"
#include "util.h"
#include "wengine.h"
#include "work.h"

#define WE_RETRY_MS		1000	/* Redis or the bus failed: again in */
#define WE_NAME_MAX		(2 * CONFIG_NAME_MAX + 2)
#define WE_CANCEL_KEEP		256	/* Cancel notices remembered */
#define WE_CANCEL_KEEP_MS	60000
#define WE_REASON_MAX		256

struct bus;
struct bus_listener;
struct bus_msg;
struct callback;
struct grpc_client;
struct grpc_client_call;
struct store;

struct job;

#define WE_LEGACY_TIMEOUT_MS	30000	/* the legacy topic's ack wait base */
#define WE_DEF_TRIES		10	/* deliveries before a definition is lost */

struct wengine {
	struct event_base	*base;
	struct bus		*bus;
	struct store		*store;
	struct grpc_client	*client;
	struct tls_cache	*tls;		/* the services' TLS contexts */
	struct config		*cfg;
	struct defs		*defs;		/* older flow definitions */
	struct callback		*http;
	int			 callbacks;	/* the callbacks topic */
	char			 topic[WE_NAME_MAX];
	char			 flow[CONFIG_NAME_MAX + 1];
	char			 node[CONFIG_NAME_MAX + 1];
	char			 durable[WORK_SUBJECT_MAX];
	char			 filter[WORK_SUBJECT_MAX];
	enum saga_mode		 mode;
	int			 workers;
	int			 timeout_ms;
	uint64_t		 rng;
	int			 closing;
	int			 inflight;
	struct wengine_stats	 st;
	LIST_HEAD(, job)	 jobs;
	struct bus_listener	*cancel_l;	/* saga.cancel */
	struct {
		char		 id[STORE_ID_MAX + 1];
		char		 reason[WE_REASON_MAX];
		int64_t		 ms;
	}			 cancels[WE_CANCEL_KEEP];
	unsigned		 ncancels;
	int64_t			 last_cancel_ms;	/* mono ms of the newest */
	util_log_fn		 log;
	void			*log_arg;
};

struct job {
	struct wengine		*e;
	struct bus_msg		*msg;
	struct work		 w;
	struct driver		 d;		/* once the saga is read */
	int			 delay_ms;	/* WAIT: nak delay */
	struct grpc_client_call	*call;
	int			 busy;		/* a store, bus or http callback
						   is pending */
	void			(*then)(struct job *);
	int			 def_lost;	/* its flow definition is gone */
	LIST_ENTRY(job)		 entry;
};

void	 wengine_log(struct wengine *, enum util_level, const char *id,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A job ends in exactly one of these; each frees it. */
void	 wengine_job_ack(struct job *);
void	 wengine_job_nak(struct job *, int delay_ms);
/* A callback came after wengine_close(): frees the job and says 1. */
int	 wengine_job_closing(struct job *);

/* wengine_callback.c: a message of the callbacks topic. */
void	 wengine_callback_start(struct job *);

#endif
