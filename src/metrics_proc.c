/*
 * metrics_proc.c - what /proc says of the pod's processes, for the
 * process_* metrics summed over the master and its workers: CPU time
 * (utime + stime of /proc/PID/stat), resident memory (its rss) and open
 * descriptors (the entries of /proc/PID/fd). Read at scrape time, never
 * on a hot path. Linux only; elsewhere every read fails and adds nothing.
 */
#include "autoconf.h"

#include <sys/types.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

int
metrics_proc_read(pid_t pid, struct metrics_proc *mp)
{
	char			 path[64], buf[1024], *p;
	FILE			*fp;
	DIR			*d;
	struct dirent		*de;
	unsigned long		 utime, stime;
	long			 rss;
	size_t			 n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	/* The command may hold spaces and parentheses: start after the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/* Fields 3.. after it: state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime cutime cstime priority nice
	 * num_threads itrealvalue starttime vsize rss. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
	    "%*d %*d %*d %*d %*d %*d %*u %*u %ld", &utime, &stime, &rss) != 3)
		return -1;
	mp->cpu_seconds += (double)(utime + stime) /
	    (double)sysconf(_SC_CLK_TCK);
	mp->rss_bytes += (double)rss * (double)sysconf(_SC_PAGESIZE);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				mp->fds++;
		closedir(d);
	}
	mp->nprocs++;
	return 0;
}

void
metrics_proc_render(FILE *fp, const struct metrics_proc *mp)
{
	fprintf(fp, "# HELP process_cpu_seconds_total User and system CPU "
	    "time of the pod's processes (master and workers).\n"
	    "# TYPE process_cpu_seconds_total counter\n"
	    "process_cpu_seconds_total %.2f\n", mp->cpu_seconds);
	fprintf(fp, "# HELP process_resident_memory_bytes Resident memory of "
	    "the pod's processes.\n"
	    "# TYPE process_resident_memory_bytes gauge\n"
	    "process_resident_memory_bytes %.0f\n", mp->rss_bytes);
	fprintf(fp, "# HELP process_open_fds Open descriptors of the pod's "
	    "processes.\n# TYPE process_open_fds gauge\n"
	    "process_open_fds %lu\n", mp->fds);
	fprintf(fp, "# HELP sagad_processes The pod's processes these sums "
	    "cover.\n# TYPE sagad_processes gauge\n"
	    "sagad_processes %d\n", mp->nprocs);
}
