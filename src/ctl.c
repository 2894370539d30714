/*
 * ctl.c - sagactl: talks to sagad's Orchestrator and Health services with
 * the project's own gRPC client and prints what it learns, for people by
 * default and as JSON with --json. `sagactl bench` drives load at a fixed
 * rate (open loop, like vegeta) or as fast as answers come (closed loop) and
 * prints a report (src/report.c). Not part of the daemon.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ctl.h"
#include "ctl_int.h"
#include "grpc/client.h"
#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "json.h"
#include "report.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "tls.h"
#include "util.h"

#define CTL_DEFAULT_SERVER	"127.0.0.1:10000"


static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: sagactl [-s host:port] [--token T] [--json] [-T ms] COMMAND [ARGS]\n"
"\n"
"commands:\n"
"  run FLOW [key=value ...]   start a saga and print it when Run returns\n"
"      [--id ID] [--mode sync|async|throttling] [--callback URL] [--wait]\n"
"  get ID                     print a saga's current state\n"
"  watch ID                   print a saga's events until it ends\n"
"  flows                      list the configured flows\n"
"  list [--state S]... [--flow F] [--since T] [--until T] [--limit N]\n"
"                             find sagas, newest first (S: FAILED...;\n"
"                             T: a duration ago as 15m, 2h, or unix ms)\n"
"  cancel ID [REASON]         stop a PENDING or RUNNING saga, compensate it\n"
"  retry ID                   FAILED: try its compensations again\n"
"  resolve ID NOTE            FAILED: it was repaired by hand\n"
"  health [SERVICE]           ask grpc.health.v1.Health\n"
"  bench FLOW -r RATE -d DURATION [-c CONNECTIONS] [key=value ...]\n"
"      [--max-inflight N] [--mode M] [--plot FILE.svg]\n"
"                             drive load and print a report\n"
"\n"
"options:\n"
"  -s, --server host:port     sagad's address (default $SAGAD_SERVER, else "
    CTL_DEFAULT_SERVER ")\n"
"  -j, --json                 print JSON for scripts\n"
"  -T, --timeout ms           deadline of each call (default 30000)\n"
"  -t, --token TOKEN          send \"authorization: Bearer TOKEN\" (default\n"
"                             $SAGAD_TOKEN); prefer the variable: a flag\n"
"                             shows in ps\n"
"      --tls                  talk TLS to sagad, checking its certificate\n"
"                             against the system's CAs\n"
"      --ca FILE              ... against the CA certificates in FILE (PEM);\n"
"                             implies --tls\n"
"      --cert FILE --key FILE a client certificate, for a sagad whose\n"
"                             tls.client_ca requires one; implies --tls\n"
"      --server-name NAME     the name sagad's certificate must carry\n"
"                             (default: the host of -s)\n"
"  -h, --help                 this text\n"
"  -V, --version              the version\n"
"\n"
"exit status: 0 completed or ok, 1 compensated, failed or refused,\n"
"2 usage, 3 sagad unavailable, 4 run: no answer within the deadline\n"
"(the saga may still be running: sagactl get ID)\n");
}

int
ctl_parse_kv(const char *s, char **key, char **value, char *err,
    size_t errlen)
{
	const char *eq = strchr(s, '=');

	if (eq == NULL || eq == s) {
		snprintf(err, errlen, "expected key=value, got \"%s\"", s);
		return -1;
	}
	*key = util_xcalloc(1, eq - s + 1);
	memcpy(*key, s, eq - s);
	*value = util_xstrdup(eq + 1);
	return 0;
}

int
ctl_parse_duration(const char *s, int64_t *us)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || v < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		*us = (int64_t)(v * 1e6);
	else if (strcmp(end, "ms") == 0)
		*us = (int64_t)(v * 1e3);
	else if (strcmp(end, "m") == 0)
		*us = (int64_t)(v * 60e6);
	else if (strcmp(end, "h") == 0)
		*us = (int64_t)(v * 3600e6);
	else
		return -1;
	return 0;
}

static int
exit_for_status(int status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return CTL_EXIT_OK;
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return CTL_EXIT_UNAVAILABLE;
	default:
		return CTL_EXIT_FAILED;
	}
}

static int
exit_for_saga(const struct saga *s)
{
	switch (s->state) {
	case SAGA_STATE_COMPENSATED:
	case SAGA_STATE_FAILED:
	case SAGA_STATE_COMPENSATING:
		return CTL_EXIT_FAILED;
	default:
		return CTL_EXIT_OK;
	}
}

static int
printable(const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] == 0x7f)
			return 0;
	return 1;
}

/* Saga times are whole milliseconds: "0ms", "12ms", "1.204s". */
static void
fmt_ms(int64_t ms, char *buf, size_t len)
{
	if (ms < 1000)
		snprintf(buf, len, "%lldms", (long long)ms);
	else
		snprintf(buf, len, "%.3fs", (double)ms / 1000.0);
}

void
ctl_print_saga(FILE *fp, const struct saga *s)
{
	static const char *modes[] = { "unspecified", "sync", "async",
	    "throttling" };
	char	 took[32], at[32], dur[32];
	int64_t	 end = s->updated_ms;

	fmt_ms(end > s->created_ms ? end - s->created_ms : 0, took,
	    sizeof(took));
	fprintf(fp, "saga %s  flow %s  mode %s\n", s->id, s->flow,
	    (unsigned)s->mode <= 3 ? modes[s->mode] : "?");
	fprintf(fp, "state %s%s%s\n", saga_state_name(s->state),
	    SAGA_STATE_IS_FINAL(s->state) ? " after " : "",
	    SAGA_STATE_IS_FINAL(s->state) ? took : "");
	fprintf(fp, "  %-3s %-20s %-13s %-8s %-10s %s\n", "#", "step", "state",
	    "attempts", "started", "took");
	for (size_t i = 0; i < s->nsteps; i++) {
		const struct saga_step *st = &s->steps[i];

		if (st->started_ms > 0) {
			at[0] = '+';
			fmt_ms(st->started_ms - s->created_ms, at + 1,
			    sizeof(at) - 1);
			if (st->finished_ms >= st->started_ms)
				fmt_ms(st->finished_ms - st->started_ms, dur,
				    sizeof(dur));
			else
				snprintf(dur, sizeof(dur), "-");
		} else {
			snprintf(at, sizeof(at), "-");
			snprintf(dur, sizeof(dur), "-");
		}
		fprintf(fp, "  %-3zu %-20s %-13s %-8d %-10s %s\n", i + 1,
		    st->name, saga_state_name(st->state), st->attempts, at,
		    dur);
		if (st->error != NULL)
			fprintf(fp, "      error: %s\n", st->error);
	}
	if (s->nctx > 0) {
		fprintf(fp, "context\n");
		for (size_t i = 0; i < s->nctx; i++) {
			const struct saga_kv *kv = &s->ctx[i];

			if (printable(kv->value, kv->len))
				fprintf(fp, "  %s = %.*s\n", kv->key,
				    (int)kv->len, (const char *)kv->value);
			else {
				char *b = grpc_b64_encode(kv->value, kv->len,
				    NULL);
				fprintf(fp, "  %s = (base64) %s\n", kv->key, b);
				free(b);
			}
		}
	}
	if (s->error != NULL)
		fprintf(fp, "error %s\n", s->error);
}


static void
sync_call_cb(void *arg, const struct grpc_client_result *r)
{
	struct sync_call *sc = arg;

	sc->done = 1;
	sc->status = r->status;
	sc->message = util_xstrdup(r->message);
	sc->len = r->len;
	sc->data = util_xcalloc(1, r->len + 1);
	if (r->len > 0)
		memcpy(sc->data, r->data, r->len);
}

void
ctl_unary(struct ctl *c, const char *path, const ProtobufCMessage *req,
    struct sync_call *sc)
{
	size_t	 len = protobuf_c_message_get_packed_size(req);
	uint8_t	*buf = util_xcalloc(1, len + 1);

	protobuf_c_message_pack(req, buf);
	memset(sc, 0, sizeof(*sc));
	grpc_client_call_start(c->ch, path, buf, len, CTL_MD(c), c->timeout_ms,
	    sync_call_cb, sc);
	free(buf);
	while (!sc->done)
		event_base_loop(c->base, EVLOOP_ONCE);
}

void
ctl_call_free(struct sync_call *sc)
{
	free(sc->message);
	free(sc->data);
}

void
ctl_print_error_json(FILE *fp, int status, const char *message)
{
	fprintf(fp, "{\"error\":{\"code\":\"%s\",\"message\":",
	    grpc_status_name(status));
	json_write_string(fp, message);
	fputs("}}\n", fp);
}

int
ctl_call_error(struct ctl *c, const struct sync_call *sc)
{
	if (c->json)
		ctl_print_error_json(stdout, sc->status, sc->message);
	fprintf(stderr, "sagactl: %s: %s\n", grpc_status_name(sc->status),
	    sc->message);
	ctl_auth_hint(c, sc->status);
	return exit_for_status(sc->status);
}

void
ctl_auth_hint(const struct ctl *c, int status)
{
	if (status == GRPC_STATUS_UNAUTHENTICATED && !c->has_token)
		fprintf(stderr, "sagactl: sagad asks for a token: pass "
		    "--token TOKEN or set SAGAD_TOKEN\n");
	else if (status == GRPC_STATUS_UNAUTHENTICATED)
		fprintf(stderr, "sagactl: sagad does not know the token given "
		    "(--token or SAGAD_TOKEN): check it against its "
		    "auth.tokens_file\n");
	else if (status == GRPC_STATUS_PERMISSION_DENIED && c->has_token)
		fprintf(stderr, "sagactl: the token given is valid but its "
		    "role may not do this: use a token with a stronger role\n");
}

/*
 * Prints a Saga reply; returns the exit code it implies: the saga's own
 * ending, or 0 (ok_exit) when the call's success is what counts.
 */
int
ctl_print_reply(struct ctl *c, const struct sync_call *sc, int ok_exit)
{
	struct saga	*s;
	char		 err[SAGAD_ERRLEN];
	int		 rc;

	if (sc->status != GRPC_STATUS_OK)
		return ctl_call_error(c, sc);
	s = saga_unpack(sc->data, sc->len, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "sagactl: %s\n", err);
		return CTL_EXIT_FAILED;
	}
	if (c->json) {
		char *j = saga_to_json(s, NULL);
		printf("%s\n", j);
		free(j);
	} else
		ctl_print_saga(stdout, s);
	rc = ok_exit ? CTL_EXIT_OK : exit_for_saga(s);
	saga_free(s);
	return rc;
}

/*
 * The key=value arguments from argv[i] on, as the context of req; frees
 * with ctl_req_context_free(). -1 with a sentence in err on a malformed one.
 */
int
ctl_req_context(Saga__V1__RunRequest *req, int argc, char **argv, int i,
    char *err, size_t errlen)
{
	Saga__V1__RunRequest__ContextEntry	*ents, **entp;
	size_t					 n = 0;

	req->context = NULL;
	req->n_context = 0;
	if (i >= argc)
		return 0;
	ents = util_xcalloc(argc, sizeof(*ents));
	entp = util_xcalloc(argc, sizeof(*entp));
	req->context = entp;
	for (; i < argc; i++) {
		char *k, *v;

		if (ctl_parse_kv(argv[i], &k, &v, err, errlen) == -1) {
			if (n == 0)
				free(ents);
			req->n_context = n;
			return -1;
		}
		saga__v1__run_request__context_entry__init(&ents[n]);
		ents[n].key = k;
		ents[n].value.data = (uint8_t *)v;
		ents[n].value.len = strlen(v);
		entp[n] = &ents[n];
		n++;
	}
	req->n_context = n;
	return 0;
}

void
ctl_req_context_free(Saga__V1__RunRequest *req)
{
	for (size_t i = 0; i < req->n_context; i++) {
		free(req->context[i]->key);
		free(req->context[i]->value.data);
	}
	/* The entries are one array; the first pointer is its start. */
	if (req->context != NULL)
		free(req->n_context > 0 ? req->context[0] : NULL);
	free(req->context);
	req->context = NULL;
	req->n_context = 0;
}

/* "sync", "async", "throttling" as a saga.v1.Mode; -1 for anything else. */
int
ctl_parse_mode(const char *s)
{
	if (strcmp(s, "sync") == 0)
		return SAGA__V1__MODE__MODE_SYNC;
	if (strcmp(s, "async") == 0)
		return SAGA__V1__MODE__MODE_ASYNC;
	if (strcmp(s, "throttling") == 0)
		return SAGA__V1__MODE__MODE_THROTTLING;
	return -1;
}

static int cmd_watch(struct ctl *, const char *id);

/*
 * A Run with no answer by its deadline: sagad answers a sync or throttling
 * Run when the saga ends, and a saga's steps and compensations retry as
 * their nodes say, beyond any caller's deadline (sagad(8), "How long a Run
 * takes"). Say what is known and where to look, not "unreachable".
 */
static int
run_no_answer(struct ctl *c, const struct sync_call *sc, const char *id)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "no answer within %lld ms (-T); if sagad "
	    "took the Run, saga %s is still running (its steps and "
	    "compensations may retry past any deadline): `sagactl get %s` "
	    "shows how it ends", (long long)c->timeout_ms, id, id);
	if (c->json)
		ctl_print_error_json(stdout, sc->status, msg);
	fprintf(stderr, "sagactl: %s: %s\n", grpc_status_name(sc->status), msg);
	return CTL_EXIT_UNKNOWN;
}

static int
cmd_run(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id",		required_argument, NULL, 'i' },
		{ "mode",	required_argument, NULL, 'm' },
		{ "callback",	required_argument, NULL, 'b' },
		{ "wait",	no_argument,	   NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	Saga__V1__RunRequest			 req;
	struct sync_call			 sc;
	char					 err[SAGAD_ERRLEN], idbuf[40];
	int					 ch, wait = 0, rc, mode;

	saga__v1__run_request__init(&req);
	/* 0 resets GNU getopt, which then takes flags after FLOW too. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			req.request_id = optarg;
			break;
		case 'm':
			if ((mode = ctl_parse_mode(optarg)) != -1)
				req.mode = (Saga__V1__Mode)mode;
			else {
				fprintf(stderr, "sagactl: --mode: expected "
				    "sync, async or throttling, got \"%s\"\n",
				    optarg);
				return CTL_EXIT_USAGE;
			}
			break;
		case 'b':
			req.callback_url = optarg;
			break;
		case 'w':
			wait = 1;
			break;
		default:
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "sagactl: run: expected a flow name\n");
		return CTL_EXIT_USAGE;
	}
	req.flow = argv[optind++];
	if (ctl_req_context(&req, argc, argv, optind, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagactl: run: %s\n", err);
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	/*
	 * Name the saga here when the user did not, so that a Run that gets
	 * no answer in time can still say which saga to look at.
	 */
	if (req.request_id == NULL || *req.request_id == '\0') {
		uint64_t rng;

		util_rng_seed(&rng);
		snprintf(idbuf, sizeof(idbuf), "%016llx%016llx",
		    (unsigned long long)util_rng_next(&rng),
		    (unsigned long long)util_rng_next(&rng));
		req.request_id = idbuf;
	}
	ctl_unary(c, "/saga.v1.Orchestrator/Run", &req.base, &sc);
	if (sc.status == GRPC_STATUS_DEADLINE_EXCEEDED) {
		rc = run_no_answer(c, &sc, req.request_id);
		ctl_call_free(&sc);
		goto out;
	}
	if (wait && sc.status == GRPC_STATUS_OK && !c->json) {
		struct saga *s = saga_unpack(sc.data, sc.len, err, sizeof(err));
		if (s != NULL && !SAGA_STATE_IS_FINAL(s->state)) {
			char *id = util_xstrdup(s->id);
			saga_free(s);
			ctl_call_free(&sc);
			rc = cmd_watch(c, id);
			free(id);
			goto out;
		}
		saga_free(s);
	}
	rc = ctl_print_reply(c, &sc, 0);
	ctl_call_free(&sc);
out:
	ctl_req_context_free(&req);
	return rc;
}

static int
cmd_get(struct ctl *c, int argc, char **argv)
{
	Saga__V1__GetRequest	req;
	struct sync_call	sc;
	int			rc;

	if (argc != 2) {
		fprintf(stderr, "sagactl: get: expected one saga id\n");
		return CTL_EXIT_USAGE;
	}
	saga__v1__get_request__init(&req);
	req.id = argv[1];
	ctl_unary(c, "/saga.v1.Orchestrator/Get", &req.base, &sc);
	rc = ctl_print_reply(c, &sc, 0);
	ctl_call_free(&sc);
	return rc;
}

struct watch {
	struct ctl	*c;
	int		 done;
	int		 status;
	char		*message;
	int		 final_state;
};

static void
watch_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct watch		*w = arg;
	Saga__V1__SagaEvent	*ev;
	char			 ts[32];
	time_t			 t;
	struct tm		 tm;

	ev = saga__v1__saga_event__unpack(NULL, len, msg);
	if (ev == NULL) {
		fprintf(stderr, "sagactl: watch: an event that is not a "
		    "saga.v1.SagaEvent\n");
		return;
	}
	if (*ev->step == '\0')
		w->final_state = ev->state;
	if (w->c->json)
		ctl_print_event_json(stdout, ev);
	else {
		t = ev->unix_ms / 1000;
		localtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
		printf("%s.%03d  %-20s %-13s", ts, (int)(ev->unix_ms % 1000),
		    *ev->step ? ev->step : "(saga)",
		    saga_state_name((enum saga_state)ev->state));
		if (ev->attempt > 0)
			printf(" attempt %d", ev->attempt);
		if (*ev->error)
			printf("  %s", ev->error);
		printf("\n");
	}
	fflush(stdout);
	saga__v1__saga_event__free_unpacked(ev, NULL);
}

void
ctl_print_event_json(FILE *fp, const Saga__V1__SagaEvent *ev)
{
	fputs("{\"sagaId\":", fp);
	json_write_string(fp, ev->saga_id);
	fputs(",\"step\":", fp);
	json_write_string(fp, ev->step);
	fprintf(fp, ",\"state\":\"STATE_%s\",\"error\":",
	    saga_state_name((enum saga_state)ev->state));
	json_write_string(fp, ev->error);
	fprintf(fp, ",\"attempt\":%d,\"unixMs\":\"%lld\"}\n", ev->attempt,
	    (long long)ev->unix_ms);
}

static void
watch_end(void *arg, const struct grpc_client_result *r)
{
	struct watch *w = arg;

	w->done = 1;
	w->status = r->status;
	w->message = util_xstrdup(r->message);
}

static int
cmd_watch(struct ctl *c, const char *id)
{
	Saga__V1__GetRequest	 req;
	struct watch		 w = { .c = c };
	size_t			 len;
	uint8_t			*buf;
	int			 rc;

	saga__v1__get_request__init(&req);
	req.id = (char *)(uintptr_t)id;
	len = saga__v1__get_request__get_packed_size(&req);
	buf = util_xcalloc(1, len + 1);
	saga__v1__get_request__pack(&req, buf);
	/* A watch lasts as long as the saga: no deadline but the user's. */
	grpc_client_stream_start(c->ch, "/saga.v1.Orchestrator/Watch", buf,
	    len, CTL_MD(c), 0, watch_msg, watch_end, &w);
	free(buf);
	while (!w.done)
		event_base_loop(c->base, EVLOOP_ONCE);
	if (w.status != GRPC_STATUS_OK) {
		fprintf(stderr, "sagactl: watch: %s: %s\n",
		    grpc_status_name(w.status), w.message);
		ctl_auth_hint(c, w.status);
		rc = exit_for_status(w.status);
	} else
		rc = w.final_state == SAGA_STATE_COMPENSATED ||
		    w.final_state == SAGA_STATE_FAILED ? CTL_EXIT_FAILED :
		    CTL_EXIT_OK;
	free(w.message);
	return rc;
}

static int
cmd_flows(struct ctl *c)
{
	static const char		*modes[] = { "unspecified", "sync",
					    "async", "throttling" };
	Saga__V1__ListFlowsRequest	 req;
	Saga__V1__ListFlowsResponse	*resp;
	struct sync_call		 sc;

	saga__v1__list_flows_request__init(&req);
	ctl_unary(c, "/saga.v1.Orchestrator/ListFlows", &req.base, &sc);
	if (sc.status != GRPC_STATUS_OK) {
		int rc = ctl_call_error(c, &sc);
		ctl_call_free(&sc);
		return rc;
	}
	resp = saga__v1__list_flows_response__unpack(NULL, sc.len, sc.data);
	ctl_call_free(&sc);
	if (resp == NULL) {
		fprintf(stderr, "sagactl: flows: an answer that is not a "
		    "saga.v1.ListFlowsResponse\n");
		return CTL_EXIT_FAILED;
	}
	if (c->json)
		printf("{\"flows\":[");
	for (size_t i = 0; i < resp->n_flows; i++) {
		const Saga__V1__Flow *f = resp->flows[i];
		unsigned m = (unsigned)f->mode <= 3 ? (unsigned)f->mode : 0;

		if (c->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_write_string(stdout, f->name);
			printf(",\"mode\":\"MODE_%s\",\"steps\":[",
			    m == 0 ? "UNSPECIFIED" : m == 1 ? "SYNC" :
			    m == 2 ? "ASYNC" : "THROTTLING");
			for (size_t j = 0; j < f->n_steps; j++) {
				if (j > 0)
					putchar(',');
				json_write_string(stdout, f->steps[j]);
			}
			printf("]}");
			continue;
		}
		printf("%-24s %-11s", f->name, modes[m]);
		for (size_t j = 0; j < f->n_steps; j++)
			printf("%s%s", j ? " -> " : "", f->steps[j]);
		printf("\n");
	}
	if (c->json)
		printf("]}\n");
	saga__v1__list_flows_response__free_unpacked(resp, NULL);
	return CTL_EXIT_OK;
}

static int
cmd_health(struct ctl *c, int argc, char **argv)
{
	static const char			*names[] = { "UNKNOWN",
						    "SERVING", "NOT_SERVING",
						    "SERVICE_UNKNOWN" };
	Grpc__Health__V1__HealthCheckRequest	 req;
	Grpc__Health__V1__HealthCheckResponse	*resp;
	struct sync_call			 sc;
	const char				*name;
	int					 st;

	if (argc > 2) {
		fprintf(stderr, "sagactl: health: expected at most one "
		    "service name\n");
		return CTL_EXIT_USAGE;
	}
	grpc__health__v1__health_check_request__init(&req);
	req.service = argc == 2 ? argv[1] : (char *)(uintptr_t)"";
	ctl_unary(c, "/grpc.health.v1.Health/Check", &req.base, &sc);
	if (sc.status != GRPC_STATUS_OK) {
		int rc = ctl_call_error(c, &sc);
		ctl_call_free(&sc);
		return rc;
	}
	resp = grpc__health__v1__health_check_response__unpack(NULL, sc.len,
	    sc.data);
	ctl_call_free(&sc);
	if (resp == NULL) {
		fprintf(stderr, "sagactl: health: an answer that is not a "
		    "grpc.health.v1.HealthCheckResponse\n");
		return CTL_EXIT_FAILED;
	}
	st = (unsigned)resp->status <= 3 ? (int)resp->status : 0;
	name = names[st];
	grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
	if (c->json)
		printf("{\"status\":\"%s\"}\n", name);
	else
		printf("%s\n", name);
	return st == 1 ? CTL_EXIT_OK : CTL_EXIT_FAILED;
}

int
ctl_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server",	required_argument, NULL, 's' },
		{ "json",	no_argument,	   NULL, 'j' },
		{ "timeout",	required_argument, NULL, 'T' },
		{ "token",	required_argument, NULL, 't' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ "version",	no_argument,	   NULL, 'V' },
		{ "tls",	no_argument,	   NULL, 1000 },
		{ "ca",		required_argument, NULL, 1001 },
		{ "cert",	required_argument, NULL, 1002 },
		{ "key",	required_argument, NULL, 1003 },
		{ "server-name", required_argument, NULL, 1004 },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl	 c;
	const char	*server = getenv("SAGAD_SERVER");
	const char	*token = getenv("SAGAD_TOKEN");
	const char	*ca = NULL, *cert = NULL, *key = NULL;
	int		 tls = 0;
	const char	*cmd;
	char		 host[256], err[SAGAD_ERRLEN], *end;
	int		 port, ch, rc;

	memset(&c, 0, sizeof(c));
	c.timeout_ms = 30000;
	if (server == NULL || *server == '\0')
		server = CTL_DEFAULT_SERVER;
	/* '+': stop at the command; its own flags come after it. */
	while ((ch = getopt_long(argc, argv, "+s:jt:T:hV", opts, NULL)) !=
	    -1) {
		switch (ch) {
		case 's':
			server = optarg;
			break;
		case 'j':
			c.json = 1;
			break;
		case 't':
			token = optarg;
			break;
		case 'T':
			c.timeout_ms = strtoll(optarg, &end, 10);
			if (*end != '\0' || c.timeout_ms <= 0) {
				fprintf(stderr, "sagactl: -T: expected a "
				    "positive number of milliseconds\n");
				return CTL_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return CTL_EXIT_OK;
		case 'V':
			printf("sagactl %s\n", PACKAGE_VERSION);
			return CTL_EXIT_OK;
		case 1000:
			tls = 1;
			break;
		case 1001:
			ca = optarg;
			tls = 1;
			break;
		case 1002:
			cert = optarg;
			tls = 1;
			break;
		case 1003:
			key = optarg;
			tls = 1;
			break;
		case 1004:
			c.server_name = optarg;
			break;
		default:
			usage(stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (token != NULL && *token != '\0') {
		char	*v;
		size_t	 n = strlen(token);

		if (strspn(token, "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJ"
		    "KLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") != n
		    || n > 4096) {
			fprintf(stderr, "sagactl: --token: expected printable "
			    "characters without spaces\n");
			return CTL_EXIT_USAGE;
		}
		v = util_xcalloc(1, n + 8);
		snprintf(v, n + 8, "Bearer %s", token);
		grpc_md_add(&c.md, "authorization", v, n + 7);
		free(v);
		c.has_token = 1;
	}
	if (util_parse_hostport(server, host, sizeof(host), &port, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "sagactl: -s: %s\n", err);
		return CTL_EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "run") != 0 && strcmp(cmd, "get") != 0 &&
	    strcmp(cmd, "watch") != 0 && strcmp(cmd, "flows") != 0 &&
	    strcmp(cmd, "health") != 0 && strcmp(cmd, "bench") != 0 &&
	    strcmp(cmd, "list") != 0 && strcmp(cmd, "cancel") != 0 &&
	    strcmp(cmd, "retry") != 0 && strcmp(cmd, "resolve") != 0) {
		fprintf(stderr, "sagactl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (tls && (c.tls = tls_client_new(ca, cert, key, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "sagactl: %s\n", err);
		return CTL_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	c.base = event_base_new();
	c.client = grpc_client_new(c.base, NULL, err, sizeof(err));
	if (c.base == NULL || c.client == NULL) {
		fprintf(stderr, "sagactl: %s\n", err);
		return CTL_EXIT_FAILED;
	}
	c.ch = grpc_client_channel_tls(c.client, host, port, c.tls,
	    c.server_name);
	if (strcmp(cmd, "run") == 0)
		rc = cmd_run(&c, argc, argv);
	else if (strcmp(cmd, "get") == 0)
		rc = cmd_get(&c, argc, argv);
	else if (strcmp(cmd, "watch") == 0) {
		if (argc != 2) {
			fprintf(stderr, "sagactl: watch: expected one saga "
			    "id\n");
			rc = CTL_EXIT_USAGE;
		} else
			rc = cmd_watch(&c, argv[1]);
	} else if (strcmp(cmd, "flows") == 0)
		rc = cmd_flows(&c);
	else if (strcmp(cmd, "health") == 0)
		rc = cmd_health(&c, argc, argv);
	else if (strcmp(cmd, "list") == 0)
		rc = ctl_cmd_list(&c, argc, argv);
	else if (strcmp(cmd, "cancel") == 0 || strcmp(cmd, "retry") == 0 ||
	    strcmp(cmd, "resolve") == 0)
		rc = ctl_cmd_operate(&c, argc, argv);
	else
		rc = ctl_cmd_bench(&c, argc, argv, host, port);
	grpc_client_free(c.client);
	tls_free(c.tls);
	event_base_free(c.base);
	grpc_md_clear(&c.md);
	return rc;
}
