/*
 * util.h - small helpers every module uses: bounded string copies, time in
 * milliseconds, host:port parsing, free-port-free socket helpers. No logging.
 */
#ifndef SAGAD_UTIL_H
#define SAGAD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define SAGAD_ERRLEN	512	/* size of every error buffer a caller owns */

/*
 * Marks a parameter that a callback's signature imposes and this function
 * does not need: "short what SAGAD_UNUSED". The build warns about any other
 * unused parameter (no -Wno-unused-parameter).
 */
#define SAGAD_UNUSED	__attribute__((__unused__))

int64_t	 util_now_ms(void);		/* wall clock, unix ms */
int64_t	 util_mono_ms(void);		/* monotonic ms */
void	*util_xcalloc(size_t, size_t);	/* aborts on OOM: there is no way on */
void	*util_xrealloc(void *, size_t);
char	*util_xstrdup(const char *);

/*
 * Split "host:port" or "[v6]:port" into host and port. Returns 0, or -1 with
 * a sentence in err saying what was expected.
 */
int	 util_parse_hostport(const char *, char *host, size_t hostlen,
	    int *port, char *err, size_t errlen);

/*
 * How library code tells its process what happened, for the log: a level,
 * the saga id when there is one (else NULL), a sentence. The process layer
 * formats it once (log_saga in log.c).
 */
enum util_level { UTIL_DEBUG, UTIL_INFO, UTIL_WARN };
typedef void (*util_log_fn)(enum util_level, const char *saga_id,
    const char *msg, void *arg);

/*
 * A saga has ended: the one line per ended saga (issue 14), said by the
 * process that ends it. Library code calls util_saga_end(); the process
 * layer hands the function that logs it (log_saga_end in log.c).
 */
struct util_saga_end {
	const char	*id;
	const char	*flow;
	const char	*mode;		/* "sync", ... */
	const char	*state;		/* "COMPLETED", ... */
	const char	*error;		/* "" or NULL: none */
	int64_t		 duration_ms;
};
typedef void (*util_end_fn)(const struct util_saga_end *);
void	 util_set_end_fn(util_end_fn);
void	 util_saga_end(const struct util_saga_end *);

/*
 * The one PRNG of the project (splitmix64): saga ids, backoff jitter and
 * load generation need spread, not secrecy. Any state works, 0 included;
 * util_rng_seed fills it from getrandom(2), or from the clock without it.
 */
void	 util_rng_seed(uint64_t *state);
uint64_t util_rng_next(uint64_t *state);

/*
 * A URL fit to show: "scheme://user:password@host..." with the password
 * replaced by "***" (and nothing else changed); in a NATS URL with a
 * token ("nats://TOKEN@host") the token is replaced. Returns buf.
 */
const char *util_url_redact(const char *url, char *buf, size_t len);

/* Levenshtein distance, for "did you mean" suggestions. */
int	 util_edit_distance(const char *, const char *);

#endif
