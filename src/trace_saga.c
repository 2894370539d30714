/*
 * trace_saga.c - a saga's spans and the line of its end (trace_saga.h).
 * The ids come from src/trace.c, the export is src/otlp.c's; a span is
 * queued only when its trace is sampled and the process's exporter runs.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "otlp.h"
#include "trace_saga.h"
#include "util.h"

/* A Run's span, waiting for the call's answer. */
struct run_span {
	uint8_t		 trace_id[TRACE_ID_LEN];
	uint8_t		 span_id[TRACE_SPAN_LEN];
	uint8_t		 parent_id[TRACE_SPAN_LEN];
	int		 has_parent;
	uint8_t		 flags;
	int64_t		 start_ns;
	char		*saga_id;
	char		*flow;
	char		*tracestate;
};

static const char *
md_str(struct grpc_call *call, const char *key)
{
	const struct grpc_md *md = grpc_md_get(grpc_call_metadata(call), key);

	return md != NULL && md->len > 0 ? (const char *)md->value : NULL;
}

static void
run_span_done(struct grpc_call *call, int status, void *arg)
{
	struct run_span	*rs = arg;
	struct otlp_span sp;

	(void)call;
	memset(&sp, 0, sizeof(sp));
	sp.trace_id = rs->trace_id;
	sp.span_id = rs->span_id;
	sp.parent_id = rs->has_parent ? rs->parent_id : NULL;
	sp.trace_state = rs->tracestate;
	sp.flags = rs->flags;
	sp.name = "saga.v1.Orchestrator/Run";
	sp.kind = OTLP_SERVER;
	sp.start_ns = rs->start_ns;
	sp.end_ns = trace_now_ns();
	sp.error = status != 0;
	sp.status_msg = grpc_status_name(status);
	otlp_attr_str(&sp, "rpc.system", "grpc");
	otlp_attr_str(&sp, "rpc.service", "saga.v1.Orchestrator");
	otlp_attr_str(&sp, "rpc.method", "Run");
	otlp_attr_int(&sp, "rpc.grpc.status_code", status);
	otlp_attr_str(&sp, "saga.id", rs->saga_id);
	otlp_attr_str(&sp, "saga.flow", rs->flow);
	otlp_emit(&sp);
	free(rs->saga_id);
	free(rs->flow);
	free(rs->tracestate);
	free(rs);
}

void
trace_run(struct grpc_call *call, struct driver *d, uint64_t *rng)
{
	const char	*tp = md_str(call, "traceparent");
	const char	*ts = md_str(call, "tracestate");
	const char	*bg = md_str(call, "baggage");
	uint8_t		 in_tid[TRACE_ID_LEN], in_sid[TRACE_SPAN_LEN], in_fl;
	int		 valid;
	struct run_span	*rs;
	char		 buf[TRACE_PARENT_LEN + 1];

	valid = trace_parse(tp, in_tid, in_sid, &in_fl) == 0;
	if (d->cfg->tracing.otlp_endpoint == NULL) {
		/* Not tracing: forwarded as they came, if valid. */
		driver_set(d, NULL, NULL, valid ? tp : NULL);
		driver_set_trace(d, ts, bg, NULL);
		return;
	}
	if (valid) {
		memset(&d->tr, 0, sizeof(d->tr));
		d->tr.on = 1;
		memcpy(d->tr.trace_id, in_tid, TRACE_ID_LEN);
		d->tr.flags = in_fl & TRACE_SAMPLED;
		trace_new_id(d->tr.span_id, TRACE_SPAN_LEN, rng); /* the saga */
	} else {
		/*
		 * None, or one that is not: a new trace, no tracestate. Its
		 * ids derive from the saga id, as a process that picks the
		 * saga up later without its context derives them.
		 */
		trace_ctx_from(&d->tr, NULL, NULL,
		    d->cfg->tracing.sample_ratio, d->s->id, rng);
		ts = NULL;
	}
	trace_new_id(d->tr.parent_id, TRACE_SPAN_LEN, rng);	/* the Run */
	d->tr.has_parent = 1;
	trace_format(buf, d->tr.trace_id, d->tr.span_id, d->tr.flags);
	free(d->traceparent);
	d->traceparent = util_xstrdup(buf);
	free(d->tracestate);
	d->tracestate = ts != NULL ? util_xstrdup(ts) : NULL;
	free(d->baggage);
	d->baggage = bg != NULL ? util_xstrdup(bg) : NULL;
	if (!(d->tr.flags & TRACE_SAMPLED) || !otlp_running())
		return;
	rs = util_xcalloc(1, sizeof(*rs));
	memcpy(rs->trace_id, d->tr.trace_id, TRACE_ID_LEN);
	memcpy(rs->span_id, d->tr.parent_id, TRACE_SPAN_LEN);
	if (valid) {
		memcpy(rs->parent_id, in_sid, TRACE_SPAN_LEN);
		rs->has_parent = 1;
	}
	rs->flags = d->tr.flags;
	rs->start_ns = trace_now_ns();
	rs->saga_id = util_xstrdup(d->s->id);
	rs->flow = util_xstrdup(d->s->flow);
	rs->tracestate = ts != NULL ? util_xstrdup(ts) : NULL;
	grpc_call_on_done(call, run_span_done, rs);
}

void
trace_call_start(struct driver *d, uint64_t *rng)
{
	trace_call_begin(&d->tr, rng);
}

void
trace_call_end(const struct driver *d, int status, const char *msg)
{
	const struct saga_action	*a = &d->a;
	const struct config_node	*node;
	struct otlp_span		 sp;
	const char			*path;

	if (!d->tr.on || !(d->tr.flags & TRACE_SAMPLED) || !otlp_running() ||
	    d->tr.call_start_ns == 0)
		return;
	node = driver_node(d, a->step);
	path = a->compensate ? node->compensate : node->action;
	memset(&sp, 0, sizeof(sp));
	sp.trace_id = d->tr.trace_id;
	sp.span_id = d->tr.call_id;
	sp.parent_id = d->tr.span_id;
	sp.trace_state = d->tracestate;
	sp.flags = d->tr.flags;
	sp.name = path != NULL && *path == '/' ? path + 1 : path;
	sp.kind = OTLP_CLIENT;
	sp.start_ns = d->tr.call_start_ns;
	sp.end_ns = trace_now_ns();
	sp.error = status != 0;
	sp.status_msg = msg != NULL && *msg != '\0' ? msg :
	    grpc_status_name(status);
	otlp_attr_str(&sp, "rpc.system", "grpc");
	otlp_attr_int(&sp, "rpc.grpc.status_code", status);
	otlp_attr_str(&sp, "saga.id", d->s->id);
	otlp_attr_str(&sp, "saga.flow", d->s->flow);
	otlp_attr_str(&sp, "saga.step", node->name);
	otlp_attr_str(&sp, "saga.kind", a->compensate ? "compensate" :
	    "action");
	otlp_attr_int(&sp, "saga.attempt", a->attempt);
	otlp_attr_str(&sp, "server.address",
	    d->cfg->services[node->service].address);
	otlp_emit(&sp);
}

void
trace_saga_end(const struct driver *d)
{
	const struct saga	*s = d->s;
	struct util_saga_end	 e;
	struct otlp_span	 sp;
	int64_t			 now_ns = trace_now_ns();

	e.id = s->id;
	e.flow = s->flow;
	e.mode = config_mode_name(s->mode);
	e.state = saga_state_name(s->state);
	e.error = s->error != NULL ? s->error : "";
	e.duration_ms = now_ns / 1000000 - s->created_ms;
	if (e.duration_ms < 0)
		e.duration_ms = 0;
	util_saga_end(&e);
	if (!d->tr.on || !(d->tr.flags & TRACE_SAMPLED) || !otlp_running())
		return;
	memset(&sp, 0, sizeof(sp));
	sp.trace_id = d->tr.trace_id;
	sp.span_id = d->tr.span_id;
	sp.parent_id = d->tr.has_parent ? d->tr.parent_id : NULL;
	sp.trace_state = d->tracestate;
	sp.flags = d->tr.flags;
	sp.name = s->flow;
	sp.kind = OTLP_INTERNAL;
	sp.start_ns = s->created_ms * 1000000;
	sp.end_ns = now_ns;
	sp.error = s->state != SAGA_STATE_COMPLETED;
	sp.status_msg = *e.error != '\0' ? e.error : e.state;
	otlp_attr_str(&sp, "saga.id", s->id);
	otlp_attr_str(&sp, "saga.flow", s->flow);
	otlp_attr_str(&sp, "saga.mode", e.mode);
	otlp_attr_str(&sp, "saga.state", e.state);
	otlp_attr_int(&sp, "saga.steps", (int64_t)s->nsteps);
	if (*e.error != '\0')
		otlp_attr_str(&sp, "saga.error", e.error);
	otlp_emit(&sp);
}
