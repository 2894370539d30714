/*
 * metrics.c - the pod's metrics in shared memory (see metrics.h). The
 * segment is one struct metrics_shm, created zeroed by the master with
 * memfd_create and mapped MAP_SHARED by every process of the pod; a fork
 * would share it too, but workers are exec'd, hence the descriptor.
 *
 * Each table entry starts with a state word: 0 free, 1 being named, 2
 * named. A process that needs a name not yet there claims a free entry
 * (CAS 0 -> 1), writes the name, then publishes it (store 2, release);
 * readers skip entries not yet named and wait the few instructions a
 * claim takes when they meet one on their probe path.
 */
#include "autoconf.h"

#include <sys/mman.h>
#include <sys/types.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "grpc/grpc.h"
#include "metrics.h"
#include "saga_mode.h"

#define MAGIC		0x73676d31u	/* "sgm1" */
#define NMODES		4		/* index by enum saga_mode; 0 unused */
#define NENDS		4		/* completed compensated failed resolved */
#define NCODES		(GRPC_STATUS_MAX + 1)
#define SAGA_NB		15
#define STEP_NB		15

/* Upper bounds in microseconds; +Inf is the count. */
static const int64_t saga_bounds[SAGA_NB] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};
static const int64_t step_bounds[STEP_NB] = {
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 30000000,
};

struct hist {
	uint64_t	n;
	uint64_t	sum_us;
	uint64_t	b[SAGA_NB];	/* per bucket, not cumulative */
};

struct key {
	uint32_t	state;
	char		name[METRICS_NAME_MAX];
};

struct m_flow {
	struct key	k;
	uint64_t	started[NMODES];
	uint64_t	ended[NMODES][NENDS];
	int64_t		in_flight;
	struct hist	dur[NMODES];
};

struct m_node {
	struct key	k;
	uint64_t	calls[2][NCODES];
	struct hist	dur[2];
};

struct m_topic {
	struct key	k;
	uint64_t	restarts;
};

struct m_method {
	struct key	k;
	uint64_t	codes[NCODES];
};

struct metrics_shm {
	uint32_t	magic;
	uint64_t	dropped;	/* updates of names no table could hold */
	uint64_t	spans[2];	/* tracing (issue 14): exported, dropped */
	struct m_flow	flows[METRICS_FLOWS];
	struct m_node	nodes[METRICS_NODES];
	struct m_topic	topics[METRICS_TOPICS];
	struct m_method	methods[METRICS_METHODS];
};

static struct metrics_shm	*shm;
static int			 shm_fd = -1;

#define ADD(p, v)	__atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define LOAD(p)		__atomic_load_n((p), __ATOMIC_RELAXED)

int64_t
metrics_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
metrics_create(char *err, size_t errlen)
{
	int fd;

	if (shm != NULL)
		return 0;
	if ((fd = memfd_create("sagad-metrics", MFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "metrics: memfd_create: %s",
		    strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)sizeof(struct metrics_shm)) == -1) {
		snprintf(err, errlen, "metrics: ftruncate: %s",
		    strerror(errno));
		close(fd);
		return -1;
	}
	shm_fd = fd;
	if (metrics_attach(fd, err, errlen) == -1) {
		close(fd);
		shm_fd = -1;
		return -1;
	}
	shm->magic = MAGIC;
	return 0;
}

int
metrics_attach(int fd, char *err, size_t errlen)
{
	void *p;

	p = mmap(NULL, sizeof(struct metrics_shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "metrics: mmap of fd %d: %s", fd,
		    strerror(errno));
		return -1;
	}
	shm = p;
	if (shm_fd == -1)
		shm_fd = fd;
	return 0;
}

int
metrics_fd(void)
{
	return shm != NULL ? shm_fd : -1;
}

int
metrics_on(void)
{
	return shm != NULL;
}

void
metrics_close(void)
{
	if (shm != NULL)
		munmap(shm, sizeof(*shm));
	if (shm_fd != -1)
		close(shm_fd);
	shm = NULL;
	shm_fd = -1;
}

/* --- the tables ----------------------------------------------------------- */

static uint32_t
hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/*
 * The entry named name in a table of n entries of size stride, added if
 * absent; NULL when the table is full or the name too long.
 */
static struct key *
find(void *table, size_t n, size_t stride, const char *name)
{
	uint32_t	h;
	size_t		len;

	if (name == NULL || (len = strlen(name)) >= METRICS_NAME_MAX) {
		ADD(&shm->dropped, 1);
		return NULL;
	}
	h = hash(name);
	for (size_t i = 0; i < n; i++) {
		struct key	*k = (struct key *)(void *)((char *)table +
		    ((h + i) % n) * stride);
		uint32_t	 st = __atomic_load_n(&k->state,
		    __ATOMIC_ACQUIRE);

		if (st == 0) {
			uint32_t zero = 0;

			if (__atomic_compare_exchange_n(&k->state, &zero, 1, 0,
			    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				memcpy(k->name, name, len + 1);
				__atomic_store_n(&k->state, 2,
				    __ATOMIC_RELEASE);
				return k;
			}
			st = zero;
		}
		/* Another process is naming it: a few instructions away. */
		for (int spin = 0; st == 1 && spin < 10000; spin++) {
			sched_yield();
			st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
		}
		if (st == 2 && strcmp(k->name, name) == 0)
			return k;
	}
	ADD(&shm->dropped, 1);
	return NULL;
}

#define FIND(arr, name)	find((arr), sizeof(arr) / sizeof((arr)[0]), \
	    sizeof((arr)[0]), (name))

static void
observe(struct hist *h, const int64_t *bounds, int nb, int64_t us)
{
	int i;

	if (us < 0)
		us = 0;
	for (i = 0; i < nb && us > bounds[i]; i++)
		;
	if (i < nb)
		ADD(&h->b[i], 1);
	ADD(&h->sum_us, (uint64_t)us);
	ADD(&h->n, 1);
}

/* --- the counting points ------------------------------------------------------ */

void
metrics_saga_started(const char *flow, int mode)
{
	struct m_flow *f;

	if (shm == NULL || mode < 1 || mode >= NMODES)
		return;
	if ((f = (struct m_flow *)FIND(shm->flows, flow)) == NULL)
		return;
	ADD(&f->started[mode], 1);
	ADD(&f->in_flight, 1);
}

void
metrics_saga_ended(const char *flow, int mode, int state, int64_t ms)
{
	struct m_flow	*f;
	int		 end = state - 4;	/* COMPLETED = 4 ... RESOLVED = 7 */

	if (shm == NULL || mode < 1 || mode >= NMODES || end < 0 ||
	    end >= NENDS)
		return;
	if ((f = (struct m_flow *)FIND(shm->flows, flow)) == NULL)
		return;
	ADD(&f->ended[mode][end], 1);
	if (end == 3)
		return;		/* RESOLVED: it had ended FAILED already */
	ADD(&f->in_flight, -1);
	observe(&f->dur[mode], saga_bounds, SAGA_NB, ms * 1000);
}

void
metrics_in_flight(const char *flow, int delta)
{
	struct m_flow *f;

	if (shm == NULL)
		return;
	if ((f = (struct m_flow *)FIND(shm->flows, flow)) != NULL)
		ADD(&f->in_flight, delta);
}

void
metrics_step_call(const char *node, int compensate, int status, int64_t us)
{
	struct m_node *n;

	if (shm == NULL)
		return;
	if ((n = (struct m_node *)FIND(shm->nodes, node)) == NULL)
		return;
	if (status < 0 || status >= NCODES)
		status = GRPC_STATUS_UNKNOWN;
	ADD(&n->calls[compensate != 0][status], 1);
	observe(&n->dur[compensate != 0], step_bounds, STEP_NB, us);
}

void
metrics_spans(uint64_t exported, uint64_t dropped)
{
	if (shm == NULL)
		return;
	if (exported > 0)
		ADD(&shm->spans[0], exported);
	if (dropped > 0)
		ADD(&shm->spans[1], dropped);
}

void
metrics_worker_restart(const char *topic)
{
	struct m_topic *t;

	if (shm == NULL)
		return;
	if ((t = (struct m_topic *)FIND(shm->topics, topic)) != NULL)
		ADD(&t->restarts, 1);
}

void
metrics_grpc_request(const char *method, int status)
{
	struct m_method *m;

	if (shm == NULL)
		return;
	if ((m = (struct m_method *)FIND(shm->methods, method)) == NULL)
		return;
	if (status < 0 || status >= NCODES)
		status = GRPC_STATUS_UNKNOWN;
	ADD(&m->codes[status], 1);
}

/* --- the text ------------------------------------------------------------------- */

static const char *const mode_names[NMODES] = { "", "sync", "async",
    "throttling" };
static const char *const end_names[NENDS] = { "completed", "compensated",
    "failed", "resolved" };

/* A label value: backslash, quote and newline escaped. */
static void
label(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', fp);
		if (*s == '\n') {
			fputs("\\n", fp);
			continue;
		}
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static int
named(const struct key *k)
{
	return __atomic_load_n(&k->state, __ATOMIC_ACQUIRE) == 2;
}

/* name{labels,le="..."} lines of one histogram; labels written by pre. */
static void
hist_lines(FILE *fp, const char *metric, const char *labels,
    const struct hist *h, const int64_t *bounds, int nb)
{
	uint64_t cum = 0;

	for (int i = 0; i < nb; i++) {
		cum += LOAD(&h->b[i]);
		fprintf(fp, "%s_bucket{%s,le=\"%g\"} %llu\n", metric, labels,
		    (double)bounds[i] / 1e6, (unsigned long long)cum);
	}
	fprintf(fp, "%s_bucket{%s,le=\"+Inf\"} %llu\n", metric, labels,
	    (unsigned long long)LOAD(&h->n));
	fprintf(fp, "%s_sum{%s} %.6f\n", metric, labels,
	    (double)LOAD(&h->sum_us) / 1e6);
	fprintf(fp, "%s_count{%s} %llu\n", metric, labels,
	    (unsigned long long)LOAD(&h->n));
}

/* flow="F",mode="M" into buf. */
static void
labels2(char *buf, size_t len, const char *k1, const char *v1,
    const char *k2, const char *v2)
{
	char	*p = NULL;
	size_t	 n = 0;
	FILE	*fp = open_memstream(&p, &n);

	if (fp == NULL) {
		buf[0] = '\0';
		return;
	}
	fprintf(fp, "%s=", k1);
	label(fp, v1);
	fprintf(fp, ",%s=", k2);
	label(fp, v2);
	fclose(fp);
	snprintf(buf, len, "%s", p);
	free(p);
}

void
metrics_render(FILE *fp)
{
	char lb[512];

	if (shm == NULL)
		return;
	fputs("# HELP sagad_sagas_started_total Sagas created on this pod.\n"
	    "# TYPE sagad_sagas_started_total counter\n", fp);
	for (size_t i = 0; i < METRICS_FLOWS; i++) {
		const struct m_flow *f = &shm->flows[i];

		if (!named(&f->k))
			continue;
		for (int m = 1; m < NMODES; m++) {
			labels2(lb, sizeof(lb), "flow", f->k.name, "mode",
			    mode_names[m]);
			fprintf(fp, "sagad_sagas_started_total{%s} %llu\n", lb,
			    (unsigned long long)LOAD(&f->started[m]));
		}
	}
	fputs("# HELP sagad_sagas_ended_total Sagas that reached a final "
	    "state on this pod.\n"
	    "# TYPE sagad_sagas_ended_total counter\n", fp);
	for (size_t i = 0; i < METRICS_FLOWS; i++) {
		const struct m_flow *f = &shm->flows[i];

		if (!named(&f->k))
			continue;
		for (int m = 1; m < NMODES; m++)
			for (int e = 0; e < NENDS; e++) {
				labels2(lb, sizeof(lb), "flow", f->k.name,
				    "mode", mode_names[m]);
				fprintf(fp, "sagad_sagas_ended_total{%s,"
				    "state=\"%s\"} %llu\n", lb, end_names[e],
				    (unsigned long long)LOAD(&f->ended[m][e]));
			}
	}
	fputs("# HELP sagad_saga_duration_seconds From a saga's creation to "
	    "its end (completed, compensated or failed).\n"
	    "# TYPE sagad_saga_duration_seconds histogram\n", fp);
	for (size_t i = 0; i < METRICS_FLOWS; i++) {
		const struct m_flow *f = &shm->flows[i];

		if (!named(&f->k))
			continue;
		for (int m = 1; m < NMODES; m++) {
			labels2(lb, sizeof(lb), "flow", f->k.name, "mode",
			    mode_names[m]);
			hist_lines(fp, "sagad_saga_duration_seconds", lb,
			    &f->dur[m], saga_bounds, SAGA_NB);
		}
	}
	fputs("# HELP sagad_sagas_in_flight Sagas started and not ended, as "
	    "this pod counted them (summed over pods it is exact).\n"
	    "# TYPE sagad_sagas_in_flight gauge\n", fp);
	for (size_t i = 0; i < METRICS_FLOWS; i++) {
		const struct m_flow *f = &shm->flows[i];

		if (!named(&f->k))
			continue;
		fputs("sagad_sagas_in_flight{flow=", fp);
		label(fp, f->k.name);
		fprintf(fp, "} %lld\n", (long long)LOAD(&f->in_flight));
	}
	fputs("# HELP sagad_step_calls_total Calls of a node's action or "
	    "compensation, by gRPC status.\n"
	    "# TYPE sagad_step_calls_total counter\n", fp);
	for (size_t i = 0; i < METRICS_NODES; i++) {
		const struct m_node *n = &shm->nodes[i];

		if (!named(&n->k))
			continue;
		for (int c = 0; c < 2; c++)
			for (int s = 0; s < NCODES; s++) {
				uint64_t v = LOAD(&n->calls[c][s]);

				if (v == 0 && s != 0)
					continue;	/* codes seen, and OK */
				labels2(lb, sizeof(lb), "node", n->k.name,
				    "kind", c ? "compensate" : "action");
				fprintf(fp, "sagad_step_calls_total{%s,code="
				    "\"%s\"} %llu\n", lb, grpc_status_name(s),
				    (unsigned long long)v);
			}
	}
	fputs("# HELP sagad_step_duration_seconds A step call's time, from "
	    "its request sent to its answer.\n"
	    "# TYPE sagad_step_duration_seconds histogram\n", fp);
	for (size_t i = 0; i < METRICS_NODES; i++) {
		const struct m_node *n = &shm->nodes[i];

		if (!named(&n->k))
			continue;
		for (int c = 0; c < 2; c++) {
			labels2(lb, sizeof(lb), "node", n->k.name, "kind",
			    c ? "compensate" : "action");
			hist_lines(fp, "sagad_step_duration_seconds", lb,
			    &n->dur[c], step_bounds, STEP_NB);
		}
	}
	fputs("# HELP sagad_worker_restarts_total Workers respawned after "
	    "they died.\n# TYPE sagad_worker_restarts_total counter\n", fp);
	for (size_t i = 0; i < METRICS_TOPICS; i++) {
		const struct m_topic *t = &shm->topics[i];

		if (!named(&t->k))
			continue;
		fputs("sagad_worker_restarts_total{topic=", fp);
		label(fp, t->k.name);
		fprintf(fp, "} %llu\n", (unsigned long long)LOAD(&t->restarts));
	}
	fputs("# HELP sagad_grpc_requests_total gRPC calls answered, by "
	    "method and status.\n"
	    "# TYPE sagad_grpc_requests_total counter\n", fp);
	for (size_t i = 0; i < METRICS_METHODS; i++) {
		const struct m_method *m = &shm->methods[i];

		if (!named(&m->k))
			continue;
		for (int s = 0; s < NCODES; s++) {
			uint64_t v = LOAD(&m->codes[s]);

			if (v == 0)
				continue;
			labels2(lb, sizeof(lb), "method", m->k.name, "code",
			    grpc_status_name(s));
			fprintf(fp, "sagad_grpc_requests_total{%s} %llu\n", lb,
			    (unsigned long long)v);
		}
	}
	fputs("# HELP sagad_trace_spans_total OTLP spans the collector took "
	    "(exported), or that were dropped: the queue full, or their batch "
	    "refused or unanswered.\n# TYPE sagad_trace_spans_total counter\n",
	    fp);
	fprintf(fp, "sagad_trace_spans_total{outcome=\"exported\"} %llu\n"
	    "sagad_trace_spans_total{outcome=\"dropped\"} %llu\n",
	    (unsigned long long)LOAD(&shm->spans[0]),
	    (unsigned long long)LOAD(&shm->spans[1]));
	fputs("# HELP sagad_metrics_dropped_total Updates not counted: a "
	    "name too long, or a table full.\n"
	    "# TYPE sagad_metrics_dropped_total counter\n", fp);
	fprintf(fp, "sagad_metrics_dropped_total %llu\n",
	    (unsigned long long)LOAD(&shm->dropped));
}
