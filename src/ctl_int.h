/*
 * ctl_int.h - what sagactl's files share (ctl.c: run, get, watch, flows,
 * health, bench; ctl_operate.c: list, cancel, retry, resolve), and nothing
 * else includes.
 */
#ifndef SAGAD_CTL_INT_H
#define SAGAD_CTL_INT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "grpc/grpc.h"

struct event_base;
struct grpc_client;
struct grpc_channel;
struct tls;

struct ctl {
	struct event_base	*base;
	struct grpc_client	*client;
	struct grpc_channel	*ch;
	struct tls		*tls;		/* --tls: sagad over TLS; else NULL */
	const char		*server_name;	/* --server-name; NULL: the host */
	int			 json;
	int64_t			 timeout_ms;
	int			 rc;
	struct grpc_metadata	 md;	/* authorization: Bearer (--token) */
	int			 has_token;
};

/* The metadata every call sends: the token, or NULL. */
#define CTL_MD(c)	((c)->has_token ? &(c)->md : NULL)
/* After an error: what to do about UNAUTHENTICATED or PERMISSION_DENIED. */
void	 ctl_auth_hint(const struct ctl *, int status);

/* One unary call, run to completion on the loop. */
struct sync_call {
	int		 done;
	int		 status;
	char		*message;
	uint8_t		*data;
	size_t		 len;
};

void	 ctl_unary(struct ctl *, const char *path, const ProtobufCMessage *,
	    struct sync_call *);
void	 ctl_call_free(struct sync_call *);
/* Says what failed (JSON too with --json); returns the exit code. */
int	 ctl_call_error(struct ctl *, const struct sync_call *);
int	 ctl_print_reply(struct ctl *, const struct sync_call *, int ok_exit);

/*
 * The key=value arguments from argv[i] on, as the context of req; frees
 * with ctl_req_context_free(). -1 with a sentence in err on a malformed one.
 */
struct Saga__V1__RunRequest;
int	 ctl_req_context(struct Saga__V1__RunRequest *, int argc, char **argv,
	    int i, char *err, size_t errlen);
void	 ctl_req_context_free(struct Saga__V1__RunRequest *);
/* "sync", "async", "throttling": saga.v1.Mode, or -1. */
int	 ctl_parse_mode(const char *);

/* ctl_bench.c */
int	 ctl_cmd_bench(struct ctl *, int argc, char **argv, const char *host,
	    int port);

/* ctl_operate.c */
int	 ctl_cmd_list(struct ctl *, int argc, char **argv);
int	 ctl_cmd_operate(struct ctl *, int argc, char **argv);

#endif
