/*
 * bus_config.h - the bus a configuration asks for: which driver (`queue`),
 * its URL and options, and how to name it in log lines without its secrets.
 * The one place that turns sagad.conf(5) into struct bus_opts, shared by the
 * master and the workers. Not here: connecting (bus.h), logging.
 */
#ifndef SAGAD_BUS_CONFIG_H
#define SAGAD_BUS_CONFIG_H

#include <stddef.h>

struct bus_opts;
struct config;

/* Fills url, stream, replicas and queue_type of o; the rest is left. */
void		 bus_config_opts(const struct config *, struct bus_opts *o);

/* "nats" or "rabbitmq" (the `queue`), to start log lines with. */
const char	*bus_config_name(const struct config *);

/* The bus URL with any password replaced by "***"; returns buf. */
const char	*bus_config_where(const struct config *, char *buf,
		    size_t len);

#endif
