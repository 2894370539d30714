/*
 * wengine_callback.c - callback delivery: an async saga's final state
 * POSTed as JSON to its callback_url (callback.c is the HTTP client, and
 * checks the URL against callbacks.allow again at each try).
 *
 * The worker that ends a saga makes the first try itself, before it acks
 * the step's message (wengine_callback_end): a crash before that ack
 * redelivers the message, which finds the saga final and tries again, so a
 * callback is never lost, and most need no message of their own. A 2xx is
 * done; another 4xx is refused and not retried; anything else (5xx, no
 * answer) is queued on the callbacks topic, the record carried along, with
 * the try counted (Work.tries), and only then is the step's message acked.
 *
 * A message of the callbacks topic (wengine_callback_start) waits its
 * backoff first when a try was made before it, then POSTs: its first try
 * from the final record it carries (work.h) without reading Redis; a later
 * try, or one without a record (a large saga), after reading the store. It is retried on the bus with exponential backoff until
 * callbacks.retries is spent.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "callback.h"
#include "saga.h"
#include "store.h"
#include "wengine_int.h"

#define WE_CALLBACK_BACKOFF_MS	250
#define WE_CALLBACK_BACKOFF_MAX	30000

/* Tries made once this delivery's is done. */
static int
callback_tries(const struct job *j)
{
	int d = j->msg != NULL ? bus_msg_delivered(j->msg) : 1;

	/* After a try of its own, a message's first delivery only waited. */
	return j->w.tries > 0 ? j->w.tries + d - 1 : d;
}

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
	n = callback_tries(j);
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
	struct store_saga	 rec;
	struct wengine		*e = j->e;
	int			 d = j->msg != NULL ? bus_msg_delivered(j->msg) : 1;

	if (j->w.tries > 0 && d == 1) {
		/* Its first try failed a moment ago: the backoff comes first. */
		wengine_job_nak(j, (int)saga_backoff_ms(WE_CALLBACK_BACKOFF_MS,
		    j->w.tries, WE_CALLBACK_BACKOFF_MAX, &e->rng));
		return;
	}
	j->busy = 1;
	/* The record is its try's if no try was made since it was written. */
	if (j->w.record == NULL || d != (j->w.tries > 0 ? 2 : 1)) {
		store_get(e->store, j->w.saga_id, callback_got, j);
		return;
	}
	e->st.unread++;
	memset(&rec, 0, sizeof(rec));
	rec.saga = (Saga__V1__Saga *)(uintptr_t)j->w.record->saga;
	rec.rev = j->w.record->rev;
	rec.pod = j->w.record->pod;
	rec.owner = "";
	rec.callback = j->w.record->callback;
	rec.cancel = "";
	callback_got(STORE_OK, &rec, NULL, j);
}

/* --- the first try, by the worker that ended the saga ----------------------- */

/* Queues the callback on the callbacks topic, one try made, then the ack. */
static void
callback_queue(struct job *j)
{
	char			 id[STORE_ID_MAX + 16], subject[WORK_SUBJECT_MAX];
	const char		*pod = j->d.pod != NULL ? j->d.pod : "";
	struct work		 w;
	struct work_record	 rec;
	struct saga_pb		 v;
	uint8_t			*buf;
	size_t			 len;

	memset(&w, 0, sizeof(w));
	w.saga_id = j->d.s->id;
	w.flow = j->d.s->flow;
	w.pod = (char *)(uintptr_t)pod;
	w.mode = j->d.s->mode;
	w.traceparent = j->w.traceparent;
	w.tries = 1;
	saga_pb_view(j->d.s, &v);
	memset(&rec, 0, sizeof(rec));
	rec.rev = j->d.rev;
	rec.saga = &v.pb;
	rec.pod = pod;
	rec.callback = j->d.callback;
	w.record = &rec;
	snprintf(id, sizeof(id), "%s:callback", j->d.s->id);
	buf = work_pack(&w, &len);
	saga_pb_view_free(&v);
	(void)work_callback_subject(subject, sizeof(subject),
	    j->e->cfg->nats.subject_prefix);
	wengine_job_publish(j, subject, id, buf, len, wengine_job_ack);
	free(buf);
}

static void
callback_end_posted(int status, const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;

	if (wengine_job_closing(j))
		return;
	if (status >= 200 && status < 300) {
		e->st.delivered++;
		wengine_log(e, UTIL_DEBUG, j->d.s->id, "callback delivered to %s "
		    "(HTTP %d)", j->d.callback, status);
	} else if (status != 0 && status < 500) {
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback to %s refused (%s): "
		    "not retried", j->d.callback, err);
	} else if (j->d.cfg->callbacks.retries == 0) {
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback to %s: giving up "
		    "after 1 tries: %s", j->d.callback, err);
	} else {
		wengine_log(e, UTIL_INFO, j->d.s->id, "callback to %s failed (%s): "
		    "try 2 of %d comes later", j->d.callback, err,
		    j->d.cfg->callbacks.retries + 1);
		callback_queue(j);
		return;
	}
	wengine_job_ack(j);
}

void
wengine_callback_end(struct job *j)
{
	struct wengine	*e = j->e;
	char		*body, perr[SAGAD_ERRLEN];
	size_t		 len;
	int		 rc;

	body = saga_to_json(j->d.s, &len);
	j->busy = 1;
	rc = callback_post(e->http, j->d.callback, j->d.cfg->callbacks.allow,
	    j->d.cfg->callbacks.nallow, body, len, callback_end_posted, j,
	    perr, sizeof(perr));
	free(body);
	if (rc == -1) {
		j->busy = 0;
		e->st.given_up++;
		wengine_log(e, UTIL_WARN, j->d.s->id, "callback not sent: %s", perr);
		wengine_job_ack(j);
	}
}
