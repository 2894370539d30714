/*
 * proctitle.c - set the process title that ps(1) and /proc/PID/cmdline show.
 * Where libc has setproctitle(3) it is used. Elsewhere (glibc) the strings
 * of argv and environ lie back to back in one block of the process's stack;
 * proctitle_init() moves them all to the heap, repoints argv[] and environ[]
 * at the copies, and the block becomes room for the title. The rest of
 * the block is cleared with NULs so that /proc/PID/cmdline, and so ps(1),
 * reads as the title alone. Nothing here logs.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proctitle.h"

extern char	**environ;

#ifndef HAVE_SETPROCTITLE
static char	*area;		/* start of the argv+environ block */
static size_t	 arealen;	/* its length, the last string's NUL included */
#endif

int
proctitle_init(int argc, char *argv[])
{
#ifndef HAVE_SETPROCTITLE
	char	*start, *end, *p;
	size_t	 len;
	int	 i;

	if (argc < 1 || argv[0] == NULL || area != NULL)
		return -1;
	/* The block: each string that starts where the previous one ended. */
	start = argv[0];
	end = argv[0] + strlen(argv[0]) + 1;
	for (i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (i = 0; environ[i] != NULL; i++)
		if (environ[i] == end)
			end = environ[i] + strlen(environ[i]) + 1;

	for (i = 0; i < argc; i++) {
		if ((p = strdup(argv[i])) == NULL)
			return -1;
		argv[i] = p;
	}
	/* environ[] itself is not in the block; only its strings move. */
	for (i = 0; environ[i] != NULL; i++) {
		len = strlen(environ[i]) + 1;
		if ((p = malloc(len)) == NULL)
			return -1;
		memcpy(p, environ[i], len);
		environ[i] = p;
	}
	area = start;
	arealen = (size_t)(end - start);
#else
	(void)argc;
	(void)argv;
#endif
	return 0;
}

void
proctitle_set(const char *fmt, ...)
{
	char	title[256];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(title, sizeof(title), fmt, ap);
	va_end(ap);
#ifdef HAVE_SETPROCTITLE
	setproctitle("-%s", title);
#else
	if (area == NULL || arealen < 2)
		return;
	memset(area, '\0', arealen);
	/* Keep the last byte NUL: the title is cut to fit, never overflows. */
	memcpy(area, title, strnlen(title, arealen - 1));
#endif
}
