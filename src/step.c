/*
 * step.c - the request of a step's call and the meaning of its reply (see
 * step.h), shared by the master's sync engine and sagad-worker.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga/v1/saga.pb-c.h"
#include "step.h"
#include "util.h"

void
step_kv_free(struct saga_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

int
step_reply(const struct config_node *node, const uint8_t *data, size_t len,
    struct saga_kv **out, size_t *nout)
{
	Saga__V1__StepReply	*rep;
	struct saga_kv		*kv;

	*out = NULL;
	*nout = 0;
	if (node->reply != NULL) {
		/* Raw mode: the reply's bytes, whatever message they are. */
		kv = util_xcalloc(1, sizeof(*kv));
		kv->key = util_xstrdup(node->reply);
		kv->value = util_xcalloc(1, len + 1);
		memcpy(kv->value, data, len);
		kv->len = len;
		*out = kv;
		*nout = 1;
		return 0;
	}
	if (node->request != NULL)
		return 0;	/* raw request, reply not kept */
	rep = saga__v1__step_reply__unpack(NULL, len, data);
	if (rep == NULL)
		return -1;
	kv = util_xcalloc(rep->n_context, sizeof(*kv));
	for (size_t i = 0; i < rep->n_context; i++) {
		kv[i].key = util_xstrdup(rep->context[i]->key);
		kv[i].len = rep->context[i]->value.len;
		kv[i].value = util_xcalloc(1, kv[i].len + 1);
		if (kv[i].len > 0)
			memcpy(kv[i].value, rep->context[i]->value.data,
			    kv[i].len);
	}
	*out = kv;
	*nout = rep->n_context;
	saga__v1__step_reply__free_unpacked(rep, NULL);
	return 0;
}


uint8_t *
step_request(const struct saga *s, const struct config_node *node,
    const struct saga_action *a, size_t *len, char *err, size_t errlen)
{
	Saga__V1__StepRequest	 req;
	struct saga_pb		 v;
	uint8_t			*buf;

	const char		*key;

	/*
	 * Raw mode: the context entry goes out verbatim. A compensation sends
	 * compensate_request's entry, by default the action's own.
	 */
	key = a->compensate && node->compensate_request != NULL ?
	    node->compensate_request : node->request;
	if (key != NULL) {
		const struct saga_kv *kv = saga_ctx_get(s, key);

		if (kv == NULL) {
			snprintf(err, errlen, "raw request: the context has no "
			    "\"%s\"", key);
			return NULL;
		}
		buf = util_xcalloc(1, kv->len + 1);
		memcpy(buf, kv->value, kv->len);
		*len = kv->len;
		return buf;
	}
	saga__v1__step_request__init(&req);
	saga_pb_view(s, &v);
	req.saga_id = s->id;
	req.flow = s->flow;
	req.step = (char *)(uintptr_t)node->name;
	req.compensate = a->compensate ? 1 : 0;
	req.attempt = a->attempt;
	/* StepRequest's context entries have the layout of Saga's. */
	req.n_context = v.pb.n_context;
	req.context = (Saga__V1__StepRequest__ContextEntry **)(void *)
	    v.pb.context;
	*len = saga__v1__step_request__get_packed_size(&req);
	buf = util_xcalloc(1, *len + 1);
	saga__v1__step_request__pack(&req, buf);
	saga_pb_view_free(&v);
	return buf;
}


/* n lowercase hex digits at s, not all '0' if nonzero is set. */
static int
lowhex(const char *s, size_t n, int nonzero)
{
	int any = 0;

	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
		any |= s[i] != '0';
	}
	return !nonzero || any;
}

int
step_traceparent_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 55 || !lowhex(s, 2, 0) || strncmp(s, "ff", 2) == 0 ||
	    s[2] != '-' || !lowhex(s + 3, 32, 1) || s[35] != '-' ||
	    !lowhex(s + 36, 16, 1) || s[52] != '-' || !lowhex(s + 53, 2, 0))
		return 0;
	if (strncmp(s, "00", 2) == 0)
		return n == 55;
	/* A later version: more fields may follow, printable ASCII. */
	if (n > 55 && s[55] != '-')
		return 0;
	for (size_t i = 55; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

void
step_metadata(struct grpc_metadata *md, const struct saga *s,
    const char *traceparent)
{
	grpc_md_add(md, "x-request-id", s->id, strlen(s->id));
	if (traceparent != NULL && step_traceparent_valid(traceparent))
		grpc_md_add(md, "traceparent", traceparent,
		    strlen(traceparent));
}
