/*
 * report.c - summaries and plots of `sagactl bench` runs (see report.h).
 * Success is the ratio of Runs that did the caller's business: sagas that
 * ended COMPLETED, or async sagas accepted (PENDING or RUNNING when Run
 * answered). A Run that returns OK with a compensated or failed saga does not
 * count, and a gRPC error never does.
 */
#include "autoconf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "json.h"
#include "report.h"
#include "saga.h"
#include "util.h"

#define PLOT_MAX_POINTS	50000

void
report_init(struct report *r, const char *title)
{
	memset(r, 0, sizeof(*r));
	r->title = util_xstrdup(title != NULL ? title : "sagactl bench");
}

void
report_free(struct report *r)
{
	free(r->s);
	free(r->title);
	for (size_t i = 0; i < r->nerrors; i++)
		free(r->errors[i]);
	memset(r, 0, sizeof(*r));
}

void
report_add(struct report *r, int64_t sent_us, int64_t latency_us, int status,
    int state)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 4096;
		r->s = util_xrealloc(r->s, r->cap * sizeof(*r->s));
	}
	r->s[r->n].sent_us = sent_us;
	r->s[r->n].latency_us = latency_us;
	r->s[r->n].status = status;
	r->s[r->n].state = state;
	r->n++;
}

void
report_error(struct report *r, const char *msg)
{
	for (size_t i = 0; i < r->nerrors; i++)
		if (strcmp(r->errors[i], msg) == 0)
			return;
	if (r->nerrors < sizeof(r->errors) / sizeof(r->errors[0]))
		r->errors[r->nerrors++] = util_xstrdup(msg);
}

int
report_sample_ok(const struct report_sample *s)
{
	return s->status == GRPC_STATUS_OK &&
	    (s->state == SAGA_STATE_COMPLETED ||
	    s->state == SAGA_STATE_PENDING || s->state == SAGA_STATE_RUNNING);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static int64_t
pct(const int64_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

void
report_summarize(const struct report *r, struct report_summary *sum)
{
	int64_t		*lat;
	double		 total = 0;
	size_t		 ok = 0;

	memset(sum, 0, sizeof(*sum));
	sum->requests = r->n;
	if (r->n == 0)
		return;
	lat = util_xcalloc(r->n, sizeof(*lat));
	for (size_t i = 0; i < r->n; i++) {
		const struct report_sample *s = &r->s[i];

		lat[i] = s->latency_us;
		total += (double)s->latency_us;
		if (s->status >= 0 && s->status <= GRPC_STATUS_MAX)
			sum->status_counts[s->status]++;
		if (s->status == GRPC_STATUS_OK && s->state >= 0 &&
		    s->state <= SAGA_STATE_MAX)
			sum->state_counts[s->state]++;
		if (report_sample_ok(s))
			ok++;
	}
	qsort(lat, r->n, sizeof(*lat), cmp_i64);
	sum->min_us = lat[0];
	sum->max_us = lat[r->n - 1];
	sum->mean_us = (int64_t)(total / (double)r->n);
	sum->p50_us = pct(lat, r->n, 50);
	sum->p90_us = pct(lat, r->n, 90);
	sum->p95_us = pct(lat, r->n, 95);
	sum->p99_us = pct(lat, r->n, 99);
	sum->success = (double)ok / (double)r->n;
	if (r->attack_us > 0)
		sum->rate = (double)r->n * 1e6 / (double)r->attack_us;
	if (r->total_us > 0)
		sum->throughput = (double)ok * 1e6 / (double)r->total_us;
	free(lat);
}

void
report_fmt_duration(int64_t us, char *buf, size_t len)
{
	if (us < 1000)
		snprintf(buf, len, "%lldµs", (long long)us);
	else if (us < 1000000)
		snprintf(buf, len, "%.3fms", (double)us / 1e3);
	else
		snprintf(buf, len, "%.3fs", (double)us / 1e6);
}

void
report_print(const struct report *r, FILE *fp)
{
	struct report_summary	 m;
	char			 d[7][32], t[3][32];
	const char		*sep = "";

	report_summarize(r, &m);
	report_fmt_duration(m.min_us, d[0], sizeof(d[0]));
	report_fmt_duration(m.mean_us, d[1], sizeof(d[1]));
	report_fmt_duration(m.p50_us, d[2], sizeof(d[2]));
	report_fmt_duration(m.p90_us, d[3], sizeof(d[3]));
	report_fmt_duration(m.p95_us, d[4], sizeof(d[4]));
	report_fmt_duration(m.p99_us, d[5], sizeof(d[5]));
	report_fmt_duration(m.max_us, d[6], sizeof(d[6]));
	report_fmt_duration(r->total_us, t[0], sizeof(t[0]));
	report_fmt_duration(r->attack_us, t[1], sizeof(t[1]));
	report_fmt_duration(r->total_us > r->attack_us ?
	    r->total_us - r->attack_us : 0, t[2], sizeof(t[2]));

	fprintf(fp, "Requests      [total, rate, throughput]         "
	    "%zu, %.2f, %.2f\n", m.requests, m.rate, m.throughput);
	fprintf(fp, "Duration      [total, attack, wait]             "
	    "%s, %s, %s\n", t[0], t[1], t[2]);
	fprintf(fp, "Latencies     [min, mean, 50, 90, 95, 99, max]  "
	    "%s, %s, %s, %s, %s, %s, %s\n", d[0], d[1], d[2], d[3], d[4],
	    d[5], d[6]);
	fprintf(fp, "Success       [ratio]                           "
	    "%.2f%%\n", m.success * 100.0);
	fprintf(fp, "Saga states   [state:count]                     ");
	for (int i = 0; i <= SAGA_STATE_MAX; i++) {
		if (m.state_counts[i] == 0)
			continue;
		fprintf(fp, "%s%s:%zu", sep, saga_state_name(i),
		    m.state_counts[i]);
		sep = "  ";
	}
	fprintf(fp, "\nStatus Codes  [code:count]                      ");
	sep = "";
	for (int i = 0; i <= GRPC_STATUS_MAX; i++) {
		if (m.status_counts[i] == 0)
			continue;
		fprintf(fp, "%s%s:%zu", sep, grpc_status_name(i),
		    m.status_counts[i]);
		sep = "  ";
	}
	fprintf(fp, "\nError Set:\n");
	for (size_t i = 0; i < r->nerrors; i++)
		fprintf(fp, "%s\n", r->errors[i]);
}

void
report_print_json(const struct report *r, FILE *fp)
{
	struct report_summary	 m;
	const char		*sep = "";

	report_summarize(r, &m);
	fprintf(fp, "{\"requests\":%zu,\"rate\":%.3f,\"throughput\":%.3f,"
	    "\"duration_us\":%lld,\"attack_us\":%lld,"
	    "\"wait_us\":%lld,\"latencies_us\":{\"min\":%lld,\"mean\":%lld,"
	    "\"50th\":%lld,\"90th\":%lld,\"95th\":%lld,\"99th\":%lld,"
	    "\"max\":%lld},\"success\":%.6f,\"states\":{",
	    m.requests, m.rate, m.throughput, (long long)r->total_us,
	    (long long)r->attack_us,
	    (long long)(r->total_us > r->attack_us ?
	    r->total_us - r->attack_us : 0),
	    (long long)m.min_us, (long long)m.mean_us, (long long)m.p50_us,
	    (long long)m.p90_us, (long long)m.p95_us, (long long)m.p99_us,
	    (long long)m.max_us, m.success);
	for (int i = 0; i <= SAGA_STATE_MAX; i++) {
		if (m.state_counts[i] == 0)
			continue;
		fprintf(fp, "%s\"%s\":%zu", sep, saga_state_name(i),
		    m.state_counts[i]);
		sep = ",";
	}
	fprintf(fp, "},\"status_codes\":{");
	sep = "";
	for (int i = 0; i <= GRPC_STATUS_MAX; i++) {
		if (m.status_counts[i] == 0)
			continue;
		fprintf(fp, "%s\"%s\":%zu", sep, grpc_status_name(i),
		    m.status_counts[i]);
		sep = ",";
	}
	fprintf(fp, "},\"errors\":[");
	for (size_t i = 0; i < r->nerrors; i++) {
		if (i > 0)
			fputc(',', fp);
		json_write_string(fp, r->errors[i]);
	}
	fprintf(fp, "]}\n");
}

/* Completed (green), rolled back (orange), error (red). */
static const char *const outcome_colours[] = {
	"#2ca02c", "#ff7f0e", "#d62728",
};

static int
outcome(const struct report_sample *s)
{
	if (s->status != GRPC_STATUS_OK)
		return 2;
	return report_sample_ok(s) ? 0 : 1;
}

/* Decades of a log axis: "100µs", "10ms", "1s", "100s". */
static void
axis_label(int64_t us, char *buf, size_t len)
{
	if (us >= 1000000)
		snprintf(buf, len, "%llds", (long long)(us / 1000000));
	else if (us >= 1000)
		snprintf(buf, len, "%lldms", (long long)(us / 1000));
	else
		snprintf(buf, len, "%lldµs", (long long)us);
}

void
report_plot_svg(const struct report *r, FILE *fp)
{
	const double	 W = 960, H = 480, L = 70, R = 20, T = 40, B = 50;
	double		 pw = W - L - R, ph = H - T - B;
	int64_t		 tmax = 1, lmin = INT64_MAX, lmax = 1;
	double		 ylo, yhi;
	size_t		 stride;
	char		 lbl[32];
	uint8_t		*drawn;

	for (size_t i = 0; i < r->n; i++) {
		int64_t end = r->s[i].sent_us;
		if (end > tmax)
			tmax = end;
		if (r->s[i].latency_us > lmax)
			lmax = r->s[i].latency_us;
		if (r->s[i].latency_us < lmin)
			lmin = r->s[i].latency_us;
	}
	if (lmin < 100 || lmin == INT64_MAX)
		lmin = 100;
	/* Decades of latency, from below the fastest to above the slowest. */
	ylo = floor(log10((double)lmin));
	yhi = ceil(log10((double)lmax + 1));
	if (yhi <= ylo)
		yhi = ylo + 1;
	stride = r->n > PLOT_MAX_POINTS ? (r->n + PLOT_MAX_POINTS - 1) /
	    PLOT_MAX_POINTS : 1;

	fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
	    "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
	    W, H);
	fprintf(fp, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(fp, "<text x=\"%.0f\" y=\"24\" font-size=\"15\">", L);
	for (const char *p = r->title; *p; p++) {
		if (*p == '<')
			fputs("&lt;", fp);
		else if (*p == '&')
			fputs("&amp;", fp);
		else
			fputc(*p, fp);
	}
	fprintf(fp, "</text>\n");
	/* Axes and grid. */
	for (double d = ylo; d <= yhi; d++) {
		double y = T + ph - (d - ylo) / (yhi - ylo) * ph;
		axis_label((int64_t)pow(10, d), lbl, sizeof(lbl));
		fprintf(fp, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" "
		    "y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, y, L + pw, y);
		fprintf(fp, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">"
		    "%s</text>\n", L - 6, y + 4, lbl);
	}
	for (int k = 0; k <= 10; k++) {
		double x = L + pw * k / 10.0;
		fprintf(fp, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">"
		    "%.1fs</text>\n", x, T + ph + 18,
		    (double)tmax / 1e6 * k / 10.0);
	}
	fprintf(fp, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\""
	    " fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
	fprintf(fp, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">"
	    "time since start</text>\n", L + pw / 2, H - 8);
	fprintf(fp, "<text transform=\"translate(16,%.0f) rotate(-90)\" "
	    "text-anchor=\"middle\">latency (log)</text>\n", T + ph / 2);
	/*
	 * One dot per pixel and colour: a 30 s run at 500/s puts thousands
	 * of requests on the same few pixels, and drawing them all again
	 * makes a file of megabytes that looks the same.
	 */
	drawn = util_xcalloc((size_t)W * (size_t)H * 3 / 8 + 1, 1);
	fprintf(fp, "<g fill-opacity=\"0.6\">\n");
	for (size_t i = 0; i < r->n; i += stride) {
		const struct report_sample *s = &r->s[i];
		double v = log10((double)(s->latency_us > 1 ? s->latency_us : 1));
		double x = L + (double)s->sent_us / (double)tmax * pw;
		double y = T + ph - (v - ylo) / (yhi - ylo) * ph;
		int k = outcome(s);
		size_t bit;

		if (y < T)
			y = T;
		if (y > T + ph)
			y = T + ph;
		bit = ((size_t)y * (size_t)W + (size_t)x) * 3 + (size_t)k;
		if (drawn[bit / 8] & (1u << (bit % 8)))
			continue;
		drawn[bit / 8] |= (uint8_t)(1u << (bit % 8));
		fprintf(fp, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"1.5\" "
		    "fill=\"%s\"/>\n", x, y, outcome_colours[k]);
	}
	fprintf(fp, "</g>\n");
	free(drawn);
	fprintf(fp, "<g font-size=\"11\"><circle cx=\"%.0f\" cy=\"30\" r=\"4\" "
	    "fill=\"#2ca02c\"/><text x=\"%.0f\" y=\"34\">completed</text>"
	    "<circle cx=\"%.0f\" cy=\"30\" r=\"4\" fill=\"#ff7f0e\"/>"
	    "<text x=\"%.0f\" y=\"34\">rolled back</text>"
	    "<circle cx=\"%.0f\" cy=\"30\" r=\"4\" fill=\"#d62728\"/>"
	    "<text x=\"%.0f\" y=\"34\">error</text></g>\n",
	    W - 300, W - 292, W - 210, W - 202, W - 110, W - 102);
	if (stride > 1)
		fprintf(fp, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\">"
		    "every %zuth request shown</text>\n", L + 4, T + 12, stride);
	fprintf(fp, "</svg>\n");
}
