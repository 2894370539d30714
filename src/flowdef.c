/*
 * flowdef.c - a flow's definition, its version, and a config view made
 * from it (see flowdef.h).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowdef.h"
#include "sagad/v1/work.pb-c.h"
#include "util.h"

static char *
opt(const char *s)
{
	return (char *)(uintptr_t)(s != NULL ? s : "");
}

uint8_t *
flowdef_pack(const struct config *cfg, const struct config_flow *flow,
    size_t *len)
{
	Sagad__V1__FlowDef	  fd;
	Sagad__V1__NodeDef	 *nd, **ndp;
	uint8_t			 *buf;

	sagad__v1__flow_def__init(&fd);
	fd.flow = flow->name;
	fd.mode = (int32_t)flow->mode;
	nd = util_xcalloc(flow->nsteps, sizeof(*nd));
	ndp = util_xcalloc(flow->nsteps, sizeof(*ndp));
	for (size_t i = 0; i < flow->nsteps; i++) {
		const struct config_node	*n = &cfg->nodes[flow->steps[i]];
		const struct config_service	*sv = &cfg->services[n->service];

		sagad__v1__node_def__init(&nd[i]);
		nd[i].name = n->name;
		nd[i].service = sv->name;
		nd[i].address = sv->address;
		nd[i].action = n->action;
		nd[i].compensate = opt(n->compensate);
		nd[i].retries = n->retries;
		nd[i].compensate_retries = n->compensate_retries;
		nd[i].timeout_ms = n->timeout_ms;
		nd[i].backoff_ms = n->backoff_ms;
		nd[i].request = opt(n->request);
		nd[i].reply = opt(n->reply);
		nd[i].compensate_request = opt(n->compensate_request);
		ndp[i] = &nd[i];
	}
	fd.n_steps = flow->nsteps;
	fd.steps = ndp;
	*len = sagad__v1__flow_def__get_packed_size(&fd);
	buf = util_xcalloc(1, *len > 0 ? *len : 1);
	sagad__v1__flow_def__pack(&fd, buf);
	free(ndp);
	free(nd);
	return buf;
}

void
flowdef_version(const uint8_t *buf, size_t len,
    char out[CONFIG_VERSION_LEN + 1])
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= buf[i];
		h *= 0x100000001b3ULL;
	}
	snprintf(out, CONFIG_VERSION_LEN + 1, "%016llx", (unsigned long long)h);
}

void
flowdef_version_all(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nflows; i++) {
		size_t	 len;
		uint8_t	*buf = flowdef_pack(cfg, &cfg->flows[i], &len);

		flowdef_version(buf, len, cfg->flows[i].version);
		free(buf);
	}
}

/* A string the view owns. */
static char *
own(struct config *v, const char *s)
{
	char *p;

	if (s == NULL || *s == '\0')
		return NULL;
	p = util_xstrdup(s);
	v->owned = util_xrealloc(v->owned, (v->nowned + 1) * sizeof(*v->owned));
	v->owned[v->nowned++] = p;
	return p;
}

/* The view's index of the service a node of the definition calls. */
static size_t
view_service(struct config *v, const Sagad__V1__NodeDef *nd)
{
	struct config_service *sv;

	for (size_t i = 0; i < v->nservices; i++)
		if (strcmp(v->services[i].name, nd->service) == 0)
			return i;
	/* Gone from the running config: as it was defined. */
	v->services = util_xrealloc(v->services, (v->nservices + 1) *
	    sizeof(*v->services));
	sv = &v->services[v->nservices];
	memset(sv, 0, sizeof(*sv));
	sv->name = own(v, nd->service);
	sv->address = own(v, nd->address);
	if (sv->address == NULL || util_parse_hostport(sv->address, sv->host,
	    sizeof(sv->host), &sv->port, NULL, 0) == -1) {
		snprintf(sv->host, sizeof(sv->host), "invalid");
		sv->port = 0;
	}
	sv->timeout_ms = nd->timeout_ms > 0 ? nd->timeout_ms : 5000;
	sv->max_inflight = 1024;
	sv->max_queue = 10000;
	return v->nservices++;
}

struct config *
flowdef_view(struct config *base, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	Sagad__V1__FlowDef	*fd;
	struct config		*v;
	struct config_flow	*f;

	fd = sagad__v1__flow_def__unpack(NULL, len, buf);
	if (fd == NULL || fd->flow == NULL || *fd->flow == '\0' ||
	    fd->n_steps == 0) {
		snprintf(err, errlen, "a flow definition of %zu bytes is not a "
		    "sagad.v1.FlowDef", len);
		if (fd != NULL)
			sagad__v1__flow_def__free_unpacked(fd, NULL);
		return NULL;
	}
	v = util_xcalloc(1, sizeof(*v));
	*v = *base;		/* its keys, shared: never freed by the view */
	v->refs = 0;
	v->parent = config_ref(base);
	v->owned = NULL;
	v->nowned = 0;
	v->services = util_xcalloc(base->nservices, sizeof(*v->services));
	if (base->nservices > 0)
		memcpy(v->services, base->services, base->nservices *
		    sizeof(*v->services));
	v->nservices = base->nservices;
	v->nodes = util_xcalloc(fd->n_steps, sizeof(*v->nodes));
	v->nnodes = fd->n_steps;
	v->flows = util_xcalloc(1, sizeof(*v->flows));
	v->nflows = 1;
	f = &v->flows[0];
	f->name = own(v, fd->flow);
	f->mode = (enum saga_mode)fd->mode;
	f->steps = util_xcalloc(fd->n_steps, sizeof(*f->steps));
	f->nsteps = fd->n_steps;
	f->max_queue = 10000;
	flowdef_version(buf, len, f->version);
	for (size_t i = 0; i < fd->n_steps; i++) {
		const Sagad__V1__NodeDef	*nd = fd->steps[i];
		struct config_node		*n = &v->nodes[i];
		const struct config_node	*bn = config_node_find(base,
						    nd->name);

		n->name = own(v, nd->name);
		n->service = view_service(v, nd);
		n->action = own(v, nd->action);
		n->compensate = own(v, nd->compensate);
		n->retries = nd->retries;
		n->compensate_retries = nd->compensate_retries;
		n->timeout_ms = nd->timeout_ms;
		n->backoff_ms = nd->backoff_ms;
		n->request = own(v, nd->request);
		n->reply = own(v, nd->reply);
		n->compensate_request = own(v, nd->compensate_request);
		/* Worker counts are the running config's business. */
		n->workers = bn != NULL ? bn->workers : 1;
		n->concurrency = bn != NULL ? bn->concurrency : 1;
		f->steps[i] = i;
	}
	sagad__v1__flow_def__free_unpacked(fd, NULL);
	if (v->nodes[0].name == NULL || v->nodes[0].action == NULL) {
		snprintf(err, errlen, "a flow definition without a node name "
		    "or action");
		config_free(v);
		return NULL;
	}
	return v;
}

char *
flowdef_hex(const uint8_t *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s = util_xcalloc(1, 2 * len + 1);

	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[buf[i] >> 4];
		s[2 * i + 1] = digits[buf[i] & 15];
	}
	return s;
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

uint8_t *
flowdef_unhex(const char *s, size_t *len)
{
	size_t	 n = strlen(s);
	uint8_t	*buf;

	if (n % 2 != 0)
		return NULL;
	buf = util_xcalloc(1, n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(buf);
			return NULL;
		}
		buf[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return buf;
}
