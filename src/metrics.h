/*
 * metrics.h - the pod's metrics (DESIGN.md's table): counters, gauges and
 * histograms that the master and every worker update in one shared memory
 * segment, so that /metrics answers for the whole pod without asking each
 * worker (nginx's shared zones, Envoy's stats). The master creates the
 * segment (a memfd) before it starts any worker and passes its descriptor
 * on each worker's command line (--metrics-fd); a process without a
 * segment counts nothing and pays a test of one pointer per call.
 *
 * Series are fixed slots found by name (a flow, a node, a topic, a gRPC
 * method) in open-addressing tables: any process may add a name, with a
 * compare-and-swap, so flows a reload adds are counted too. Values are
 * updated with relaxed atomic adds: no lock, no system call, no
 * allocation on the hot path. Label sets are bounded by the tables' sizes;
 * names beyond them are not counted, and metrics_dropped says how many.
 *
 * Core code: no I/O but the segment's creation; rendering writes the
 * Prometheus text format 0.0.4 to a FILE.
 */
#ifndef SAGAD_METRICS_H
#define SAGAD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define METRICS_FLOWS		256
#define METRICS_NODES		512
#define METRICS_TOPICS		512
#define METRICS_METHODS		64
#define METRICS_NAME_MAX	128	/* longer names are not counted */

/* Master: creates and maps the segment. 0, or -1 with err. */
int	 metrics_create(char *err, size_t errlen);
/* Worker: maps the master's segment from fd. 0, or -1 with err. */
int	 metrics_attach(int fd, char *err, size_t errlen);
/* The segment's descriptor (for workers' command lines), or -1. */
int	 metrics_fd(void);
int	 metrics_on(void);
void	 metrics_close(void);

/* A monotonic clock in microseconds, for durations. */
int64_t	 metrics_now_us(void);

/* mode: enum saga_mode (1..3); state: enum saga_state. */
void	 metrics_saga_started(const char *flow, int mode);
void	 metrics_saga_ended(const char *flow, int mode, int state,
	    int64_t duration_ms);
void	 metrics_in_flight(const char *flow, int delta);
/* One step call ended with a gRPC status after us microseconds. */
void	 metrics_step_call(const char *node, int compensate, int status,
	    int64_t us);
void	 metrics_worker_restart(const char *topic);
void	 metrics_grpc_request(const char *method, int status);
/* Spans the tracer exported, or dropped (issue 14). */
void	 metrics_spans(uint64_t exported, uint64_t dropped);

/* The segment's series in Prometheus text format 0.0.4. */
void	 metrics_render(FILE *);

/* metrics_proc.c: the process_* metrics, summed over the pod's processes. */
struct metrics_proc {
	double		 cpu_seconds;
	double		 rss_bytes;
	unsigned long	 fds;
	int		 nprocs;
};
/* Adds pid's figures to mp: 0, or -1 if it could not be read. */
int	 metrics_proc_read(pid_t, struct metrics_proc *);
void	 metrics_proc_render(FILE *, const struct metrics_proc *);

#endif
