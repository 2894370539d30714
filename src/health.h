/*
 * health.h - the standard gRPC health service, grpc.health.v1.Health (Check
 * and Watch), served on a grpc_server. Service "" is the server as a whole
 * and starts SERVING. It knows nothing of what makes a service healthy: the
 * process layer says so with health_set().
 */
#ifndef SAGAD_HEALTH_H
#define SAGAD_HEALTH_H

#include <stddef.h>

struct grpc_server;
struct health;

/* The serving states of grpc.health.v1.HealthCheckResponse. */
enum health_status {
	HEALTH_UNKNOWN = 0,
	HEALTH_SERVING = 1,
	HEALTH_NOT_SERVING = 2,
	HEALTH_SERVICE_UNKNOWN = 3,	/* Watch only */
};

/* Registers Check and Watch; NULL with err filled if they are taken. */
struct health	*health_new(struct grpc_server *, char *err, size_t errlen);
/* Sets a service's state and tells its watchers if it changed. */
void		 health_set(struct health *, const char *service, int status);
int		 health_get(const struct health *, const char *service); /* -1 unknown */
/* Draining: every service NOT_SERVING, watchers told. */
void		 health_set_all_not_serving(struct health *);
/* Before a graceful server shutdown: drain, then end every Watch (OK). */
void		 health_shutdown(struct health *);
size_t		 health_nwatchers(const struct health *);
/* After grpc_server_free(), which may still call into the health service. */
void		 health_free(struct health *);

#endif
