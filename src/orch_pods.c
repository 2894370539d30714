/*
 * orch_pods.c - the pods' registry and the adoption of a dead pod's
 * throttling work (see orch_int.h). A throttling saga's work waits on its
 * pod's own subjects, which only that pod's workers read: a pod that dies
 * for good (a container rolled out under a new name, the default pod id
 * being the hostname) would strand it. So every master holds a lease on
 * its pod id in saga:pods, renewed every lease_ms / 3; the sweep of any
 * other master takes a lease that ran out (one taker, by the script) and
 * adopts that pod: its master runs workers on the dead pod's throttling
 * topics (sup's "Flow/Node@POD", with -P POD) and renews the dead pod's
 * lease while they drain. When every one of those topics has had nothing
 * left to do for ADOPT_EMPTY_CHECKS checks in a row, the adoption is over:
 * the workers are retired and the lease let go: the pod is gone
 * (saga:pods:gone). The held callers of the dead pod are gone: its sagas
 * just run to their end. An adopter that dies in turn stops renewing, and
 * another master adopts the pod again.
 *
 * Work can still land on a gone pod's subjects: its sagas' next steps are
 * published where the saga lives, and a worker outside it may drive one (a
 * saga on an older flow definition, on the legacy topic; the sweeper's
 * launch lease; a publish the bus confirmed late). So every master looks,
 * every GONE_CHECK_MS, at GONE_PER_CHECK gone pods' topics (in turn: with
 * 40 gone pods each is seen every 100 s by each master) for work there,
 * and takes such a pod back (one taker, by the script): adopted again. A
 * pod is remembered as gone for GONE_KEEP_MS.
 *
 * It is not: Run's admission (the adopted work does not count against this
 * pod's max_queue), nor sync sagas (their own leases, orch_sweep.c), nor
 * async ones (any pod's workers read them).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "orch_int.h"
#include "util.h"
#include "work.h"

#define ADOPT_MAX		4	/* pods adopted at most per sweep */
#define ADOPT_CHECK_MS		2000	/* backlog checks of adopted pods */
#define ADOPT_EMPTY_CHECKS	3	/* empty checks in a row to let go */
#define GONE_CHECK_MS		5000	/* looks at gone pods' topics */
#define GONE_PER_CHECK		2	/* gone pods looked at per check (its
					   requests block the loop: a few) */
#define GONE_KEEP_MS		(7LL * 24 * 3600 * 1000)	/* a week */

static void	adopted_clear(struct orch_adopted *);
static void	lingers_check(struct orch *);
static void	orphans_scan(struct orch *);

static int
has_throttling(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nflows; i++)
		if (cfg->flows[i].mode == SAGA_MODE_THROTTLING)
			return 1;
	return 0;
}

static int
in_list(char *const *list, size_t n, const char *pod)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], pod) == 0)
			return 1;
	return 0;
}

static void
list_free(char ***list, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
	*n = 0;
}

/* Drops the first k of the list: those a beat carried. */
static void
list_drop(char **list, size_t *n, size_t k)
{
	if (k == 0)
		return;		/* list may be NULL then */
	for (size_t i = 0; i < k; i++)
		free(list[i]);
	memmove(list, list + k, (*n - k) * sizeof(*list));
	*n -= k;
}

static int
adopted_find(const struct orch *o, const char *pod)
{
	for (size_t i = 0; i < o->nadopted; i++)
		if (strcmp(o->adopted[i].pod, pod) == 0)
			return (int)i;
	return -1;
}

static void
adopt(struct orch *o, const char *pod)
{
	struct orch_adopted	*a;
	struct config_topic	*t;
	size_t			 n;

	if (strcmp(pod, o->cfg->pod_id) == 0 || adopted_find(o, pod) != -1)
		return;
	o->adopted = util_xrealloc(o->adopted, (o->nadopted + 1) *
	    sizeof(*o->adopted));
	a = &o->adopted[o->nadopted];
	memset(a, 0, sizeof(*a));
	a->pod = util_xstrdup(pod);
	n = config_topics(o->cfg, &t);
	a->topics = util_xcalloc(n + 1, sizeof(*a->topics));
	a->conc = util_xcalloc(n + 1, sizeof(*a->conc));
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (t[i].callbacks || t[i].legacy ||
		    t[i].mode != SAGA_MODE_THROTTLING)
			continue;
		len = strlen(t[i].name) + strlen(pod) + 2;
		a->topics[a->ntopics] = util_xcalloc(1, len);
		snprintf(a->topics[a->ntopics], len, "%s%c%s", t[i].name,
		    ORCH_POD_SEP, pod);
		a->conc[a->ntopics++] = t[i].concurrency;
	}
	free(t);
	o->nadopted++;
	o->adopt_gen++;
	if (in_list(o->reclaim, o->nreclaim, pod))
		orch_log(o, UTIL_WARN, NULL, "pod %s: work was queued on its "
		    "subjects after its adoption ended: adopting it again",
		    pod);
	else
		orch_log(o, UTIL_WARN, NULL, "pod %s stopped renewing its "
		    "lease: adopting its throttling work (its held callers are "
		    "gone; its sagas run to their end here)", pod);
}

static void
pods_answered(enum store_result res, char *const *ids, size_t n,
    const char *err, void *arg)
{
	struct orch *o = arg;

	o->pods_busy = 0;
	if (o->closing)
		return;
	if (res != STORE_OK) {
		orch_log(o, UTIL_DEBUG, NULL, "pods' registry: %s", err != NULL ?
		    err : store_result_name(res));
		return;
	}
	/*
	 * Let go: the script moved them to the gone. Only those the beat
	 * carried: an adoption that ended while it was on its way is let go
	 * at the next one (forgotten here, its lease would lapse and it would
	 * be taken again as a dead pod).
	 */
	list_drop(o->releasing, &o->nreleasing, o->releasing_sent);
	o->releasing_sent = 0;
	/* The pods taken, an empty id, then the pods gone. */
	list_free(&o->gone, &o->ngone);
	for (size_t i = 0, taken = 1; i < n; i++) {
		if (ids[i][0] == '\0')
			taken = 0;
		else if (taken)
			adopt(o, ids[i]);
		else {
			o->gone = util_xrealloc(o->gone, (o->ngone + 1) *
			    sizeof(*o->gone));
			o->gone[o->ngone++] = util_xstrdup(ids[i]);
		}
	}
	/* Asked for; one found since waits for the next beat. */
	list_drop(o->reclaim, &o->nreclaim, o->reclaim_sent);
	o->reclaim_sent = 0;
}

static void
pods_beat(struct orch *o)
{
	struct store_pods_beat	  b;
	const char		**renew;
	size_t			  n = 0;
	int			  adopting;

	adopting = !o->draining && has_throttling(o->cfg);
	renew = util_xcalloc(o->nadopted + 1, sizeof(*renew));
	renew[n++] = o->cfg->pod_id;
	for (size_t i = 0; i < o->nadopted; i++)
		renew[n++] = o->adopted[i].pod;
	memset(&b, 0, sizeof(b));
	b.me = o->cfg->pod_id;
	b.lease_ms = o->cfg->redis.lease_ms;
	b.max = adopting ? ADOPT_MAX : 0;
	b.gone_keep_ms = GONE_KEEP_MS;
	b.renew = renew;
	b.nrenew = n;
	b.release = (const char *const *)o->releasing;
	b.nrelease = o->releasing_sent = o->nreleasing;
	o->reclaim_sent = 0;
	if (adopting) {
		b.reclaim = (const char *const *)o->reclaim;
		b.nreclaim = o->reclaim_sent = o->nreclaim;
	}
	o->pods_busy = 1;
	store_pods(o->store, &b, pods_answered, o);
	free(renew);
}

/*
 * What the adopted pod's throttling topics hold: 0 when nothing is left,
 * 1 when something is, -1 when the bus cannot say now.
 */
static int
pod_backlog(struct orch *o, const char *pod)
{
	char		durable[WORK_SUBJECT_MAX], filter[WORK_SUBJECT_MAX];
	char		err[SAGAD_ERRLEN];
	uint64_t	n;

	for (size_t f = 0; f < o->cfg->nflows; f++) {
		const struct config_flow *fl = &o->cfg->flows[f];

		if (fl->mode != SAGA_MODE_THROTTLING)
			continue;
		for (size_t s = 0; s < fl->nsteps; s++) {
			const char *node = o->cfg->nodes[fl->steps[s]].name;

			if (work_durable(durable, sizeof(durable),
			    SAGA_MODE_THROTTLING, pod, fl->name, node) == -1 ||
			    work_filter(filter, sizeof(filter),
			    o->cfg->nats.subject_prefix, SAGA_MODE_THROTTLING,
			    pod, fl->name, node) == -1)
				continue;
			if (bus_consumer_backlog(o->bus, durable, filter, &n,
			    err, sizeof(err)) == -1) {
				orch_log(o, UTIL_DEBUG, NULL, "pod %s: %s", pod,
				    err);
				return -1;
			}
			if (n > 0)
				return 1;
		}
	}
	return 0;
}

static void
adoptions_check(struct orch *o)
{
	size_t i = 0;

	if (o->bus == NULL || !bus_is_connected(o->bus))
		return;
	while (i < o->nadopted) {
		struct orch_adopted	*a = &o->adopted[i];
		int			 b = pod_backlog(o, a->pod);

		if (b != 0) {
			if (b == 1)
				a->empty = 0;
			i++;
			continue;
		}
		if (++a->empty < ADOPT_EMPTY_CHECKS) {
			i++;
			continue;
		}
		orch_log(o, UTIL_INFO, NULL, "pod %s: its throttling work is "
		    "done here: adoption over", a->pod);
		o->releasing = util_xrealloc(o->releasing, (o->nreleasing + 1) *
		    sizeof(*o->releasing));
		o->releasing[o->nreleasing++] = a->pod;
		adopted_clear(a);
		memmove(a, a + 1, (o->nadopted - i - 1) * sizeof(*a));
		o->nadopted--;
		o->adopt_gen++;
	}
}

/*
 * A few gone pods' topics: one with work left (nobody reads a gone pod's
 * consumers, so it came since its adoption ended: waiting, or handed to a
 * pull its retired worker had left open) is to be taken back at the next
 * beat.
 */
static void
gone_check(struct orch *o)
{
	size_t k;

	if (o->draining || !has_throttling(o->cfg))
		return;
	for (k = 0; k < GONE_PER_CHECK && k < o->ngone; k++) {
		const char *pod;

		if (o->gone_next >= o->ngone)
			o->gone_next = 0;
		pod = o->gone[o->gone_next++];
		if (strcmp(pod, o->cfg->pod_id) == 0 ||
		    adopted_find(o, pod) != -1 ||
		    in_list(o->reclaim, o->nreclaim, pod))
			continue;
		if (pod_backlog(o, pod) != 1)
			continue;
		o->reclaim = util_xrealloc(o->reclaim, (o->nreclaim + 1) *
		    sizeof(*o->reclaim));
		o->reclaim[o->nreclaim++] = util_xstrdup(pod);
		o->last_pods_ms = 0;	/* take it at the next turn */
	}
}

void
pods_cron(struct orch *o, int64_t now)
{
	if (!o->pods_busy && store_is_up(o->store) &&
	    now - o->last_pods_ms >= o->cfg->redis.lease_ms / 3) {
		o->last_pods_ms = now;
		pods_beat(o);
	}
	if (!o->orphans_scanned && o->bus != NULL && bus_is_connected(o->bus) &&
	    now - o->last_adopt_check_ms >= ADOPT_CHECK_MS) {
		o->last_adopt_check_ms = now;
		orphans_scan(o);
	}
	if (o->nadopted + o->nlingers > 0 &&
	    now - o->last_adopt_check_ms >= ADOPT_CHECK_MS &&
	    o->bus != NULL && bus_is_connected(o->bus)) {
		o->last_adopt_check_ms = now;
		adoptions_check(o);
		lingers_check(o);
	}
	if (o->ngone > 0 && now - o->last_gone_check_ms >= GONE_CHECK_MS &&
	    o->bus != NULL && bus_is_connected(o->bus)) {
		o->last_gone_check_ms = now;
		gone_check(o);
	}
}

/* --- topics a reload removed while they hold work ------------------------------------ */

/*
 * A reload that removes a node from an async or throttling flow (or the
 * flow) leaves the work already queued on that node's topic: nothing in
 * the new config reads it. Such a topic lingers: one worker reads it
 * ("Flow/Node~MODE"), each saga driven on the definition it started with
 * (flowdef.h), until it has had nothing left for ADOPT_EMPTY_CHECKS checks
 * in a row.
 */
static void
linger_add(struct orch *o, const struct config *old,
    const struct config_topic *t)
{
	const char		*flow = old->flows[t->flow].name;
	const char		*node = old->nodes[t->node].name;
	struct orch_linger	*g;
	char			 name[2 * CONFIG_NAME_MAX + 16];

	snprintf(name, sizeof(name), "%s/%s%c%s", flow, node, ORCH_LINGER_SEP,
	    config_mode_name(t->mode));
	for (size_t i = 0; i < o->nlingers; i++)
		if (strcmp(o->lingers[i].name, name) == 0)
			return;
	o->lingers = util_xrealloc(o->lingers, (o->nlingers + 1) *
	    sizeof(*o->lingers));
	g = &o->lingers[o->nlingers];
	memset(g, 0, sizeof(*g));
	if (work_durable(g->durable, sizeof(g->durable), t->mode, old->pod_id,
	    flow, node) == -1 || work_filter(g->filter, sizeof(g->filter),
	    old->nats.subject_prefix, t->mode, old->pod_id, flow, node) == -1)
		return;
	g->name = util_xstrdup(name);
	snprintf(g->topic, sizeof(g->topic), "%s", t->name);
	g->concurrency = t->concurrency;
	o->nlingers++;
	o->adopt_gen++;
	orch_log(o, UTIL_INFO, NULL, "topic %s is gone from the config: it "
	    "is read until its queued work is done", t->name);
}

/*
 * At start: the stream's consumers of topics this config does not have
 * (removed while the pod was down), with work still queued, linger too.
 * Their filters say what they were: <prefix>.work.async.F.N.* and this
 * pod's <prefix>.work.pod.<pod>.F.N.* (another pod's are its own, or its
 * adopter's).
 */
struct orphan_scan {
	struct orch		*o;
	struct config_topic	*t;
	size_t			 n;
};

static void
orphan_seen(const char *durable, const char *filter, uint64_t backlog,
    void *arg)
{
	struct orphan_scan	*sc = arg;
	struct orch		*o = sc->o;
	const char		*prefix = o->cfg->nats.subject_prefix != NULL ?
				    o->cfg->nats.subject_prefix : "saga";
	char			 pod[CONFIG_NAME_MAX + 2], flow[CONFIG_NAME_MAX + 2];
	char			 node[CONFIG_NAME_MAX + 2], topic[2 * CONFIG_NAME_MAX + 2];
	const char		*rest;
	struct config_topic	 ct;
	struct config		 fake;
	struct config_flow	 ff;
	struct config_node	 fn;
	size_t			 zero = 0, plen = strlen(prefix);
	enum saga_mode		 mode;

	if (backlog == 0 || strncmp(filter, prefix, plen) != 0 ||
	    strncmp(filter + plen, ".work.", 6) != 0)
		return;
	rest = filter + plen + 6;
	if (sscanf(rest, "async.%65[^.].%65[^.].*", flow, node) == 2)
		mode = SAGA_MODE_ASYNC;
	else if (sscanf(rest, "pod.%65[^.].%65[^.].%65[^.].*", pod, flow,
	    node) == 3 && strcmp(pod, o->cfg->pod_id) == 0)
		mode = SAGA_MODE_THROTTLING;
	else
		return;
	if (strlen(flow) > CONFIG_NAME_MAX || strlen(node) > CONFIG_NAME_MAX)
		return;
	snprintf(topic, sizeof(topic), "%s/%s", flow, node);
	for (size_t i = 0; i < sc->n; i++)
		if (strcmp(sc->t[i].name, topic) == 0 && sc->t[i].mode == mode)
			return;
	/* A config of its own to name the topic by (linger_add's view). */
	memset(&fake, 0, sizeof(fake));
	memset(&ff, 0, sizeof(ff));
	memset(&fn, 0, sizeof(fn));
	ff.name = flow;
	fn.name = node;
	fake.flows = &ff;
	fake.nodes = &fn;
	fake.pod_id = o->cfg->pod_id;
	fake.nats.subject_prefix = o->cfg->nats.subject_prefix;
	memset(&ct, 0, sizeof(ct));
	ct.flow = ct.node = zero;
	ct.mode = mode;
	snprintf(ct.name, sizeof(ct.name), "%s", topic);
	ct.concurrency = 8;
	if (*durable != '\0')
		orch_log(o, UTIL_INFO, NULL, "consumer %s holds %llu messages "
		    "of a topic this config does not have", durable,
		    (unsigned long long)backlog);
	else
		orch_log(o, UTIL_INFO, NULL, "the stream holds %llu messages "
		    "on %s, of a topic this config does not have (its "
		    "consumer is gone)", (unsigned long long)backlog, filter);
	linger_add(o, &fake, &ct);
}

static void
orphans_scan(struct orch *o)
{
	struct orphan_scan	sc;
	char			err[SAGAD_ERRLEN];

	sc.o = o;
	sc.n = config_topics(o->cfg, &sc.t);
	if (bus_consumers(o->bus, orphan_seen, &sc, err, sizeof(err)) == -1)
		orch_log(o, UTIL_DEBUG, NULL, "listing the stream's consumers: "
		    "%s (tried again)", err);
	else
		o->orphans_scanned = 1;
	free(sc.t);
}

static void
linger_remove(struct orch *o, size_t i)
{
	free(o->lingers[i].name);
	memmove(&o->lingers[i], &o->lingers[i + 1], (o->nlingers - i - 1) *
	    sizeof(*o->lingers));
	o->nlingers--;
	o->adopt_gen++;
}

void
pods_reload(struct orch *o, const struct config *old,
    const struct config *cfg)
{
	struct config_topic	*ot, *nt;
	size_t			 on, nn, i, k;

	on = config_topics(old, &ot);
	nn = config_topics(cfg, &nt);
	for (i = 0; i < on; i++) {
		if (ot[i].callbacks || ot[i].legacy)
			continue;
		for (k = 0; k < nn; k++)
			if (strcmp(ot[i].name, nt[k].name) == 0 &&
			    ot[i].mode == nt[k].mode)
				break;
		if (k == nn)
			linger_add(o, old, &ot[i]);
	}
	/* A topic back in the config is read by its own workers again. */
	for (i = 0; i < o->nlingers; ) {
		for (k = 0; k < nn; k++)
			if (strcmp(o->lingers[i].topic, nt[k].name) == 0)
				break;
		if (k < nn)
			linger_remove(o, i);
		else
			i++;
	}
	free(ot);
	free(nt);
}

static void
lingers_check(struct orch *o)
{
	char		err[SAGAD_ERRLEN];
	uint64_t	n;

	for (size_t i = 0; i < o->nlingers; ) {
		struct orch_linger *g = &o->lingers[i];

		if (bus_consumer_backlog(o->bus, g->durable, g->filter, &n, err,
		    sizeof(err)) == -1 || n > 0) {
			g->empty = 0;
			i++;
			continue;
		}
		if (++g->empty < ADOPT_EMPTY_CHECKS) {
			i++;
			continue;
		}
		orch_log(o, UTIL_INFO, NULL, "topic %s: its queued work is "
		    "done", g->topic);
		linger_remove(o, i);
	}
}

/* --- what the supervisor runs besides the config's topics -------------------------- */

size_t
orch_extra_topics(const struct orch *o, struct orch_topic **out,
    unsigned *gen)
{
	struct orch_topic	*t;
	size_t			 n = o->nlingers;

	for (size_t i = 0; i < o->nadopted; i++)
		n += o->adopted[i].ntopics;
	*out = t = util_xcalloc(n + 1, sizeof(*t));
	for (size_t i = 0; i < o->nadopted; i++)
		for (size_t k = 0; k < o->adopted[i].ntopics; k++, t++) {
			t->name = o->adopted[i].topics[k];
			t->concurrency = o->adopted[i].conc[k];
		}
	for (size_t i = 0; i < o->nlingers; i++, t++) {
		t->name = o->lingers[i].name;
		t->concurrency = o->lingers[i].concurrency;
	}
	*gen = o->adopt_gen;
	return n;
}

static void
adopted_clear(struct orch_adopted *a)
{
	for (size_t k = 0; k < a->ntopics; k++)
		free(a->topics[k]);
	free(a->topics);
	free(a->conc);
}

void
pods_free(struct orch *o)
{
	for (size_t i = 0; i < o->nadopted; i++) {
		adopted_clear(&o->adopted[i]);
		free(o->adopted[i].pod);
	}
	free(o->adopted);
	for (size_t i = 0; i < o->nlingers; i++)
		free(o->lingers[i].name);
	free(o->lingers);
	o->lingers = NULL;
	o->nlingers = 0;
	for (size_t i = 0; i < o->nreleasing; i++)
		free(o->releasing[i]);
	free(o->releasing);
	o->adopted = NULL;
	o->releasing = NULL;
	o->nadopted = o->nreleasing = 0;
	list_free(&o->gone, &o->ngone);
	list_free(&o->reclaim, &o->nreclaim);
}
