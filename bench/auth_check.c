/*
 * auth_check.c - what a token check costs (auth_check, src/auth.c): N
 * tokens in a tokens file, the last one presented ITERS times; prints the
 * nanoseconds per check. Every token is compared in full whatever matches,
 * so the cost grows with N and not with where the token is. Built by hand,
 * not by make:
 *
 *   cc -O2 -Isrc -I. -include autoconf.h bench/auth_check.c src/auth.c \
 *       src/util.c -o /tmp/auth_check && /tmp/auth_check 3 1000000
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"

int
main(int argc, char **argv)
{
	char		 path[] = "/tmp/auth_check.XXXXXX", hdr[128];
	char		 err[512], warn[512];
	const char	*name;
	struct auth	*a;
	struct timespec	 t0, t1;
	FILE		*fp;
	int		 ntok, iters, fd, ok = 0;

	if (argc != 3 || (ntok = atoi(argv[1])) < 1 ||
	    (iters = atoi(argv[2])) < 1) {
		fprintf(stderr, "usage: auth_check NTOKENS ITERS\n");
		return 2;
	}
	if ((fd = mkstemp(path)) == -1 || (fp = fdopen(fd, "w")) == NULL)
		return 1;
	for (int i = 0; i < ntok; i++)
		fprintf(fp, "token-%08d-0123456789abcdef0123456789 read\n", i);
	fclose(fp);
	a = auth_load(path, warn, sizeof(warn), err, sizeof(err));
	unlink(path);
	if (a == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	snprintf(hdr, sizeof(hdr), "Bearer token-%08d-0123456789abcdef"
	    "0123456789", ntok - 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < iters; i++)
		ok += auth_check(a, hdr, strlen(hdr), AUTH_ROLE_READ, &name) ==
		    AUTH_OK;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%d tokens: %.0f ns per check (%d/%d allowed)\n", ntok,
	    ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) /
	    iters, ok, iters);
	auth_free(a);
	return 0;
}
