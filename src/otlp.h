/*
 * otlp.h - the process's span exporter: OTLP/HTTP with protobuf bodies
 * (proto/opentelemetry) POSTed to tracing.otlp_endpoint over one
 * persistent HTTP/1.1 connection. Spans are packed as they end into a
 * bounded queue and sent in batches, by size or after a short timer. A
 * span never waits: when the queue is full (the collector slow or down) it
 * is dropped and counted. One exporter a process (the master, each
 * sagad-worker), started by the process layer.
 *
 * What it is not: it decides nothing about traces (src/trace.c) and does
 * not know sagas (src/trace_saga.c says which spans a saga makes).
 */
#ifndef SAGAD_OTLP_H
#define SAGAD_OTLP_H

#include <stdint.h>

#include "util.h"

struct event_base;

#define OTLP_MAX_ATTRS	12

enum otlp_kind { OTLP_INTERNAL = 1, OTLP_SERVER = 2, OTLP_CLIENT = 3 };

struct otlp_attr {
	const char	*key;
	const char	*s;		/* a string, or NULL for i */
	int64_t		 i;
};

/* A finished span; the strings are copied into the queue's bytes. */
struct otlp_span {
	const uint8_t	*trace_id;	/* 16 bytes */
	const uint8_t	*span_id;	/* 8 bytes */
	const uint8_t	*parent_id;	/* 8 bytes, or NULL for a root */
	const char	*trace_state;	/* NULL: none */
	uint8_t		 flags;
	const char	*name;
	enum otlp_kind	 kind;
	int64_t		 start_ns, end_ns;
	int		 error;		/* status ERROR with status_msg */
	const char	*status_msg;
	struct otlp_attr attrs[OTLP_MAX_ATTRS];
	int		 nattrs;
};

struct otlp_stats {
	uint64_t	queued;		/* spans taken */
	uint64_t	exported;	/* spans the collector accepted */
	uint64_t	dropped;	/* queue full, or their batch failed */
	uint64_t	batches;	/* POSTs made */
	uint64_t	failed;		/* POSTs that failed */
};

/*
 * Starts the process's exporter to endpoint (http://host[:port][/path]);
 * pod and process name the resource (service.instance.id, sagad.process).
 * log hears a batch failing (at most one line every 10 s). -1 with err.
 */
int	 otlp_start(struct event_base *, const char *endpoint,
	    const char *pod, const char *process, util_log_fn log,
	    void *log_arg, char *err, size_t errlen);
void	 otlp_stop(void);
int	 otlp_running(void);

void	 otlp_attr_str(struct otlp_span *, const char *key, const char *v);
void	 otlp_attr_int(struct otlp_span *, const char *key, int64_t v);
/* Queues a finished span (dropped and counted when the queue is full). */
void	 otlp_emit(const struct otlp_span *);
void	 otlp_get_stats(struct otlp_stats *);

#endif
