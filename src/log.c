/*
 * log.c - logging for sagad's processes, after OpenBSD's log.c: log_warn()
 * appends strerror(errno), log_warnx() does not; fatal() and fatalx() log and
 * exit(1). Messages go to stderr (-d), syslog (daemon) or an append-only file
 * reopened on SIGUSR1 for log rotation. Not for library code.
 *
 * Two formats (log_format): text, "TIME IDENT[PID] LEVEL: PREFIX: MSG", and
 * JSON, one object a line, {"time","level","pod","process","pid","msg"}
 * and the saga's fields ("id", and on the line of its end "flow", "mode",
 * "state", "duration_ms", "error") when the line is about one saga. Either
 * way a line is one write(2), so processes sharing a file never interleave.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "json.h"
#include "log.h"

static enum log_dest	 dest = LOG_TO_STDERR;
static int		 verbose;
static char		 ident[64] = "sagad";
static char		 prefix[128];
static char		*file_path;
static int		 file_fd = -1;
static int		 json;
static char		 pod[128];

/* A saga's fields on a JSON line; NULL members are left out. */
struct fields {
	const char			*id;
	const struct util_saga_end	*end;
};

static void	vlogf(int, const char *, va_list, const char *,
		    const struct fields *)
		    __attribute__((format(printf, 2, 0)));

void
log_init(const char *id, enum log_dest d, int v)
{
	if (id != NULL)
		snprintf(ident, sizeof(ident), "%s", id);
	dest = d;
	verbose = v;
	if (dest == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	tzset();
	util_set_end_fn(log_saga_end);
}

void
log_setformat(int j, const char *p)
{
	json = j;
	snprintf(pod, sizeof(pod), "%s", p != NULL ? p : "");
}

int
log_open_file(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (file_fd != -1)
		close(file_fd);
	file_fd = fd;
	if (file_path != path) {
		free(file_path);
		file_path = strdup(path);
	}
	dest = LOG_TO_FILE;
	return 0;
}

int
log_reopen(void)
{
	if (dest != LOG_TO_FILE || file_path == NULL)
		return 0;
	return log_open_file(file_path);
}

void
log_setverbose(int v)
{
	verbose = v;
}

int
log_getverbose(void)
{
	return verbose;
}

void
log_setprefix(const char *p)
{
	snprintf(prefix, sizeof(prefix), "%s", p != NULL ? p : "");
}

/* What the process is called on a JSON line: "master", "worker F/N #1". */
static void
process_name(char *buf, size_t len)
{
	if (*prefix == '\0')
		snprintf(buf, len, "%s", strcmp(ident, "sagad") == 0 ?
		    "master" : ident);
	else if (strcmp(ident, "sagad-worker") == 0)
		snprintf(buf, len, "worker %s", prefix);
	else
		snprintf(buf, len, "%s", prefix);
}

static const char *
level_name(int pri)
{
	switch (pri) {
	case LOG_CRIT:		return "fatal";
	case LOG_ERR:
	case LOG_WARNING:	return "warn";
	case LOG_INFO:		return "info";
	default:		return "debug";
	}
}

static void
emit(int pri, const char *line, size_t n)
{
	if (dest == LOG_TO_SYSLOG) {
		syslog(pri, "%.*s", (int)n, line);
		return;
	}
	/* One write() per line so concurrent processes do not interleave. */
	(void)!write(dest == LOG_TO_FILE ? file_fd : STDERR_FILENO, line, n);
}

#define LOG_JSON_MAX	4096	/* a longer line is logged as too long */

/*
 * The line as one JSON object, written through json.c's string writer into
 * a growing buffer (no stdio stream per line: a saga's end is logged once
 * per saga).
 */
static void
log_json(int pri, const char *msg, const char *errstr,
    const struct fields *f)
{
	struct json_buf	 b = { NULL, 0, 0 };
	char		 ts[40], proc[200], line[256];
	struct timeval	 tv;
	struct tm	 tm;
	int		 n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03ldZ",
	    (long)tv.tv_usec / 1000);
	process_name(proc, sizeof(proc));
	json_buf_puts(&b, "{\"time\":\"");
	json_buf_puts(&b, ts);
	json_buf_puts(&b, "\",\"level\":\"");
	json_buf_puts(&b, level_name(pri));
	json_buf_puts(&b, "\",\"pod\":");
	json_buf_str(&b, pod);
	json_buf_puts(&b, ",\"process\":");
	json_buf_str(&b, proc);
	json_buf_puts(&b, ",\"pid\":");
	json_buf_int(&b, (long long)getpid());
	json_buf_puts(&b, ",\"msg\":");
	if (errstr != NULL) {
		char both[2600];

		snprintf(both, sizeof(both), "%s: %s", msg, errstr);
		json_buf_str(&b, both);
	} else
		json_buf_str(&b, msg);
	if (f != NULL && f->id != NULL) {
		json_buf_puts(&b, ",\"id\":");
		json_buf_str(&b, f->id);
	}
	if (f != NULL && f->end != NULL) {
		json_buf_puts(&b, ",\"flow\":");
		json_buf_str(&b, f->end->flow);
		json_buf_puts(&b, ",\"mode\":");
		json_buf_str(&b, f->end->mode);
		json_buf_puts(&b, ",\"state\":");
		json_buf_str(&b, f->end->state);
		json_buf_puts(&b, ",\"duration_ms\":");
		json_buf_int(&b, (long long)f->end->duration_ms);
		json_buf_puts(&b, ",\"error\":");
		json_buf_str(&b, f->end->error);
	}
	json_buf_put(&b, "}\n", 2);
	if (b.len - 1 >= LOG_JSON_MAX - 3) {
		/* Cut short: say so in a line that still parses. */
		n = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":"
		    "\"%s\",\"msg\":\"(a line too long to log)\"}\n", ts,
		    level_name(pri));
		emit(pri, line, (size_t)n);
	} else
		emit(pri, b.p, b.len);
	free(b.p);
}

static void
vlog(int pri, const char *fmt, va_list ap, const char *errstr)
{
	vlogf(pri, fmt, ap, errstr, NULL);
}

static void
vlogf(int pri, const char *fmt, va_list ap, const char *errstr,
    const struct fields *f)
{
	char		 msg[2048];
	char		 line[2304];
	char		 ts[32];
	struct timeval	 tv;
	struct tm	 tm;
	int		 n;
	const char	*lvl;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (json) {
		log_json(pri, msg, errstr, f);
		return;
	}
	if (dest == LOG_TO_SYSLOG) {
		if (errstr != NULL)
			syslog(pri, "%s%s%s: %s", prefix, *prefix ? ": " : "",
			    msg, errstr);
		else
			syslog(pri, "%s%s%s", prefix, *prefix ? ": " : "", msg);
		return;
	}
	switch (pri) {
	case LOG_CRIT:		lvl = "fatal"; break;
	case LOG_ERR:
	case LOG_WARNING:	lvl = "warn"; break;
	case LOG_INFO:		lvl = "info"; break;
	default:		lvl = "debug"; break;
	}
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld %s[%ld] %s: %s%s%s%s%s\n",
	    ts, (long)tv.tv_usec / 1000, ident, (long)getpid(), lvl,
	    prefix, *prefix ? ": " : "", msg,
	    errstr != NULL ? ": " : "", errstr != NULL ? errstr : "");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write() per line so concurrent processes do not interleave. */
	(void)!write(dest == LOG_TO_FILE ? file_fd : STDERR_FILENO, line, n);
}

void
log_warn(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (verbose < 1)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
log_trace(const char *fmt, ...)
{
	va_list	ap;

	if (verbose < 2)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

static void
logf_fields(int pri, const struct fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
logf_fields(int pri, const struct fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlogf(pri, fmt, ap, NULL, f);
	va_end(ap);
}

void
log_saga(enum util_level lv, const char *id, const char *msg,
    void *arg __attribute__((unused)))
{
	struct fields	 f = { id, NULL };
	const char	*pre = id != NULL ? "saga " : "", *sep = id != NULL ?
			    ": " : "";

	if (lv == UTIL_DEBUG && verbose < 1)
		return;
	if (json) {
		/* The id is a field of its own; the message stays bare. */
		logf_fields(lv == UTIL_WARN ? LOG_ERR : lv == UTIL_INFO ?
		    LOG_INFO : LOG_DEBUG, &f, "%s", msg);
		return;
	}
	if (id == NULL)
		id = "";
	switch (lv) {
	case UTIL_WARN:
		log_warnx("%s%s%s%s", pre, id, sep, msg);
		break;
	case UTIL_INFO:
		log_info("%s%s%s%s", pre, id, sep, msg);
		break;
	default:
		log_debug("%s%s%s%s", pre, id, sep, msg);
		break;
	}
}

void
log_saga_end(const struct util_saga_end *e)
{
	struct fields	 f = { e->id, e };
	struct json_buf	 err = { NULL, 0, 0 };

	if (json) {
		logf_fields(LOG_INFO, &f, "saga ended");
		return;
	}
	/* Text: key=value, the error quoted as JSON quotes it (1,200 bytes). */
	json_buf_str(&err, e->error);
	logf_fields(LOG_INFO, &f, "saga %s ended: flow=%s mode=%s state=%s "
	    "duration_ms=%lld error=%.1199s", e->id, e->flow, e->mode, e->state,
	    (long long)e->duration_ms, err.p);
	free(err.p);
}
