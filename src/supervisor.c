/*
 * supervisor.c - sagad's process table (nginx's ngx_processes[], relayd's
 * procs[]): one slot per worker process, keyed by (topic, instance).
 *
 * A slot is started by fork+exec of sagad-worker (proc_spawn_worker, in
 * proc.c, which builds the worker's argv from the same struct the worker
 * parses it back into). Each worker gets two pipes: a ready pipe it writes
 * "ready\n" to once initialised, and the parent pipe, whose write end only
 * the master holds, so the worker sees EOF when the master dies however it
 * dies (with PR_SET_PDEATHSIG and a getppid() check as belts and braces).
 *
 * A worker that exits is respawned after a per-slot delay that doubles from
 * SUP_BACKOFF_MIN_MS to SUP_BACKOFF_MAX_MS and resets after a run of
 * SUP_STABLE_MS; one that exits with PROC_EXIT_FATAL stays down until the
 * next reload. Retired workers get SIGTERM, drain, and get SIGKILL only
 * past stop_timeout_ms. Timers are not kept here: the master's cron calls
 * sup_cron(). This is process-layer code: it logs what happens to workers.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "supervisor.h"
#include "util.h"

static void	slot_start(struct sup *, struct sup_slot *);
static void	slot_free(struct sup_slot *);

struct sup *
sup_new(struct event_base *base, const struct sup_params *params, char *err,
    size_t errlen)
{
	struct sup	*sup;
	int		 fds[2];

	if (proc_parent_pipe(fds, err, errlen) == -1)
		return NULL;
	sup = util_xcalloc(1, sizeof(*sup));
	sup->base = base;
	sup->parent_rd = fds[0];
	sup->parent_wr = fds[1];
	sup_set_params(sup, params);
	return sup;
}

void
sup_set_params(struct sup *sup, const struct sup_params *p)
{
	struct sup_params old = sup->params;

	sup->params = *p;
	sup->params.worker_path = util_xstrdup(p->worker_path);
	sup->params.config_path = util_xstrdup(p->config_path);
	sup->params.pod_id = util_xstrdup(p->pod_id);
	free((char *)(uintptr_t)old.worker_path);
	free((char *)(uintptr_t)old.config_path);
	free((char *)(uintptr_t)old.pod_id);
}

void
sup_free(struct sup *sup)
{
	size_t i;

	if (sup == NULL)
		return;
	for (i = 0; i < sup->nslots; i++)
		slot_free(sup->slots[i]);
	free(sup->slots);
	close(sup->parent_rd);
	close(sup->parent_wr);
	free((char *)(uintptr_t)sup->params.worker_path);
	free((char *)(uintptr_t)sup->params.config_path);
	free((char *)(uintptr_t)sup->params.pod_id);
	free(sup);
}

static void
slot_close_ready(struct sup_slot *s)
{
	if (s->ready_ev != NULL) {
		event_free(s->ready_ev);
		s->ready_ev = NULL;
	}
	if (s->ready_fd != -1) {
		close(s->ready_fd);
		s->ready_fd = -1;
	}
}

static void
slot_free(struct sup_slot *s)
{
	slot_close_ready(s);
	free(s->topic);
	free(s->wtopic);
	free(s->pod);
	free(s);
}

static struct sup_slot *
slot_add(struct sup *sup, const char *topic, int instance, int concurrency)
{
	struct sup_slot *s;
	char		*at;

	s = util_xcalloc(1, sizeof(*s));
	s->topic = util_xstrdup(topic);
	s->wtopic = util_xstrdup(topic);
	if ((at = strchr(s->wtopic, SUP_POD_SEP)) != NULL) {
		*at = '\0';
		s->pod = util_xstrdup(at + 1);
	}
	s->instance = instance;
	s->concurrency = concurrency;
	s->state = SUP_WAITING;
	s->ready_fd = -1;
	s->sup = sup;
	sup->slots = util_xrealloc(sup->slots,
	    (sup->nslots + 1) * sizeof(*sup->slots));
	sup->slots[sup->nslots++] = s;
	return s;
}

static void
slot_remove(struct sup *sup, struct sup_slot *s)
{
	size_t i;

	for (i = 0; i < sup->nslots; i++) {
		if (sup->slots[i] != s)
			continue;
		memmove(&sup->slots[i], &sup->slots[i + 1],
		    (sup->nslots - i - 1) * sizeof(*sup->slots));
		sup->nslots--;
		break;
	}
	slot_free(s);
}

size_t
sup_nalive(const struct sup *sup)
{
	size_t i, n = 0;

	for (i = 0; i < sup->nslots; i++)
		if (sup->slots[i]->pid > 0)
			n++;
	return n;
}

/* Logs "all N workers ready" once every slot of the batch is up. */
static void
batch_check(struct sup *sup)
{
	size_t			 i, n = 0;
	struct sup_slot		*s;

	if (!sup->batch_pending)
		return;
	for (i = 0; i < sup->nslots; i++) {
		s = sup->slots[i];
		if (s->retired || s->state == SUP_FATAL)
			continue;
		if (s->state != SUP_RUNNING)
			return;
		n++;
	}
	sup->batch_pending = 0;
	log_info("all %zu workers ready in %lld ms", n,
	    (long long)(util_mono_ms() - sup->batch_ms));
}

static void
slot_send_pending(struct sup_slot *s)
{
	int sig;

	for (sig = 1; sig < 32; sig++) {
		if (!(s->pending_sigs & (1u << sig)))
			continue;
		if (kill(s->pid, sig) == -1)
			log_warn("%s: kill %d", __func__, (int)s->pid);
	}
	s->pending_sigs = 0;
}

static void
ready_cb(evutil_socket_t fd, short what SAGAD_UNUSED, void *arg)
{
	struct sup_slot	*s = arg;

	switch (proc_ready_recv(fd)) {
	case PROC_READY_EOF:
		/* The worker closed it (done) or died: SIGCHLD tells which. */
		slot_close_ready(s);
		return;
	case PROC_READY_NONE:
		return;
	case PROC_READY_YES:
		break;
	}
	if (s->ready)
		return;
	s->ready = 1;
	log_debug("worker %s #%d (pid %d) ready in %lld ms", s->topic,
	    s->instance, (int)s->pid,
	    (long long)(util_mono_ms() - s->started_ms));
	if (s->state == SUP_STARTING) {
		s->state = SUP_RUNNING;
		slot_send_pending(s);
	}
	batch_check(s->sup);
}

/* Schedules the next start of a slot that is down, with its backoff. */
static void
slot_backoff(struct sup_slot *s, int64_t now, int ran_ms)
{
	if (ran_ms >= SUP_STABLE_MS || s->backoff_ms == 0)
		s->backoff_ms = SUP_BACKOFF_MIN_MS;
	else if (s->backoff_ms < SUP_BACKOFF_MAX_MS / 2)
		s->backoff_ms *= 2;
	else
		s->backoff_ms = SUP_BACKOFF_MAX_MS;
	s->state = SUP_WAITING;
	s->next_start_ms = now + s->backoff_ms;
}

static void
slot_start(struct sup *sup, struct sup_slot *s)
{
	const struct sup_params	*p = &sup->params;
	struct proc_worker_args	 a;
	char			 err[SAGAD_ERRLEN];
	pid_t			 pid;
	int			 ready_rd;
	int64_t			 now = util_mono_ms();

	memset(&a, 0, sizeof(a));
	a.topic = s->wtopic;
	a.instance = s->instance;
	a.concurrency = s->concurrency;
	a.pod_id = s->pod != NULL ? s->pod : p->pod_id;
	a.config_path = p->config_path;
	a.foreground = p->foreground;
	a.verbose = p->verbose;
	a.metrics_fd = metrics_fd();
	pid = proc_spawn_worker(p->worker_path, &a, sup->parent_rd, &ready_rd,
	    err, sizeof(err));
	if (pid == -1) {
		log_warnx("worker %s #%d: %s", s->topic, s->instance, err);
		slot_backoff(s, now, 0);
		return;
	}

	s->pid = pid;
	s->state = SUP_STARTING;
	s->ready = 0;
	s->started_ms = now;
	s->ready_fd = ready_rd;
	s->ready_ev = event_new(sup->base, ready_rd, EV_READ | EV_PERSIST,
	    ready_cb, s);
	if (s->ready_ev == NULL || event_add(s->ready_ev, NULL) == -1)
		log_warnx("worker %s #%d: cannot watch its ready pipe",
		    s->topic, s->instance);
	log_debug("worker %s #%d started, pid %d", s->topic, s->instance,
	    (int)pid);
}

/* SIGTERM now, SIGKILL at the deadline. */
static void
slot_stop(struct sup *sup, struct sup_slot *s)
{
	if (s->pid <= 0 || s->state == SUP_STOPPING)
		return;
	if (kill(s->pid, SIGTERM) == -1 && errno != ESRCH)
		log_warn("%s: kill %d", __func__, (int)s->pid);
	s->state = SUP_STOPPING;
	s->pending_sigs = 0;
	s->kill_at_ms = util_mono_ms() + sup->params.stop_timeout_ms;
}

/*
 * Takes a slot out of service: a running worker is asked to drain and the
 * slot goes when it is reaped; one that is down goes now.
 */
static void
slot_retire(struct sup *sup, struct sup_slot *s)
{
	s->retired = 1;
	if (s->pid > 0) {
		log_info("worker %s #%d (pid %d) retired: draining", s->topic,
		    s->instance, (int)s->pid);
		slot_stop(sup, s);
	} else
		slot_remove(sup, s);
}

static const struct sup_topic *
topic_find(const struct sup_topic *topics, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(topics[i].name, name) == 0)
			return &topics[i];
	return NULL;
}

static struct sup_slot *
slot_find(struct sup *sup, const char *topic, int instance)
{
	size_t i;

	for (i = 0; i < sup->nslots; i++)
		if (!sup->slots[i]->retired &&
		    sup->slots[i]->instance == instance &&
		    strcmp(sup->slots[i]->topic, topic) == 0)
			return sup->slots[i];
	return NULL;
}

void
sup_reconcile(struct sup *sup, const struct sup_topic *topics, size_t ntopics)
{
	const struct sup_topic	 *t;
	struct sup_slot		**snap, *s;
	size_t			  i, nsnap, started = 0;
	int			  inst;
	int64_t			  t0 = util_mono_ms();

	if (sup->shutting_down)
		return;

	/*
	 * Retire what is no longer wanted, on a snapshot since retiring a
	 * slot that is down removes it from the table. A slot whose
	 * concurrency changed is retired too: the loop below starts its
	 * replacement before the old worker has drained.
	 */
	nsnap = sup->nslots;
	snap = util_xcalloc(nsnap, sizeof(*snap));
	if (nsnap > 0)
		memcpy(snap, sup->slots, nsnap * sizeof(*snap));
	for (i = 0; i < nsnap; i++) {
		s = snap[i];
		if (s->retired)
			continue;
		t = topic_find(topics, ntopics, s->topic);
		if (t == NULL || s->instance > t->workers) {
			slot_retire(sup, s);
		} else if (s->concurrency != t->concurrency) {
			log_info("worker %s #%d: concurrency %d -> %d: "
			    "replacing it", s->topic, s->instance,
			    s->concurrency, t->concurrency);
			slot_retire(sup, s);
		} else if (s->state == SUP_FATAL) {
			/* The new config may have fixed what killed it. */
			s->backoff_ms = 0;
			slot_start(sup, s);
			started++;
		}
	}
	free(snap);

	/* Start every instance that has no slot. */
	for (i = 0; i < ntopics; i++) {
		t = &topics[i];
		for (inst = 1; inst <= t->workers; inst++) {
			if (slot_find(sup, t->name, inst) != NULL)
				continue;
			s = slot_add(sup, t->name, inst, t->concurrency);
			slot_start(sup, s);
			started++;
		}
	}
	if (started > 0) {
		sup->batch_ms = t0;
		sup->batch_pending = 1;
	}
	batch_check(sup);
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s",
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with wait status %#x", status);
}

static struct sup_slot *
slot_by_pid(struct sup *sup, pid_t pid)
{
	size_t i;

	for (i = 0; i < sup->nslots; i++)
		if (sup->slots[i]->pid == pid)
			return sup->slots[i];
	return NULL;
}

void
sup_reap(struct sup *sup)
{
	struct sup_slot	*s;
	pid_t		 pid;
	int		 status, ran;
	char		 how[128];
	int64_t		 now;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		now = util_mono_ms();
		describe_status(status, how, sizeof(how));
		if ((s = slot_by_pid(sup, pid)) == NULL) {
			log_debug("child %d %s", (int)pid, how);
			continue;
		}
		ran = (int)(now - s->started_ms);
		s->pid = 0;
		s->ready = 0;
		slot_close_ready(s);
		if (s->retired || sup->shutting_down) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				log_info("worker %s #%d (pid %d) stopped",
				    s->topic, s->instance, (int)pid);
			else
				log_warnx("worker %s #%d (pid %d) %s while "
				    "stopping", s->topic, s->instance,
				    (int)pid, how);
			slot_remove(sup, s);
			continue;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == PROC_EXIT_FATAL) {
			log_warnx("worker %s #%d (pid %d) %s: fatal, not "
			    "restarting it until a reload", s->topic,
			    s->instance, (int)pid, how);
			s->state = SUP_FATAL;
			continue;
		}
		if (WIFEXITED(status) &&
		    WEXITSTATUS(status) == PROC_EXIT_EXEC) {
			log_warnx("worker %s #%d (pid %d): could not execute "
			    "%s: not restarting it until a reload", s->topic,
			    s->instance, (int)pid, sup->params.worker_path);
			s->state = SUP_FATAL;
			continue;
		}
		slot_backoff(s, now, ran);
		metrics_worker_restart(s->topic);
		log_warnx("worker %s #%d (pid %d) %s after %d ms; restarting "
		    "in %d ms", s->topic, s->instance, (int)pid, how, ran,
		    s->backoff_ms);
	}
	if (pid == -1 && errno != ECHILD)
		log_warn("%s: waitpid", __func__);
	batch_check(sup);
}

int64_t
sup_cron(struct sup *sup, int64_t now)
{
	struct sup_slot	*s;
	size_t		 i;
	int64_t		 next = INT64_MAX;

	for (i = 0; i < sup->nslots; i++) {
		s = sup->slots[i];
		if (s->state == SUP_WAITING && !sup->shutting_down) {
			if (now >= s->next_start_ms)
				slot_start(sup, s);
			else if (s->next_start_ms < next)
				next = s->next_start_ms;
		} else if (s->state == SUP_STOPPING && s->pid > 0) {
			if (now >= s->kill_at_ms) {
				log_warnx("worker %s #%d (pid %d) did not stop "
				    "within %d ms: killing it", s->topic,
				    s->instance, (int)s->pid,
				    sup->params.stop_timeout_ms);
				(void)kill(s->pid, SIGKILL);
				s->kill_at_ms = INT64_MAX;
			} else if (s->kill_at_ms < next)
				next = s->kill_at_ms;
		}
	}
	return next;
}

void
sup_signal(struct sup *sup, int sig)
{
	struct sup_slot	*s;
	size_t		 i;

	for (i = 0; i < sup->nslots; i++) {
		s = sup->slots[i];
		if (s->pid <= 0 || s->retired || s->state == SUP_STOPPING)
			continue;
		if (s->state == SUP_RUNNING) {
			if (kill(s->pid, sig) == -1 && errno != ESRCH)
				log_warn("%s: kill %d", __func__, (int)s->pid);
		} else if (sig > 0 && sig < 32)
			s->pending_sigs |= 1u << sig;
	}
}

void
sup_shutdown(struct sup *sup)
{
	struct sup_slot	*s;
	size_t		 i;

	sup->shutting_down = 1;
	sup->batch_pending = 0;
	for (i = 0; i < sup->nslots; ) {
		s = sup->slots[i];
		if (s->pid > 0) {
			slot_stop(sup, s);
			i++;
		} else
			slot_remove(sup, s);
	}
}
