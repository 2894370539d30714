/*
 * log.c - logging for sagad's processes, after OpenBSD's log.c: log_warn()
 * appends strerror(errno), log_warnx() does not; fatal() and fatalx() log and
 * exit(1). Messages go to stderr (-d), syslog (daemon) or an append-only file
 * reopened on SIGUSR1 for log rotation. Not for library code.
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

#include "log.h"

static enum log_dest	 dest = LOG_TO_STDERR;
static int		 verbose;
static char		 ident[64] = "sagad";
static char		 prefix[128];
static char		*file_path;
static int		 file_fd = -1;

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

static void
vlog(int pri, const char *fmt, va_list ap, const char *errstr)
{
	char		 msg[2048];
	char		 line[2304];
	char		 ts[32];
	struct timeval	 tv;
	struct tm	 tm;
	int		 n;
	const char	*lvl;

	vsnprintf(msg, sizeof(msg), fmt, ap);
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

void
log_saga(enum util_level lv, const char *id, const char *msg,
    void *arg __attribute__((unused)))
{
	const char *pre = id != NULL ? "saga " : "", *sep = id != NULL ?
	    ": " : "";

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
