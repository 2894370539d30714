/*
 * orch_sweep.c - leases and recovery of sync sagas (see orch_int.h). Every
 * sync saga this master drives holds a lease in saga:leases, renewed here
 * for all of them at once every lease_ms / 3 (not by each write, which
 * keeps a sorted-set update off the hot path). Every ORCH_SWEEP_MS the
 * sweeper claims expired leases, those of a master that died, and hands
 * each claimed saga to the sync engine, which compensates it from where
 * its record stands (or resumes its compensation). Async and throttling
 * sagas hold a lease from their launch to their first result only (the
 * bus redelivers the rest of their work): one claimed still PENDING has its
 * first work queued again (launch_requeue). The same period takes the
 * sagas that expired out of the List index.
 */
#include "autoconf.h"

#include <stdlib.h>

#include "orch_int.h"
#include "util.h"

static void
renewed(enum store_result res, char *const *ids, size_t n, const char *err,
    void *arg)
{
	struct orch *o = arg;

	(void)err;
	o->renewing = 0;
	if (o->closing || res != STORE_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		struct run *r = sync_find(o, ids[i]);

		/* Its next write will conflict and let it go. */
		if (r != NULL)
			orch_log(o, UTIL_WARN, r->d.s->id, "lease lost to "
			    "another master");
	}
}

static void
renew_leases(struct orch *o)
{
	const char	**ids;
	size_t		  n = 0;
	struct run	 *r;

	if (o->runs_by_id.n == 0 || o->renewing || !store_is_up(o->store))
		return;
	ids = util_xcalloc(o->runs_by_id.n, sizeof(*ids));
	TAILQ_FOREACH(r, &o->runs, all)
		if (r->ent.in && !r->creating && n < o->runs_by_id.n)
			ids[n++] = r->d.s->id;
	if (n > 0) {
		o->renewing = 1;
		store_lease_renew(o->store, o->owner, ids, n,
		    o->cfg->redis.lease_ms, renewed, o);
	}
	free(ids);
}

static void
recover_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct orch *o = arg;

	(void)err;
	if (o->closing || res != STORE_OK)
		return;
	if (rec->saga->mode != SAGA__V1__MODE__MODE_SYNC)
		launch_requeue(o, rec);	/* its first work may be lost */
	else
		sync_recover(o, rec);
}

static void
claimed(enum store_result res, char *const *ids, size_t n, const char *err,
    void *arg)
{
	struct orch *o = arg;

	(void)err;
	o->sweeping = 0;
	if (o->closing || res != STORE_OK)
		return;
	for (size_t i = 0; i < n; i++)
		store_get(o->store, ids[i], recover_got, o);
}

#define SWEEP_EXPIRE_BATCH	1000	/* index entries expired a set a call */

static void	expire_index(struct orch *);

/*
 * Ended sagas leave the List index when they expire: in batches, again at
 * once while a batch comes back full.
 */
static void
expired(enum store_result res, size_t n, const char *err, void *arg)
{
	struct orch *o = arg;

	(void)err;
	o->expiring = 0;
	if (o->closing || res != STORE_OK || n < SWEEP_EXPIRE_BATCH)
		return;
	expire_index(o);
}

static void
expire_index(struct orch *o)
{
	o->expiring = 1;
	store_index_expire(o->store, SWEEP_EXPIRE_BATCH, expired, o);
}

void
sweep_cron(struct orch *o, int64_t now)
{
	if (now - o->last_renew_ms >= o->cfg->redis.lease_ms / 3) {
		o->last_renew_ms = now;
		renew_leases(o);
	}
	if (now - o->last_sweep_ms >= ORCH_SWEEP_MS && !o->sweeping &&
	    !o->draining && store_is_up(o->store)) {
		o->last_sweep_ms = now;
		if (!o->expiring)
			expire_index(o);
		o->sweeping = 1;
		store_lease_claim(o->store, o->owner, ORCH_SWEEP_BATCH,
		    o->cfg->redis.lease_ms, ORCH_LAUNCH_LEASE_MS(o->cfg),
		    claimed, o);
	}
}
