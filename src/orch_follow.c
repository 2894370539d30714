/*
 * orch_follow.c - callers of sagas this master does not drive (see
 * orch_int.h): a Run of a saga another master or a worker runs waits for
 * its end in the store (a join), and Get and Watch read the store. Each
 * follower is freed in exactly one place: the answer's callback, or the
 * caller's cancel when no store call is pending.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "grpc/server.h"
#include "orch_int.h"
#include "util.h"

static void
join_free(struct join *j)
{
	free(j->id);
	free(j);
}

static void	get_done(enum store_result, struct store_saga *, const char *,
		    void *);

static void
join_event(enum store_result res, const Saga__V1__SagaEvent *ev SAGAD_UNUSED,
    int final, const char *err, void *arg)
{
	struct join *j = arg;

	if (res == STORE_OK && !final)
		return;
	j->watch = NULL;
	if (res != STORE_OK) {
		if (j->call != NULL) {
			grpc_call_on_cancel(j->call, NULL, NULL);
			grpc_call_finish(j->call, res == STORE_NOT_FOUND ?
			    GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE,
			    err);
		}
		join_free(j);
		return;
	}
	j->getting = 1;
	store_get(j->o->store, j->id, get_done, j);
}

static void
join_cancelled(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	struct join *j = arg;

	j->call = NULL;
	if (j->getting)
		return;		/* get_done frees it */
	if (j->watch != NULL)
		store_watch_cancel(j->watch);
	join_free(j);
}

/* Waits for a saga to end in the store, then answers with it. */
void
follow_start(struct orch *o, struct grpc_call *call, const char *id)
{
	struct join *j = util_xcalloc(1, sizeof(*j));

	j->o = o;
	j->call = call;
	j->id = util_xstrdup(id);
	grpc_call_on_cancel(call, join_cancelled, j);
	j->watch = store_watch(o->store, id, join_event, j);
}

/*
 * Get and Watch: the GetRequest's id checked and the store up, or the call
 * finished with the reason and NULL.
 */
static struct join *
join_of_request(struct orch *o, struct grpc_call *call)
{
	const Saga__V1__GetRequest	*req;
	struct join			*j;

	req = (const Saga__V1__GetRequest *)grpc_call_request(call);
	if (req->id == NULL || *req->id == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: expected a saga id");
		return NULL;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return NULL;
	}
	j = util_xcalloc(1, sizeof(*j));
	j->o = o;
	j->call = call;
	j->id = util_xstrdup(req->id);
	return j;
}

/* The saga as the store has it, to a Get or a join's caller. */
static void
get_done(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct join *j = arg;

	if (j->call != NULL) {
		grpc_call_on_cancel(j->call, NULL, NULL);
		if (res == STORE_OK)
			grpc_call_reply(j->call, &rec->saga->base);
		else if (res == STORE_NOT_FOUND)
			grpc_call_finish(j->call, GRPC_STATUS_NOT_FOUND,
			    "no saga with that id (never run, or expired)");
		else
			grpc_call_finish(j->call, GRPC_STATUS_UNAVAILABLE,
			    err);
	}
	join_free(j);
}

static void
get_cancelled(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	struct join *j = arg;

	j->call = NULL;		/* get_done frees it */
}

void
follow_get(struct grpc_call *call, void *arg)
{
	struct join *j;

	if ((j = join_of_request(arg, call)) == NULL)
		return;
	j->getting = 1;
	grpc_call_on_cancel(call, get_cancelled, j);
	store_get(j->o->store, j->id, get_done, j);
}

static void
watch_event(enum store_result res, const Saga__V1__SagaEvent *ev, int final,
    const char *err, void *arg)
{
	struct join *j = arg;

	if (res == STORE_OK) {
		int rc = grpc_call_send(j->call, &ev->base);

		if (rc == GRPC_CALL_EAGAIN) {
			/* A reader this slow is dropped, not buffered. */
			store_watch_cancel(j->watch);
			final = 1;
			res = STORE_BUSY;
			err = "the watcher reads too slowly";
		}
		if (!final)
			return;
	}
	grpc_call_on_cancel(j->call, NULL, NULL);
	switch (res) {
	case STORE_OK:
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
		break;
	case STORE_NOT_FOUND:
		grpc_call_finish(j->call, GRPC_STATUS_NOT_FOUND,
		    "no saga with that id (never run, or expired)");
		break;
	case STORE_BUSY:
		grpc_call_finish(j->call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
		break;
	default:
		grpc_call_finish(j->call, GRPC_STATUS_UNAVAILABLE, err);
		break;
	}
	join_free(j);
}

static void
watch_cancelled(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	struct join *j = arg;

	store_watch_cancel(j->watch);
	join_free(j);
}

void
follow_watch(struct grpc_call *call, void *arg)
{
	struct join *j;

	if ((j = join_of_request(arg, call)) == NULL)
		return;
	grpc_call_on_cancel(call, watch_cancelled, j);
	j->watch = store_watch(j->o->store, j->id, watch_event, j);
}
