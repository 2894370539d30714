/*
 * service.h - what the master serves: the gRPC server on `listen` with
 * grpc.health.v1.Health and saga.v1.Orchestrator, the gRPC client the sync
 * engine calls steps with, and the Redis store. Plugged into the master
 * through struct master_hooks; process-layer code (it logs).
 */
#ifndef SAGAD_SERVICE_H
#define SAGAD_SERVICE_H

#include <stddef.h>

struct config;
struct master_hooks;
struct service;

/* Fills hooks so that the master runs the service; NULL on no memory. */
struct service	*service_new(struct master_hooks *);
/* After the master's loop has ended: close and free everything. */
void		 service_free(struct service *);
/*
 * The HTTP listener's token check (the same tokens, roles and refusal log
 * as gRPC's), shaped as a hook whose arg is the struct service:
 * authorization is the Authorization header's value (NULL: none), role an
 * enum auth_role (http.h's enum http_role has the same values), peer and
 * what (the request line) name the request in the log. Returns 1 to serve
 * it, else 0 with *status 401 or 403 and a sentence for the body in msg.
 */
int		 service_http_authorize(void *service,
		    const char *authorization, int role, const char *peer,
		    const char *what, int *status, char *msg, size_t msglen);
/*
 * Loads every TLS file cfg names (tls, services.NAME.tls, nats.tls) as
 * sagad would, for `sagad -t` and the start: -1 with the first that does
 * not load and why.
 */
int		 service_tls_check(const struct config *, char *err,
		    size_t errlen);

#endif
