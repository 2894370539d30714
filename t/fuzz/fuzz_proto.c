/*
 * fuzz_proto.c - a libFuzzer target for the protobuf messages sagad decodes
 * from outside: the first byte picks the message, the rest is its encoding.
 * RunRequest (a client's Run, then a saga built from it as handle_run does),
 * StepReply (a participant's reply, through step_reply()), Work and Done
 * (the bus envelopes, through work_unpack() and work_done_unpack()), Saga
 * (a stored saga, through saga_from_pb() and back). What decodes is used as
 * sagad would use it, so ASan sees the code behind the decoder too.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "step.h"
#include "util.h"
#include "work.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
run_request(const uint8_t *p, size_t n)
{
	static struct config_node node = { .name = (char *)(uintptr_t)"N" };
	static size_t steps[1] = { 0 };
	static struct config_flow flow = { .name = (char *)(uintptr_t)"F",
	    .mode = SAGA_MODE_SYNC, .steps = steps, .nsteps = 1 };
	static struct config cfg = { .nodes = &node, .nnodes = 1,
	    .flows = &flow, .nflows = 1 };
	Saga__V1__RunRequest *req;
	struct saga *s;
	struct saga_pb v;
	uint8_t *buf;
	size_t len;

	if ((req = saga__v1__run_request__unpack(NULL, n, p)) == NULL)
		return;
	s = saga_new("fuzz", &cfg, &flow, SAGA_MODE_UNSPECIFIED, 1);
	for (size_t i = 0; i < req->n_context && i < 4096; i++)
		saga_ctx_set(s, req->context[i]->key,
		    req->context[i]->value.data, req->context[i]->value.len);
	saga_pb_view(s, &v);
	len = saga__v1__saga__get_packed_size(&v.pb);
	buf = util_xcalloc(1, len + 1);
	saga__v1__saga__pack(&v.pb, buf);
	saga_pb_view_free(&v);
	free(buf);
	saga_free(s);
	saga__v1__run_request__free_unpacked(req, NULL);
}

static void
step_reply_msg(const uint8_t *p, size_t n)
{
	static struct config_node plain = { .name = (char *)(uintptr_t)"N" };
	static struct config_node raw = { .name = (char *)(uintptr_t)"R",
	    .reply = (char *)(uintptr_t)"r" };
	struct saga_kv *kv = NULL;
	size_t nkv = 0;

	if (step_reply(&plain, p, n, &kv, &nkv) == 0)
		step_kv_free(kv, nkv);
	kv = NULL;
	nkv = 0;
	if (step_reply(&raw, p, n, &kv, &nkv) == 0)
		step_kv_free(kv, nkv);
}

static void
work_msg(const uint8_t *p, size_t n)
{
	struct work w;
	char err[256], id[300];
	int state;

	memset(&w, 0, sizeof(w));
	if (work_unpack(&w, p, n, err, sizeof(err)) == 0)
		work_clear(&w);
	(void)work_done_unpack(p, n, id, sizeof(id), &state);
}

static void
saga_msg(const uint8_t *p, size_t n)
{
	Saga__V1__Saga *pb;
	struct saga *s;
	struct saga_pb v;

	if ((pb = saga__v1__saga__unpack(NULL, n, p)) == NULL)
		return;
	s = saga_from_pb(pb);
	saga_pb_view(s, &v);
	(void)saga__v1__saga__get_packed_size(&v.pb);
	saga_pb_view_free(&v);
	saga_free(s);
	saga__v1__saga__free_unpacked(pb, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		run_request(data + 1, size - 1);
		break;
	case 1:
		step_reply_msg(data + 1, size - 1);
		break;
	case 2:
		work_msg(data + 1, size - 1);
		break;
	default:
		saga_msg(data + 1, size - 1);
		break;
	}
	return 0;
}
