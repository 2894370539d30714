/*
 * config.h - sagad's configuration (sagad.conf(5)) as parsed, validated data.
 * config_load() reads a file into a fresh structure and hands it over only when
 * it is whole; on any error the caller keeps what it had (SIGHUP). The loader
 * never logs: it collects every error, each naming file, line and key.
 */
#ifndef SAGAD_CONFIG_H
#define SAGAD_CONFIG_H

#include <stddef.h>

#include "saga_mode.h"

#define CONFIG_NAME_MAX	64	/* pod_id, stream, service, node, flow names */
#define CONFIG_ERRLEN	4096	/* room for many "FILE:LINE: KEY: ..." lines */

struct config_service {
	char		*name;
	char		*address;	/* as written: "host:port" */
	char		 host[256];
	int		 port;
	int		 timeout_ms;
	int		 max_inflight;
	int		 max_queue;	/* calls waiting for a free slot */
	struct {			/* issue 15: TLS to the participant */
		int	 on;		/* the group tls = { } is there */
		char	*ca;		/* NULL: the system's CAs */
		char	*cert;		/* with key: a client certificate */
		char	*key;
		char	*server_name;	/* NULL: the address's host */
	} tls;
};

struct config_node {
	char		*name;
	size_t		 service;	/* index into config.services */
	char		*action;	/* "/pkg.Service/Method" */
	char		*compensate;	/* NULL: nothing to undo */
	int		 retries;
	int		 compensate_retries;
	int		 timeout_ms;	/* resolved: node's, else its service's */
	int		 backoff_ms;
	int		 workers;
	int		 concurrency;
	char		*request;	/* raw mode: context key sent verbatim */
	char		*reply;		/* raw mode: context key for the reply */
	char		*compensate_request; /* raw mode: key the undo sends */
};

#define CONFIG_VERSION_LEN	16	/* hex digits of a flow's version */

struct config_flow {
	char		*name;
	char		 version[CONFIG_VERSION_LEN + 1]; /* of its definition */
	enum saga_mode	 mode;
	size_t		*steps;		/* indexes into config.nodes */
	size_t		 nsteps;
	int		 max_queue;
};

struct config {
	unsigned	 refs;		/* extra holders: config_ref() */
	/*
	 * A view (flowdef_view): one flow as a saga started with it, on
	 * parent's keys; it owns its nodes, services and flows arrays and
	 * the strings of owned[], and holds a reference on parent.
	 */
	struct config	*parent;
	char		**owned;
	size_t		  nowned;
	char		*path;		/* the file it came from */
	char		*pod_id;
	char		*listen;
	char		 listen_host[256];
	int		 listen_port;
	int		 shutdown_timeout_ms;
	char		*log_file;	/* NULL: syslog (or stderr with -d) */
	char		*queue;		/* the bus driver: "nats" or "rabbitmq" */
	char		*user;		/* drop to them after binding (root) */
	char		*group;
	char		*log_format;	/* "text" or "json" (issue 14) */

	struct {
		char	*url;
		char	*stream;
		char	*subject_prefix;	/* "saga": <prefix>.work.... */
		int	 replicas;
		int	 consumer_ttl;	/* s a durable consumer nobody reads
					   is kept; 0: for ever */
		char	**urls;		/* nats.urls; on load url becomes
					   their comma list */
		size_t	  nurls;
		char	*creds;		/* a .creds file (JWT and nkey seed) */
		char	*user;
		char	*password;	/* never logged */
		char	*password_file;
		struct {		/* issue 15 */
			int	 on;	/* nats.tls = { } is there */
			char	*ca;
			char	*cert;
			char	*key;
		} tls;
	} nats;
	struct {
		char	*url;		/* may hold a password: never log it */
		char	*queue_type;	/* "quorum" or "classic" */
	} rabbitmq;
	struct {
		char	*host;
		int	 port;
		int	 saga_ttl;
		int	 completed_ttl;	/* s a COMPLETED saga is kept; 0: saga_ttl */
		int	 lease_ms;	/* owner's hold on a running saga */
		char	**sentinels;	/* "host:port"; none: host and port */
		size_t	  nsentinels;
		char	*master_name;	/* the primary's name at the sentinels */
		int	 min_replicas_ack; /* WAIT for this many; 0: no WAIT */
		int	 ack_timeout_ms;
		int	 db;		/* SELECT */
		char	*username;	/* AUTH with an ACL user */
		char	*password;	/* never logged */
		char	*password_file;
	} redis;
	struct {
		char	*tokens_file;	/* NULL: no auth (auth.h) */
	} auth;
	struct {
		char	**allow;
		size_t	  nallow;
		int	  retries;
	} callbacks;

	struct {
		int	 max_connections;
		int	 max_connections_per_ip;
		int	 idle_timeout_ms;	/* 0: never */
		int	 handshake_timeout_ms;
		int	 max_context_entries;
		int	 memory_mb;
	} limits;
	struct {
		char	*otlp_endpoint;	/* NULL: no tracing */
		double	 sample_ratio;	/* of the traces sagad starts */
	} tracing;

	struct {			/* the HTTP listener (issue 14) */
		char	*listen;	/* NULL: none */
		char	 listen_host[256];
		int	 listen_port;
		int	 max_connections;
		int	 max_body_kb;
		int	 timeout_ms;
	} http;

	struct {			/* issue 15: the listeners' TLS */
		int	 on;		/* tls = { } is there */
		char	*cert;
		char	*key;
		char	*client_ca;	/* client certificates required */
	} tls;

	struct config_service	*services;
	size_t			 nservices;
	struct config_node	*nodes;
	size_t			 nnodes;
	struct config_flow	*flows;
	size_t			 nflows;
};

/*
 * Loads and validates path. pod_id overrides the file's pod_id when not NULL
 * (-P, POD_ID). Returns the config, or NULL with every error found written
 * into err, one per line, each as "FILE:LINE: KEY: what was expected".
 */
struct config	*config_load(const char *path, const char *pod_id,
		    char *err, size_t errlen);
/*
 * A config stays alive while anyone holds it: sagas in flight keep the
 * config they started with across a SIGHUP. config_ref() adds a holder,
 * config_free() drops one and frees with the last.
 */
struct config	*config_ref(struct config *);
void		 config_free(struct config *);

/*
 * SIGHUP: counts the restart-only keys (pod_id, listen, log_file, queue,
 * nats.*, rabbitmq.*, redis.*) whose value differs between old and new, one line for each in
 * err. The policy sagad(8) follows: log these lines as warnings, call
 * config_keep_restart_keys() so that new carries the running values of those
 * keys, and apply everything else. Nothing is refused.
 */
int		 config_reload_check(const struct config *old,
		    const struct config *new, char *err, size_t errlen);
void		 config_keep_restart_keys(struct config *new,
		    const struct config *old);

const char	*config_mode_name(enum saga_mode);	/* "sync", ... */
const struct config_flow *config_flow_find(const struct config *,
		    const char *);
const struct config_node *config_node_find(const struct config *,
		    const char *);
const struct config_service *config_service_find(const struct config *,
		    const char *);

/*
 * A worker topic: one (flow, node) of an async or throttling flow, which the
 * supervisor runs `workers` processes for, each taking `concurrency` messages
 * at a time. WORK_LEGACY_TOPIC ("legacy", `legacy` set) carries, whenever
 * an async or throttling flow exists, the work of sagas that run an older
 * definition of their flow than the config's (flowdef.h): its workers call
 * any node. One more topic delivers the callbacks of async sagas: named
 * WORK_CALLBACK_TOPIC ("callbacks", see work.h), with `callbacks` set and
 * flow, step and node CONFIG_TOPIC_NONE; it exists whenever an async flow
 * does.
 */
#define CONFIG_TOPIC_NONE		((size_t)-1)
#define CONFIG_CALLBACK_WORKERS		1
#define CONFIG_CALLBACK_CONCURRENCY	64
#define CONFIG_LEGACY_WORKERS		1
#define CONFIG_LEGACY_CONCURRENCY	64

struct config_topic {
	size_t		 flow;		/* index into config.flows */
	size_t		 step;		/* position in the flow's steps */
	size_t		 node;		/* index into config.nodes */
	enum saga_mode	 mode;
	char		 name[2 * CONFIG_NAME_MAX + 2];	/* "Flow/Node" */
	int		 workers;
	int		 concurrency;
	int		 callbacks;	/* the callback delivery topic */
	int		 legacy;	/* older definitions' work (flowdef.h) */
};

/*
 * Every topic of cfg, in flow then step order, then the callbacks topic if
 * any flow is async; free(*out) when done.
 */
size_t		 config_topics(const struct config *,
		    struct config_topic **out);

#endif
