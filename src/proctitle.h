/*
 * proctitle.h - process titles as ps(1) shows them ("sagad: master",
 * "sagad: worker Flow/Node #1"), for systems without setproctitle(3): the
 * argv area is overwritten in place, after moving the environment out of it,
 * the way nginx and OpenBSD's portable daemons do.
 */
#ifndef SAGAD_PROCTITLE_H
#define SAGAD_PROCTITLE_H

/*
 * Call once, early in main(), before anything keeps pointers into argv or
 * environ: it copies the argv and environment strings to
 * the heap and points argv and environ at the copies, so the original area
 * can hold the title. Returns 0, or -1 when it could not allocate (titles
 * are then left alone).
 */
int	proctitle_init(int argc, char *argv[]);

/* Sets the title; printf-style. A no-op before proctitle_init(). */
void	proctitle_set(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

#endif
