/*
 * wengine_callback.c - callback delivery: a message of the callbacks topic
 * POSTs its saga as JSON to the saga's callback_url (callback.c is the HTTP
 * client, and checks the URL against callbacks.allow again). The first
 * delivery takes the saga from the final record its message carries (the
 * worker that ended the saga put it there: wengine.c's job_end_effects);
 * a redelivery, or a message without one (a large saga, an older sagad),
 * reads the store. A 2xx is done; another 4xx is refused and not
 * retried; anything else (5xx, no answer) comes back on the bus with
 * exponential backoff until callbacks.retries is spent.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "callback.h"
#include "saga.h"
#include "store.h"
#include "wengine_int.h"

#define WE_CALLBACK_BACKOFF_MS	250
#define WE_CALLBACK_BACKOFF_MAX	30000

static void
callback_posted(int status, const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;
	int		 n;

	if (wengine_job_closing(j))
		return;
	if (status >= 200 && status < 300) {
		e->st.delivered++;
		wengine_log(e, UTIL_DEBUG, j->d.s->id, "callback delivered to %s "
		    "(HTTP %d)", j->d.callback, status);
		wengine_job_ack(j);
		return;
	}
	if (status != 0 && status < 500) {
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback to %s refused (%s): "
		    "not retried", j->d.callback, err);
		wengine_job_ack(j);
		return;
	}
	n = j->msg != NULL ? bus_msg_delivered(j->msg) : 1;
	if (n > j->d.cfg->callbacks.retries) {
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback to %s: giving up "
		    "after %d tries: %s", j->d.callback, n, err);
		wengine_job_ack(j);
		return;
	}
	wengine_log(e, UTIL_INFO, j->d.s->id, "callback to %s failed (%s): try %d "
	    "of %d comes later", j->d.callback, err, n + 1,
	    j->d.cfg->callbacks.retries + 1);
	wengine_job_nak(j, (int)saga_backoff_ms(WE_CALLBACK_BACKOFF_MS, n,
	    WE_CALLBACK_BACKOFF_MAX, &e->rng));
}

static void
callback_got(enum store_result res, struct store_saga *rec,
    const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;
	char		*body, perr[SAGAD_ERRLEN];
	size_t		 len;
	int		 rc;

	if (wengine_job_closing(j))
		return;
	if (res == STORE_NOT_FOUND) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "callback of a saga that "
		    "is gone from the store: dropped");
		wengine_job_ack(j);
		return;
	}
	if (res != STORE_OK) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "store read failed, the "
		    "callback comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		wengine_job_nak(j, WE_RETRY_MS);
		return;
	}
	driver_init(&j->d, e->cfg, NULL, saga_from_pb(rec->saga), &e->rng);
	driver_set(&j->d, NULL, rec->callback, NULL);
	if (j->d.callback == NULL) {
		wengine_job_ack(j);
		return;
	}
	body = saga_to_json(j->d.s, &len);
	j->busy = 1;
	rc = callback_post(e->http, j->d.callback, j->d.cfg->callbacks.allow,
	    j->d.cfg->callbacks.nallow, body, len, callback_posted, j, perr,
	    sizeof(perr));
	free(body);
	if (rc == -1) {
		j->busy = 0;
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback not sent: %s", perr);
		wengine_job_ack(j);
	}
}

void
wengine_callback_start(struct job *j)
{
	struct store_saga rec;

	j->busy = 1;
	if (j->w.record == NULL || j->msg == NULL ||
	    bus_msg_delivered(j->msg) != 1) {
		store_get(j->e->store, j->w.saga_id, callback_got, j);
		return;
	}
	j->e->st.unread++;
	memset(&rec, 0, sizeof(rec));
	rec.saga = (Saga__V1__Saga *)(uintptr_t)j->w.record->saga;
	rec.rev = j->w.record->rev;
	rec.pod = j->w.record->pod;
	rec.owner = "";
	rec.callback = j->w.record->callback;
	rec.cancel = "";
	callback_got(STORE_OK, &rec, NULL, j);
}
