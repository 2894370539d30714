/*
 * report.h - what `sagactl bench` records and prints: one sample per request
 * (when it was sent, how long it took, its gRPC status and the saga's final
 * state), summarised in the shape of a vegeta report, as JSON, and as an SVG
 * plot of every request's latency over time. No I/O but the FILE it is given.
 */
#ifndef SAGAD_REPORT_H
#define SAGAD_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct report_sample {
	int64_t		 sent_us;	/* since the attack began */
	int64_t		 latency_us;
	int		 status;	/* gRPC status of Run */
	int		 state;		/* saga state when status is OK */
};

struct report {
	struct report_sample	*s;
	size_t			 n;
	size_t			 cap;
	int64_t			 attack_us;	/* first send to last send */
	int64_t			 total_us;	/* first send to last answer */
	char			*title;
	char			*errors[16];	/* distinct error messages */
	size_t			 nerrors;
};

struct report_summary {
	size_t		 requests;
	double		 rate;		/* requests sent per second */
	double		 throughput;	/* successes per second */
	int64_t		 min_us, mean_us, p50_us, p90_us, p95_us, p99_us,
			 max_us;
	double		 success;	/* ratio of report_sample_ok() Runs */
	size_t		 status_counts[17];
	size_t		 state_counts[8];	/* by enum saga_state */
};

void	report_init(struct report *, const char *title);
void	report_free(struct report *);
void	report_add(struct report *, int64_t sent_us, int64_t latency_us,
	    int status, int state);
void	report_error(struct report *, const char *);	/* kept if new, up to 16 */
/* Did the Run do the caller's business: COMPLETED, or async and accepted. */
int	report_sample_ok(const struct report_sample *);
void	report_summarize(const struct report *, struct report_summary *);
void	report_print(const struct report *, FILE *);
void	report_print_json(const struct report *, FILE *);
/* Latency of every request over time, log scale, coloured by outcome. */
void	report_plot_svg(const struct report *, FILE *);
/* "12.5ms", "1.203s", "850µs": vegeta's duration style. */
void	report_fmt_duration(int64_t us, char *buf, size_t len);

#endif
