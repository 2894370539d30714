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
 * the workers are retired and the lease let go. The held callers of the
 * dead pod are gone: its sagas just run to their end. An adopter that dies
 * in turn stops renewing, and another master adopts the pod again.
 *
 * It is not: Run's admission (the adopted work does not count against this
 * pod's max_queue), nor sync sagas (their own leases, orch_sweep.c), nor
 * async ones (any pod's workers read them).
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "orch_int.h"
#include "util.h"
#include "work.h"

#define ADOPT_MAX		4	/* pods adopted at most per sweep */
#define ADOPT_CHECK_MS		2000	/* backlog checks of adopted pods */
#define ADOPT_EMPTY_CHECKS	3	/* empty checks in a row to let go */

static int
has_throttling(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nflows; i++)
		if (cfg->flows[i].mode == SAGA_MODE_THROTTLING)
			return 1;
	return 0;
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
	if (strcmp(pod, o->cfg->pod_id) == 0 || adopted_find(o, pod) != -1)
		return;
	o->adopted = util_xrealloc(o->adopted, (o->nadopted + 1) *
	    sizeof(*o->adopted));
	memset(&o->adopted[o->nadopted], 0, sizeof(*o->adopted));
	o->adopted[o->nadopted].pod = util_xstrdup(pod);
	o->nadopted++;
	o->adopt_gen++;
	orch_log(o, UTIL_WARN, NULL, "pod %s stopped renewing its lease: "
	    "adopting its throttling work (its held callers are gone; its "
	    "sagas run to their end here)", pod);
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
	/* Let go for good: the script dropped them. */
	for (size_t i = 0; i < o->nreleasing; i++)
		free(o->releasing[i]);
	o->nreleasing = 0;
	for (size_t i = 0; i < n; i++)
		adopt(o, ids[i]);
}

static void
pods_beat(struct orch *o)
{
	const char	**renew;
	size_t		  n = 0;

	renew = util_xcalloc(o->nadopted + 1, sizeof(*renew));
	renew[n++] = o->cfg->pod_id;
	for (size_t i = 0; i < o->nadopted; i++)
		renew[n++] = o->adopted[i].pod;
	o->pods_busy = 1;
	store_pods(o->store, o->cfg->pod_id, o->cfg->redis.lease_ms,
	    !o->draining && has_throttling(o->cfg) ? ADOPT_MAX : 0, renew, n,
	    (const char *const *)o->releasing, o->nreleasing, pods_answered, o);
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
			    SAGA_MODE_THROTTLING, pod, fl->name, node) == -1)
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
		memmove(a, a + 1, (o->nadopted - i - 1) * sizeof(*a));
		o->nadopted--;
		o->adopt_gen++;
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
	if (o->nadopted > 0 && now - o->last_adopt_check_ms >= ADOPT_CHECK_MS) {
		o->last_adopt_check_ms = now;
		adoptions_check(o);
	}
}

size_t
orch_adopted(const struct orch *o, const char ***pods, unsigned *gen)
{
	const char **p = NULL;

	if (o->nadopted > 0) {
		p = util_xcalloc(o->nadopted, sizeof(*p));
		for (size_t i = 0; i < o->nadopted; i++)
			p[i] = o->adopted[i].pod;
	}
	*pods = p;
	*gen = o->adopt_gen;
	return o->nadopted;
}

void
pods_free(struct orch *o)
{
	for (size_t i = 0; i < o->nadopted; i++)
		free(o->adopted[i].pod);
	free(o->adopted);
	for (size_t i = 0; i < o->nreleasing; i++)
		free(o->releasing[i]);
	free(o->releasing);
	o->adopted = NULL;
	o->releasing = NULL;
	o->nadopted = o->nreleasing = 0;
}
