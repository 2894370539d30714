/*
 * bus_nats.c - the NATS JetStream driver of the message bus (bus.h), and the
 * only file of sagad that calls cnats. Work goes through one stream with
 * work-queue retention and file storage; each consumer is a durable pull
 * consumer with explicit acks; publishing is JetStream's asynchronous
 * publish with a Nats-Msg-Id for dedupe; notifications are core NATS.
 *
 * cnats runs its callbacks (connection state, publish acks, core messages)
 * on its own threads: here they only copy what they got and post it to the
 * loop through bus.c. cnats 3.4 has no asynchronous pull, so bus.c's fetch
 * thread calls nats_fetch(), which blocks. Acks go out from the loop thread:
 * natsMsg_Ack and friends only read the message's immutable subscription
 * fields and publish on the connection, which cnats locks.
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <nats/nats.h>

#include "auth.h"
#include "bus.h"
#include "bus_driver.h"
#include "util.h"

#define NATS_MS_NS(ms)	((int64_t)(ms) * 1000000)
#define NATS_MAX_URLS	16
#define NATS_CLOSE_WAIT_MS 5000	/* for cnats to confirm a close */
/*
 * A pull on a consumer that no longer exists (deleted by hand, or the
 * server restarted without its store) just times out: a consumer that
 * fetched nothing for this long asks whether it still exists.
 */
#define NATS_CONSUMER_CHECK_MS 5000

struct nats_bus {
	natsConnection	*nc;
	jsCtx		*js;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 closing;	/* (mu) bus_close asked for it */
	int		 closed;	/* (mu) cnats said it is closed */
	int		 published;	/* an async publish went out */
};

/*
 * A consumer's pull subscription. One remade keeps the ones before: messages
 * they fetched may still be in flight (their acks go nowhere, harmlessly).
 */
struct nats_consumer {
	natsSubscription	 *sub;
	natsSubscription	**old;
	int			  nold;
	int64_t			  checked_ms;	/* the fetch thread's */
	int			  lost;		/* remaking it failed: said */
};

struct nats_listener {
	natsSubscription *sub;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 done;		/* (mu) no more handler calls */
};

/* Waits on cv until *flag or ms pass; mu held. */
static void
nats_wait_flag(pthread_cond_t *cv, pthread_mutex_t *mu, int *flag, int ms)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (!*flag)
		if (pthread_cond_timedwait(cv, mu, &ts) != 0)
			break;
}

/* Puts cnats' own explanation of the last failure of this thread in err. */
static void
nats_error(char *err, size_t errlen, const char *what, natsStatus s,
    jsErrCode jerr)
{
	const char	*text;
	natsStatus	 last = NATS_OK;

	/* The thread's last error is the detailed one, if it is this one. */
	text = nats_GetLastError(&last);
	if (text == NULL || *text == '\0' || last != s)
		text = natsStatus_GetText(s);
	if (jerr != 0)
		snprintf(err, errlen, "nats: %s: %s (JetStream error %d)", what,
		    text, (int)jerr);
	else
		snprintf(err, errlen, "nats: %s: %s", what, text);
}

static int
nats_init(char *err, size_t errlen)
{
	natsStatus	s;

	/*
	 * No spinning on cnats' locks (its default tries a contended lock
	 * 2,000 times before it sleeps): a master or worker shares the cores
	 * with its siblings, Redis and NATS, and a thread that spins waits
	 * for one that is not running. Measured: 13 % of a worker's
	 * instructions went to pthread_mutex_trylock.
	 */
	if ((s = nats_Open(0)) != NATS_OK) {
		nats_error(err, errlen, "nats_Open", s, 0);
		return -1;
	}
	return 0;
}

static void
nats_fini(void)
{
	nats_CloseAndWait(NATS_CLOSE_WAIT_MS);
}

/* --- connection state, on cnats threads -------------------------------------- */

static void
nats_connected(natsConnection *nc, void *arg)
{
	(void)nc;
	bus_post_state(arg, BUS_CONNECTED);
}

static void
nats_disconnected(natsConnection *nc, void *arg)
{
	(void)nc;
	bus_post_state(arg, BUS_DISCONNECTED);
}

static void
nats_reconnected(natsConnection *nc, void *arg)
{
	(void)nc;
	bus_post_state(arg, BUS_RECONNECTED);
}

static void
nats_closed(natsConnection *nc, void *arg)
{
	struct bus	*bus = arg;
	struct nats_bus	*nb = bus->drv_data;
	int		 ours;

	pthread_mutex_lock(&nb->mu);
	ours = nb->closing;
	if (!ours) {
		const char	*text = NULL;
		natsStatus	 s = natsConnection_GetLastError(nc, &text);

		/* An auth refusal says "Authorization Violation". */
		bus_post_state_why(bus, BUS_CLOSED, s == NATS_OK ? NULL :
		    text != NULL && *text != '\0' ? text :
		    natsStatus_GetText(s));
	}
	nb->closed = 1;
	pthread_cond_broadcast(&nb->cv);
	pthread_mutex_unlock(&nb->mu);
}

/*
 * The delay before the next round of reconnect attempts doubles from the
 * first wait up to the cap. Both travel in the closure as one number, so
 * that the reconnect thread never touches the bus.
 */
static int64_t
nats_reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	uintptr_t	 packed = (uintptr_t)closure;
	int64_t		 wait = (int64_t)(packed >> 20), cap = packed & 0xfffff;

	(void)nc;
	while (--attempts > 0 && wait < cap)
		wait *= 2;
	return wait < cap ? wait : cap;
}

/* --- publish acks, on a cnats thread ------------------------------------------ */

static void
nats_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
    void *arg)
{
	struct bus	*bus = arg;
	struct bus_pub	*p;

	(void)js;
	if ((p = bus_pub_take(bus, msg)) != NULL) {
		if (pa != NULL) {
			p->res.duplicate = pa->Duplicate;
			p->res.seq = pa->Sequence;
		} else {
			/*
			 * No stream took it, or JetStream said no. With a
			 * replicated stream "no responders" is also what a
			 * publish meets while the stream elects a new leader
			 * (its node died: seconds): not a definite no, so the
			 * launch publishes it again (t/cluster.sh).
			 */
			p->res.refused = pae != NULL && (pae->ErrCode != 0 ||
			    (pae->Err == NATS_NO_RESPONDERS &&
			    bus->replicas <= 1));
			snprintf(p->errbuf, sizeof(p->errbuf),
			    "nats: publish %s: %s", natsMsg_GetSubject(msg),
			    pae != NULL && pae->ErrText != NULL &&
			    *pae->ErrText != '\0' ? pae->ErrText :
			    natsStatus_GetText(pae != NULL ? pae->Err :
			    NATS_ERR));
		}
		bus_post(bus, &p->item);
	}
	natsMsg_Destroy(msg);
}

/* --- open and close --------------------------------------------------------- */

/* nats.tls without a ca: the system's bundle (Debian's path). */
#define NATS_SYSTEM_CAS	"/etc/ssl/certs/ca-certificates.crt"

/*
 * TLS (nats.tls, issue 15): the server's certificate is verified against
 * nats.tls.ca or the system's CAs, and its name against the URL's host; a
 * client certificate when cert and key are set.
 */
static natsStatus
nats_tls_options(struct bus *bus, natsOptions *o)
{
	natsStatus s = natsOptions_SetSecure(o, true);

	if (s == NATS_OK && bus->tls_ca != NULL)
		s = natsOptions_LoadCATrustedCertificates(o, bus->tls_ca);
	if (s == NATS_OK && bus->tls_ca == NULL &&
	    access(NATS_SYSTEM_CAS, R_OK) == 0)
		s = natsOptions_LoadCATrustedCertificates(o, NATS_SYSTEM_CAS);
	if (s == NATS_OK && bus->tls_cert != NULL)
		s = natsOptions_LoadCertificatesChain(o, bus->tls_cert,
		    bus->tls_key);
	return s;
}

/*
 * With credentials: one plain connection attempt, without callbacks or
 * retries, so that a server refusing them fails the open with its reason
 * (sagad stops at start, saying why) rather than leaving a connection that
 * retries in silence. A server not reachable is not an error here.
 */
static int
nats_auth_probe(struct bus *bus, const char *url, const char **urls, int n,
    const char *pw, char *err, size_t errlen)
{
	natsOptions	*o = NULL;
	natsConnection	*nc = NULL;
	natsStatus	 s, last = NATS_OK;
	const char	*text;
	char		 shown[1100];

	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, urls, n);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, bus->timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetNoRandomize(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(o, false);
	if (s == NATS_OK && bus->user != NULL)
		s = natsOptions_SetUserInfo(o, bus->user, pw);
	if (s == NATS_OK && bus->creds != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(o, bus->creds,
		    NULL);
	if (s == NATS_OK && bus->tls)
		s = nats_tls_options(bus, o);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	text = nats_GetLastError(&last);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	if (s == NATS_OK || text == NULL)
		return 0;
	if (s != NATS_NOT_PERMITTED && strcasestr(text, "authoriz") == NULL &&
	    strcasestr(text, "authentic") == NULL &&
	    strcasestr(text, "creds") == NULL)
		return 0;
	/* cnats prefixes "(conn.c:1905): ". */
	if (text[0] == '(' && strstr(text, "): ") != NULL)
		text = strstr(text, "): ") + 3;
	snprintf(err, errlen, "nats: %s refused the credentials (%s): %s",
	    util_url_redact(url, shown, sizeof(shown)),
	    bus->creds != NULL ? "nats.creds" : bus->user != NULL ?
	    "nats.user and password" : "in nats.url", text);
	return -1;
}

static int
nats_open(struct bus *bus, const char *url, const char *name, char *err,
    size_t errlen)
{
	struct nats_bus	*nb;
	natsOptions	*opts = NULL;
	jsOptions	 jo;
	natsStatus	 s;
	const char	*urls[NATS_MAX_URLS];
	char		*list, *p, *save = NULL, shown[1100], pw[1100];
	int		 n = 0;

	if (bus->reconnect_max_ms > 0xfffff)
		bus->reconnect_max_ms = 0xfffff;
	if (bus->reconnect_wait_ms > bus->reconnect_max_ms)
		bus->reconnect_wait_ms = bus->reconnect_max_ms;
	list = util_xstrdup(url);
	for (p = strtok_r(list, ", ", &save); p != NULL;
	    p = strtok_r(NULL, ", ", &save)) {
		if (n == NATS_MAX_URLS) {
			snprintf(err, errlen, "nats: more than %d URLs in %s",
			    NATS_MAX_URLS, util_url_redact(url, shown,
			    sizeof(shown)));
			free(list);
			return -1;
		}
		urls[n++] = p;
	}
	if (n == 0) {
		snprintf(err, errlen, "nats: no URL in \"%s\"",
		    util_url_redact(url, shown, sizeof(shown)));
		free(list);
		return -1;
	}
	pw[0] = '\0';
	if (bus->password != NULL)
		snprintf(pw, sizeof(pw), "%s", bus->password);
	else if (bus->password_file != NULL && auth_read_secret(
	    bus->password_file, pw, sizeof(pw), err, errlen) == -1) {
		free(list);
		return -1;
	}
	if ((bus->user != NULL || bus->creds != NULL ||
	    strchr(url, '@') != NULL) && nats_auth_probe(bus, url, urls, n, pw, err, errlen) == -1) {
		auth_wipe(pw, sizeof(pw));
		free(list);
		return -1;
	}
	nb = util_xcalloc(1, sizeof(*nb));
	pthread_mutex_init(&nb->mu, NULL);
	pthread_cond_init(&nb->cv, NULL);
	bus->drv_data = nb;

	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, urls, n);
	if (s == NATS_OK && name != NULL)
		s = natsOptions_SetName(opts, name);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, bus->timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetNoRandomize(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(opts,
		    nats_reconnect_delay,
		    (void *)(((uintptr_t)bus->reconnect_wait_ms << 20) |
		    (uintptr_t)bus->reconnect_max_ms));
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true,
		    nats_connected, bus);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, nats_disconnected, bus);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, nats_reconnected, bus);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, nats_closed, bus);
	/* A server that vanished without closing TCP is noticed in ~6 s. */
	/* Credentials (cnats keeps them for every reconnection). */
	if (s == NATS_OK && bus->user != NULL)
		s = natsOptions_SetUserInfo(opts, bus->user, pw);
	if (s == NATS_OK && bus->creds != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(opts, bus->creds,
		    NULL);
	auth_wipe(pw, sizeof(pw));
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 3);
	/* nats.tls; a tls:// URL asks for TLS by itself. */
	if (s == NATS_OK && bus->tls)
		s = nats_tls_options(bus, opts);
	if (s != NATS_OK) {
		nats_error(err, errlen, "options", s, 0);
		goto fail;
	}
	s = natsConnection_Connect(&nb->nc, opts);
	if (s == NATS_OK)
		bus->state = BUS_CONNECTED;
	else if (s != NATS_NOT_YET_CONNECTED) {
		nats_error(err, errlen, util_url_redact(url, shown,
		    sizeof(shown)), s, 0);
		goto fail;
	}
	natsOptions_Destroy(opts);
	opts = NULL;
	free(list);
	list = NULL;

	jsOptions_Init(&jo);
	jo.Wait = bus->timeout_ms;
	jo.PublishAsync.AckHandler = nats_pub_ack;
	jo.PublishAsync.AckHandlerClosure = bus;
	if ((s = natsConnection_JetStream(&nb->js, nb->nc, &jo)) != NATS_OK) {
		nats_error(err, errlen, "JetStream context", s, 0);
		goto fail;
	}
	return 0;
fail:
	natsOptions_Destroy(opts);
	free(list);
	if (nb->nc != NULL) {
		pthread_mutex_lock(&nb->mu);
		nb->closing = 1;
		pthread_mutex_unlock(&nb->mu);
		natsConnection_Close(nb->nc);
		pthread_mutex_lock(&nb->mu);
		nats_wait_flag(&nb->cv, &nb->mu, &nb->closed,
		    NATS_CLOSE_WAIT_MS);
		pthread_mutex_unlock(&nb->mu);
		natsConnection_Destroy(nb->nc);
	}
	pthread_cond_destroy(&nb->cv);
	pthread_mutex_destroy(&nb->mu);
	free(nb);
	bus->drv_data = NULL;
	return -1;
}

static void
nats_close(struct bus *bus)
{
	struct nats_bus	*nb = bus->drv_data;
	natsMsgList	 pending;
	jsPubOptions	 po;

	/*
	 * Take back the publishes still waiting for an answer (bus.c fails
	 * them), then let a handler that is running right now return: after
	 * that cnats has nothing left to call nats_pub_ack for.
	 */
	/* cnats 3.4.1 crashes here if nothing was ever published. */
	if (nb->published &&
	    js_PublishAsyncGetPendingList(&pending, nb->js) == NATS_OK)
		natsMsgList_Destroy(&pending);
	jsPubOptions_Init(&po);
	po.MaxWait = NATS_CLOSE_WAIT_MS;
	js_PublishAsyncComplete(nb->js, &po);
	jsCtx_Destroy(nb->js);

	/* The closed callback is the last one cnats makes for a connection. */
	pthread_mutex_lock(&nb->mu);
	nb->closing = 1;
	pthread_mutex_unlock(&nb->mu);
	natsConnection_Close(nb->nc);
	pthread_mutex_lock(&nb->mu);
	nats_wait_flag(&nb->cv, &nb->mu, &nb->closed, NATS_CLOSE_WAIT_MS);
	pthread_mutex_unlock(&nb->mu);
	natsConnection_Destroy(nb->nc);
	pthread_cond_destroy(&nb->cv);
	pthread_mutex_destroy(&nb->mu);
	free(nb);
	bus->drv_data = NULL;
}

/* --- the stream ----------------------------------------------------------------- */

/* Whether an existing stream holds exactly the subjects we declare. */
static int
nats_same_subjects(struct nats_bus *nb, const char *stream,
    const char **subs, size_t n, char *err, size_t errlen)
{
	jsStreamInfo	*si = NULL;
	jsErrCode	 jerr = 0;
	natsStatus	 s;
	size_t		 i;
	int		 j, same;

	s = js_GetStreamInfo(&si, nb->js, stream, NULL, &jerr);
	if (s != NATS_OK) {
		nats_error(err, errlen, stream, s, jerr);
		return -1;
	}
	same = si->Config != NULL && (size_t)si->Config->SubjectsLen == n;
	for (i = 0; same && i < n; i++) {
		for (j = 0; j < si->Config->SubjectsLen; j++)
			if (strcmp(si->Config->Subjects[j], subs[i]) == 0)
				break;
		same = j < si->Config->SubjectsLen;
	}
	if (!same)
		snprintf(err, errlen, "nats: stream %s exists with subjects "
		    "%s%s, not %s: another deployment's? give this one its own "
		    "nats.stream and nats.subject_prefix", stream,
		    si->Config != NULL && si->Config->SubjectsLen > 0 ?
		    si->Config->Subjects[0] : "(none)",
		    si->Config != NULL && si->Config->SubjectsLen > 1 ?
		    ", ..." : "", n > 0 ? subs[0] : "(none)");
	jsStreamInfo_Destroy(si);
	return same ? 0 : -1;
}

static int
nats_declare(struct bus *bus, const char *const *subjects, size_t n,
    char *err, size_t errlen)
{
	struct nats_bus	*nb = bus->drv_data;
	jsStreamConfig	 sc;
	jsStreamInfo	*si = NULL;
	jsErrCode	 jerr = 0;
	const char	**subs;
	natsStatus	 s;
	size_t		 i;

	subs = util_xcalloc(n, sizeof(*subs));
	for (i = 0; i < n; i++)
		subs[i] = subjects[i];
	jsStreamConfig_Init(&sc);
	sc.Name = bus->stream;
	sc.Subjects = subs;
	sc.SubjectsLen = (int)n;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Replicas = bus->replicas;
	sc.Duplicates = NATS_MS_NS(bus->dedupe_window_ms);
	s = js_AddStream(&si, nb->js, &sc, NULL, &jerr);
	if (s != NATS_OK && jerr == JSStreamNameExistErr) {
		/*
		 * It exists with another configuration: bring it to ours,
		 * unless it holds other subjects (another deployment's, or
		 * this one's under an old subject_prefix): taking them over
		 * would strand that deployment's work.
		 */
		jerr = 0;
		if (nats_same_subjects(nb, bus->stream, subs, n, err,
		    errlen) == -1) {
			free(subs);
			return -1;
		}
		s = js_UpdateStream(&si, nb->js, &sc, NULL, &jerr);
	}
	free(subs);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		nats_error(err, errlen, bus->stream, s, jerr);
		if (jerr == JSStreamSubjectOverlapErr)
			snprintf(err + strlen(err), errlen - strlen(err),
			    "; another stream takes these subjects: give "
			    "this deployment its own nats.subject_prefix");
		return -1;
	}
	return 0;
}

static int
nats_depth(struct bus *bus, uint64_t *msgs, char *err, size_t errlen)
{
	struct nats_bus	*nb = bus->drv_data;
	jsStreamInfo	*si = NULL;
	jsErrCode	 jerr = 0;
	natsStatus	 s;

	s = js_GetStreamInfo(&si, nb->js, bus->stream, NULL, &jerr);
	if (s != NATS_OK) {
		nats_error(err, errlen, bus->stream, s, jerr);
		return -1;
	}
	*msgs = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	return 0;
}

/*
 * The subjects that store messages no consumer reads (its consumer_ttl ran
 * out, or it was deleted), each as the filter of the consumer that would:
 * each with an empty durable. A subject's last token is the verb (do,
 * undo...); the filters end in '*'.
 */
static void
nats_consumerless(struct nats_bus *nb, const char *stream,
    const jsConsumerInfoList *list, bus_consumer_each *each, void *arg)
{
	jsStreamInfo	*si = NULL;
	jsOptions	 jo;
	jsErrCode	 jerr = 0;
	char		 filter[512];

	jsOptions_Init(&jo);
	jo.Stream.Info.SubjectsFilter = ">";
	if (js_GetStreamInfo(&si, nb->js, stream, &jo, &jerr) != NATS_OK)
		return;
	for (int i = 0; si->State.Subjects != NULL &&
	    i < si->State.Subjects->Count; i++) {
		const jsStreamStateSubject	*ss = &si->State.Subjects->List[i];
		const char			*dot = strrchr(ss->Subject, '.');
		int				 read = 0;

		if (ss->Msgs == 0 || dot == NULL || (size_t)(dot -
		    ss->Subject) + 3 > sizeof(filter))
			continue;
		snprintf(filter, sizeof(filter), "%.*s.*",
		    (int)(dot - ss->Subject), ss->Subject);
		for (int k = 0; list != NULL && k < list->Count && !read; k++) {
			const jsConsumerInfo *ci = list->List[k];

			read = ci->Config != NULL &&
			    ci->Config->FilterSubject != NULL &&
			    (strcmp(ci->Config->FilterSubject, filter) == 0 ||
			    strcmp(ci->Config->FilterSubject, ss->Subject) == 0);
		}
		if (!read)
			each("", filter, ss->Msgs, arg);
	}
	jsStreamInfo_Destroy(si);
}

static int
nats_consumers(struct bus *bus, bus_consumer_each *each, void *arg,
    char *err, size_t errlen)
{
	struct nats_bus		*nb = bus->drv_data;
	jsConsumerInfoList	*list = NULL;
	jsErrCode		 jerr = 0;
	natsStatus		 s;

	s = js_Consumers(&list, nb->js, bus->stream, NULL, &jerr);
	if (s == NATS_NOT_FOUND) {	/* none at all */
		nats_consumerless(nb, bus->stream, NULL, each, arg);
		return 0;
	}
	if (s != NATS_OK) {
		nats_error(err, errlen, bus->stream, s, jerr);
		return -1;
	}
	for (int i = 0; i < list->Count; i++) {
		jsConsumerInfo *ci = list->List[i];

		if (ci->Config == NULL || ci->Config->Durable == NULL ||
		    ci->Config->FilterSubject == NULL)
			continue;
		each(ci->Config->Durable, ci->Config->FilterSubject,
		    ci->NumPending + (uint64_t)ci->NumAckPending, arg);
	}
	nats_consumerless(nb, bus->stream, list, each, arg);
	jsConsumerInfoList_Destroy(list);
	return 0;
}

/*
 * Whether the stream still stores a message on filter's subjects past seq
 * (1), none (0), or cannot say (-1). A consumer's messages handed out and
 * not acked that the stream no longer stores are no work: nats-server 2.9
 * killed -9 can restart with a consumer counting messages its stream lost
 * (or deleted when acked), and never redelivers them.
 */
static int
nats_stored_after(struct nats_bus *nb, const char *stream, const char *filter,
    uint64_t seq)
{
	jsStreamInfo	*si = NULL;
	jsOptions	 jo;
	jsErrCode	 jerr = 0;
	int		 found = 0;

	jsOptions_Init(&jo);
	jo.Stream.Info.SubjectsFilter = filter;
	if (js_GetStreamInfo(&si, nb->js, stream, &jo, &jerr) != NATS_OK)
		return -1;
	for (int i = 0; !found && si->State.Subjects != NULL &&
	    i < si->State.Subjects->Count; i++) {
		natsMsg *m = NULL;

		if (js_GetLastMsg(&m, nb->js, stream,
		    si->State.Subjects->List[i].Subject, NULL, &jerr) !=
		    NATS_OK) {
			found = -1;
			break;
		}
		found = natsMsg_GetSequence(m) > seq;
		natsMsg_Destroy(m);
	}
	jsStreamInfo_Destroy(si);
	return found;
}

/* How many messages the stream stores on filter's subjects, or -1. */
static int64_t
nats_stored(struct nats_bus *nb, const char *stream, const char *filter)
{
	jsStreamInfo	*si = NULL;
	jsOptions	 jo;
	jsErrCode	 jerr = 0;
	int64_t		 n = 0;
	natsStatus	 s;

	jsOptions_Init(&jo);
	jo.Stream.Info.SubjectsFilter = filter;
	s = js_GetStreamInfo(&si, nb->js, stream, &jo, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return 0;
	if (s != NATS_OK)
		return -1;
	for (int i = 0; si->State.Subjects != NULL &&
	    i < si->State.Subjects->Count; i++)
		n += (int64_t)si->State.Subjects->List[i].Msgs;
	jsStreamInfo_Destroy(si);
	return n;
}

static int
nats_backlog(struct bus *bus, const char *durable, const char *filter,
    uint64_t *msgs, char *err, size_t errlen)
{
	struct nats_bus	*nb = bus->drv_data;
	jsConsumerInfo	*ci = NULL;
	jsErrCode	 jerr = 0;
	natsStatus	 s;

	s = js_GetConsumerInfo(&ci, nb->js, bus->stream, durable, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
	    jerr == JSStreamNotFoundErr) {
		/*
		 * Gone (its consumer_ttl ran out, or deleted): what the stream
		 * still stores on its subjects is work for the next consumer
		 * made there.
		 */
		int64_t n = filter != NULL ? nats_stored(nb, bus->stream,
		    filter) : 0;

		if (n < 0) {
			snprintf(err, errlen, "%s: stream %s: cannot count what "
			    "it stores", durable, bus->stream);
			return -1;
		}
		*msgs = (uint64_t)n;
		return 0;
	}
	if (s != NATS_OK) {
		nats_error(err, errlen, durable, s, jerr);
		return -1;
	}
	*msgs = ci->NumPending + (uint64_t)ci->NumAckPending;
	if (ci->NumPending == 0 && ci->NumAckPending > 0 && filter != NULL &&
	    nats_stored_after(nb, bus->stream, filter,
	    ci->AckFloor.Stream) == 0)
		*msgs = 0;	/* counts of lost messages only */
	jsConsumerInfo_Destroy(ci);
	return 0;
}

/* --- consumers ------------------------------------------------------------------ */

/* Creates (or updates) the durable consumer and binds a pull to it. */
static int
nats_consumer_make(struct bus_consumer *c, natsSubscription **subp, char *err,
    size_t errlen)
{
	struct bus		*bus = c->bus;
	struct nats_bus		*nb = bus->drv_data;
	jsConsumerConfig	 cc;
	jsConsumerInfo		*ci = NULL;
	jsSubOptions		 so;
	jsErrCode		 jerr = 0;
	natsStatus		 s;

	jsConsumerConfig_Init(&cc);
	cc.Durable = c->durable;
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = NATS_MS_NS(c->ack_wait_ms);
	cc.MaxDeliver = c->max_deliver > 0 ? c->max_deliver : -1;
	cc.FilterSubject = c->filter;
	cc.MaxAckPending = c->max_ack_pending;
	/*
	 * Nobody reading it this long (a renamed pod's, a removed topic's),
	 * nats-server deletes it; what its subjects still hold stays in the
	 * stream for the next consumer made on them (bus_consumer_backlog
	 * looks there when the consumer is gone).
	 */
	cc.InactiveThreshold = (int64_t)bus->consumer_ttl_s * 1000000000;
	s = js_AddConsumer(&ci, nb->js, bus->stream, &cc, NULL, &jerr);
	if (s != NATS_OK && (jerr == JSConsumerNameExistErr ||
	    jerr == JSConsumerExistingActiveErr)) {
		/* A restart with new counts: update the durable consumer. */
		jerr = 0;
		s = js_UpdateConsumer(&ci, nb->js, bus->stream, &cc, NULL,
		    &jerr);
	}
	jsConsumerInfo_Destroy(ci);
	if (s != NATS_OK) {
		nats_error(err, errlen, c->durable, s, jerr);
		return -1;
	}
	jsSubOptions_Init(&so);
	so.Stream = bus->stream;
	so.Consumer = c->durable;	/* bind: never create or delete it */
	s = js_PullSubscribe(subp, nb->js, c->filter, c->durable, NULL, &so,
	    &jerr);
	if (s != NATS_OK) {
		nats_error(err, errlen, c->durable, s, jerr);
		return -1;
	}
	return 0;
}

static int
nats_consumer_open(struct bus_consumer *c, char *err, size_t errlen)
{
	struct nats_consumer	*nc;
	natsSubscription	*sub = NULL;

	if (nats_consumer_make(c, &sub, err, errlen) == -1)
		return -1;
	nc = util_xcalloc(1, sizeof(*nc));
	nc->sub = sub;
	nc->checked_ms = util_mono_ms();
	c->drv = nc;
	return 0;
}

static void
nats_consumer_free(struct bus_consumer *c)
{
	struct nats_consumer *nc = c->drv;

	if (nc == NULL)		/* it never opened */
		return;
	/* Destroy, not Unsubscribe: the durable consumer stays. */
	natsSubscription_Destroy(nc->sub);
	for (int i = 0; i < nc->nold; i++)
		natsSubscription_Destroy(nc->old[i]);
	free(nc->old);
	free(nc);
	c->drv = NULL;
}

/*
 * On the consumer's thread, when it has fetched nothing for a while: a
 * consumer the stream no longer has is made again (the messages its
 * filter still finds in the stream are delivered from the start), and the
 * stream first if it is gone too. One that cannot be made now is tried
 * again at the next check.
 */
static void
nats_consumer_check(struct bus_consumer *c)
{
	struct bus		*bus = c->bus;
	struct nats_bus		*nb = bus->drv_data;
	struct nats_consumer	*nc = c->drv;
	jsConsumerInfo		*ci = NULL;
	natsSubscription	*sub = NULL;
	jsErrCode		 jerr = 0;
	natsStatus		 s;
	char			 err[256];
	int			 idle;

	s = js_GetConsumerInfo(&ci, nb->js, bus->stream, c->durable, NULL,
	    &jerr);
	jsConsumerInfo_Destroy(ci);
	if (s == NATS_OK) {
		nc->lost = 0;
		return;
	}
	if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr &&
	    jerr != JSStreamNotFoundErr)
		return;		/* the server cannot say now */
	if (jerr == JSStreamNotFoundErr && *bus->stream_subject != '\0') {
		/*
		 * The stream too (deleted by hand: the master declares it at
		 * each connection only). Declared here, off any loop.
		 */
		const char *subjects[] = { bus->stream_subject };

		if (nats_declare(bus, subjects, 1, err, sizeof(err)) == 0)
			bus_post_warn(bus, "stream %s was gone: declared it "
			    "again (%s)", bus->stream, bus->stream_subject);
	}
	if (nats_consumer_make(c, &sub, err, sizeof(err)) == -1) {
		if (!nc->lost)
			bus_post_warn(bus, "consumer %s is gone from stream %s "
			    "and cannot be made again yet: %s (tried every "
			    "%d s)", c->durable, bus->stream, err,
			    NATS_CONSUMER_CHECK_MS / 1000);
		nc->lost = 1;
		return;
	}
	/*
	 * Only this thread adds to inflight: with none in flight no message
	 * of the subscriptions before is alive, and they can go.
	 */
	pthread_mutex_lock(&bus->mu);
	idle = c->inflight == 0;
	pthread_mutex_unlock(&bus->mu);
	if (idle) {
		natsSubscription_Destroy(nc->sub);
		for (int i = 0; i < nc->nold; i++)
			natsSubscription_Destroy(nc->old[i]);
		nc->nold = 0;
	} else {
		nc->old = util_xrealloc(nc->old, (size_t)(nc->nold + 1) *
		    sizeof(*nc->old));
		nc->old[nc->nold++] = nc->sub;
	}
	nc->sub = sub;
	nc->lost = 0;
	bus_post_warn(bus, "consumer %s was gone from stream %s (deleted, or "
	    "the server lost its store): made again; what its subjects still "
	    "hold is delivered", c->durable, bus->stream);
}

/*
 * On the consumer's thread. A no-wait pull takes what is there, up to max;
 * when nothing is, a pull for one message waits up to wait_ms, so that a
 * lone message is not held back waiting for a batch to fill.
 */
static int
nats_fetch(struct bus_consumer *c, struct bus_msg **out, int max, int wait_ms)
{
	struct nats_consumer	*nc = c->drv;
	natsSubscription	*sub = nc->sub;
	jsFetchRequest		 req;
	natsMsgList		 list;
	jsMsgMetaData		*meta;
	struct bus_msg		*m;
	natsStatus		 s;
	int			 i;

	jsFetchRequest_Init(&req);
	req.Batch = max;
	req.NoWait = true;
	req.Expires = NATS_MS_NS(wait_ms);
	s = natsSubscription_FetchRequest(&list, sub, &req);
	if (s == NATS_NOT_FOUND || s == NATS_TIMEOUT) {
		jsFetchRequest_Init(&req);
		req.Batch = 1;
		req.Expires = NATS_MS_NS(wait_ms);
		s = natsSubscription_FetchRequest(&list, sub, &req);
	}
	if (s != NATS_OK) {
		if (util_mono_ms() - nc->checked_ms >= NATS_CONSUMER_CHECK_MS) {
			nc->checked_ms = util_mono_ms();
			nats_consumer_check(c);
		}
		return s == NATS_TIMEOUT || s == NATS_NOT_FOUND ? 0 : -1;
	}
	nc->checked_ms = util_mono_ms();
	for (i = 0; i < list.Count && i < max; i++) {
		m = util_xcalloc(1, sizeof(*m));
		m->drv = list.Msgs[i];
		list.Msgs[i] = NULL;
		m->subject = natsMsg_GetSubject(m->drv);
		m->data = natsMsg_GetData(m->drv);
		m->len = (size_t)natsMsg_GetDataLength(m->drv);
		m->delivered = 1;
		if (natsMsg_GetMetaData(&meta, m->drv) == NATS_OK) {
			m->delivered = (int)meta->NumDelivered;
			jsMsgMetaData_Destroy(meta);
		}
		out[i] = m;
	}
	natsMsgList_Destroy(&list);
	return i;
}

static int
nats_finish(struct bus_msg *m, enum bus_finish how, int delay_ms)
{
	natsStatus	s = NATS_OK;

	switch (how) {
	case BUS_ACK:
		s = natsMsg_Ack(m->drv, NULL);
		break;
	case BUS_NAK:
		if (delay_ms > 0)
			s = natsMsg_NakWithDelay(m->drv, delay_ms, NULL);
		else
			s = natsMsg_Nak(m->drv, NULL);
		break;
	case BUS_TERM:
		s = natsMsg_Term(m->drv, NULL);
		break;
	case BUS_PROGRESS:
		s = natsMsg_InProgress(m->drv, NULL);
		break;
	}
	return s == NATS_OK ? 0 : -1;
}

static const char *
nats_header(const struct bus_msg *m, const char *key)
{
	const char	*v = NULL;

	if (natsMsgHeader_Get(m->drv, key, &v) != NATS_OK)
		return NULL;
	return v;
}

static void
nats_msg_free(struct bus_msg *m)
{
	natsMsg_Destroy(m->drv);
	m->drv = NULL;
}

/* --- publishing ------------------------------------------------------------------ */

static int
nats_publish(struct bus *bus, struct bus_pub *p, const char *subject,
    const void *data, size_t len, const char *msg_id, char *err,
    size_t errlen)
{
	struct nats_bus	*nb = bus->drv_data;
	natsMsg		*msg = NULL;
	jsPubOptions	 po;
	natsStatus	 s;

	if (len > INT32_MAX) {
		snprintf(err, errlen, "nats: publish %s: %zu bytes is too big",
		    subject, len);
		return -1;
	}
	if ((s = natsMsg_Create(&msg, subject, NULL, data, (int)len)) !=
	    NATS_OK) {
		nats_error(err, errlen, subject, s, 0);
		return -1;
	}
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = bus->publish_timeout_ms;

	/* Listed before it is sent: the answer may come before we return. */
	p->drv = msg;
	pthread_mutex_lock(&bus->mu);
	TAILQ_INSERT_TAIL(&bus->pubs, p, pending);
	pthread_mutex_unlock(&bus->mu);
	if ((s = js_PublishMsgAsync(nb->js, &msg, &po)) != NATS_OK) {
		/* cnats did not keep it: no answer will come. */
		nats_error(err, errlen, subject, s, 0);
		pthread_mutex_lock(&bus->mu);
		TAILQ_REMOVE(&bus->pubs, p, pending);
		pthread_mutex_unlock(&bus->mu);
		natsMsg_Destroy(msg);
		return -1;
	}
	nb->published = 1;
	return 0;
}

static int
nats_notify(struct bus *bus, const char *subject, const void *data,
    size_t len, char *err, size_t errlen)
{
	struct nats_bus	*nb = bus->drv_data;
	natsStatus	 s;

	if (len > INT32_MAX) {
		snprintf(err, errlen, "nats: notify %s: %zu bytes is too big",
		    subject, len);
		return -1;
	}
	s = natsConnection_Publish(nb->nc, subject, data, (int)len);
	if (s != NATS_OK) {
		nats_error(err, errlen, subject, s, 0);
		return -1;
	}
	return 0;
}

/* --- listeners: core subscriptions whose handler runs on a cnats thread ---- */

static void
nats_note(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	(void)nc;
	(void)sub;
	bus_post_note(arg, natsMsg_GetSubject(msg), natsMsg_GetData(msg),
	    (size_t)natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static void
nats_note_done(void *arg)
{
	struct nats_listener	*nl = arg;

	pthread_mutex_lock(&nl->mu);
	nl->done = 1;
	pthread_cond_broadcast(&nl->cv);
	pthread_mutex_unlock(&nl->mu);
}

static int
nats_listen(struct bus_listener *l, char *err, size_t errlen)
{
	struct nats_bus		*nb = l->bus->drv_data;
	struct nats_listener	*nl;
	natsStatus		 s;

	nl = util_xcalloc(1, sizeof(*nl));
	pthread_mutex_init(&nl->mu, NULL);
	pthread_cond_init(&nl->cv, NULL);
	s = natsConnection_Subscribe(&nl->sub, nb->nc, l->subject, nats_note,
	    l);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(nl->sub, nats_note_done,
		    nl);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(nl->sub, -1, -1);
	if (s != NATS_OK) {
		nats_error(err, errlen, l->subject, s, 0);
		if (nl->sub != NULL) {
			natsSubscription_Unsubscribe(nl->sub);
			natsSubscription_Destroy(nl->sub);
		}
		pthread_cond_destroy(&nl->cv);
		pthread_mutex_destroy(&nl->mu);
		free(nl);
		return -1;
	}
	l->drv = nl;
	return 0;
}

static void
nats_unlisten(struct bus_listener *l)
{
	struct nats_listener	*nl = l->drv;

	/* The complete callback runs after the handler's last return. */
	natsSubscription_Unsubscribe(nl->sub);
	pthread_mutex_lock(&nl->mu);
	nats_wait_flag(&nl->cv, &nl->mu, &nl->done, NATS_CLOSE_WAIT_MS);
	pthread_mutex_unlock(&nl->mu);
	natsSubscription_Destroy(nl->sub);
	pthread_cond_destroy(&nl->cv);
	pthread_mutex_destroy(&nl->mu);
	free(nl);
	l->drv = NULL;
}

const struct bus_driver bus_nats_driver = {
	.scheme = "nats",
	.init = nats_init,
	.fini = nats_fini,
	.open = nats_open,
	.close = nats_close,
	.declare = nats_declare,
	.depth = nats_depth,
	.backlog = nats_backlog,
	.consumers = nats_consumers,
	.consumer_open = nats_consumer_open,
	.consumer_free = nats_consumer_free,
	.fetch = nats_fetch,
	.finish = nats_finish,
	.header = nats_header,
	.msg_free = nats_msg_free,
	.publish = nats_publish,
	.notify = nats_notify,
	.listen = nats_listen,
	.unlisten = nats_unlisten,
};
