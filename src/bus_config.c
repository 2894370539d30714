/*
 * bus_config.c - from a struct config to the bus it asks for (see
 * bus_config.h): `queue = "nats"` takes nats.url, nats.stream and
 * nats.replicas; `queue = "rabbitmq"` takes rabbitmq.url and
 * rabbitmq.queue_type, with nats.subject_prefix ("saga") as the prefix of
 * its exchanges, as of its routing keys. No broker library is called here
 * and nothing is logged.
 */
#include "autoconf.h"

#include <string.h>

#include "bus.h"
#include "bus_config.h"
#include "config.h"
#include "util.h"
#include "work.h"

static int
bus_config_rabbitmq(const struct config *cfg)
{
	return cfg->queue != NULL && strcmp(cfg->queue, "rabbitmq") == 0;
}

void
bus_config_opts(const struct config *cfg, struct bus_opts *o)
{
	if (bus_config_rabbitmq(cfg)) {
		o->url = cfg->rabbitmq.url;
		o->stream = cfg->nats.subject_prefix;
		o->replicas = 1;
		o->queue_type = cfg->rabbitmq.queue_type;
	} else {
		o->url = cfg->nats.url;
		o->stream = cfg->nats.stream;
		o->replicas = cfg->nats.replicas;
		o->consumer_ttl_s = cfg->nats.consumer_ttl;
		(void)work_stream_subjects(o->stream_subject,
		    sizeof(o->stream_subject), cfg->nats.subject_prefix);
		o->queue_type = NULL;
		o->creds = cfg->nats.creds;
		o->user = cfg->nats.user;
		o->password = cfg->nats.password;
		o->password_file = cfg->nats.password_file;
		o->tls = cfg->nats.tls.on;
		o->tls_ca = cfg->nats.tls.ca;
		o->tls_cert = cfg->nats.tls.cert;
		o->tls_key = cfg->nats.tls.key;
	}
}

const char *
bus_config_name(const struct config *cfg)
{
	return bus_config_rabbitmq(cfg) ? "rabbitmq" : "nats";
}

const char *
bus_config_where(const struct config *cfg, char *buf, size_t len)
{
	return util_url_redact(bus_config_rabbitmq(cfg) ? cfg->rabbitmq.url :
	    cfg->nats.url, buf, len);
}
