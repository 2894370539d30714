/*
 * ctl_operate.c - sagactl's operator commands: list (find sagas by state,
 * flow and time, newest first, fetching pages until --limit), and cancel,
 * retry and resolve of one saga. Human output by default: a table for
 * list, the saga's timeline for the others; --json prints protobuf's JSON
 * mapping (list: one object with "sagas" and "nextPageToken").
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl.h"
#include "ctl_int.h"
#include "grpc/grpc.h"
#include "json.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "util.h"

#define CTL_LIST_DEFAULT	100
#define CTL_LIST_PAGE		1000

/* "FAILED", "failed" or "STATE_FAILED": the state's number, or 0. */
static int
parse_state(const char *s)
{
	if (strncasecmp(s, "STATE_", 6) == 0)
		s += 6;
	for (int v = SAGA_STATE_PENDING; v <= SAGA_STATE_MAX; v++)
		if (strcasecmp(s, saga_state_name((enum saga_state)v)) == 0)
			return v;
	return 0;
}

/* A time: unix ms (13 digits or more), else a duration ago ("2h"). */
static int
parse_time(const char *s, int64_t *ms)
{
	int64_t	 us;
	char	*end;

	if (strlen(s) >= 12 && strspn(s, "0123456789") == strlen(s)) {
		*ms = strtoll(s, &end, 10);
		return 0;
	}
	if (ctl_parse_duration(s, &us) == -1 || us < 0)
		return -1;
	*ms = util_now_ms() - us / 1000;
	return 0;
}

static void
print_row(const Saga__V1__Saga *pb)
{
	static const char *modes[] = { "-", "sync", "async", "throttling" };
	char		 at[32];
	time_t		 t = (time_t)(pb->created_unix_ms / 1000);
	struct tm	 tm;
	const char	*st = saga_state_name((enum saga_state)pb->state);

	gmtime_r(&t, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-36s %-20s %-10s %-12s %s  %.60s\n", pb->id, pb->flow,
	    pb->mode >= 0 && pb->mode <= 3 ? modes[pb->mode] : "?", st, at,
	    pb->error != NULL ? pb->error : "");
}

int
ctl_cmd_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state",	required_argument, NULL, 'S' },
		{ "flow",	required_argument, NULL, 'f' },
		{ "since",	required_argument, NULL, 'a' },
		{ "until",	required_argument, NULL, 'b' },
		{ "limit",	required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	Saga__V1__ListRequest	 req;
	Saga__V1__State		 states[SAGA_STATE_MAX];
	struct sync_call	 sc;
	char			*token = NULL, *end;
	long			 limit = CTL_LIST_DEFAULT, shown = 0;
	int			 ch, v, rc = CTL_EXIT_OK, first = 1;

	saga__v1__list_request__init(&req);
	req.states = states;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "S:f:a:b:n:", opts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			if ((v = parse_state(optarg)) == 0) {
				fprintf(stderr, "sagactl: list: --state %s: "
				    "expected PENDING, RUNNING, COMPENSATING, "
				    "COMPLETED, COMPENSATED, FAILED or "
				    "RESOLVED\n", optarg);
				return CTL_EXIT_USAGE;
			}
			if (req.n_states < SAGA_STATE_MAX)
				states[req.n_states++] = (Saga__V1__State)v;
			break;
		case 'f':
			req.flow = optarg;
			break;
		case 'a':
		case 'b':
			if (parse_time(optarg, ch == 'a' ? &req.since_unix_ms :
			    &req.until_unix_ms) == -1) {
				fprintf(stderr, "sagactl: list: --%s %s: "
				    "expected a duration ago (30s, 15m, 2h) or "
				    "unix milliseconds\n", ch == 'a' ? "since" :
				    "until", optarg);
				return CTL_EXIT_USAGE;
			}
			break;
		case 'n':
			limit = strtol(optarg, &end, 10);
			if (*end != '\0' || limit <= 0) {
				fprintf(stderr, "sagactl: list: --limit: "
				    "expected a positive number\n");
				return CTL_EXIT_USAGE;
			}
			break;
		default:
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sagactl: list: unexpected \"%s\"\n",
		    argv[optind]);
		return CTL_EXIT_USAGE;
	}
	if (c->json)
		printf("{\"sagas\":[");
	else
		printf("%-36s %-20s %-10s %-12s %-20s  %s\n", "ID", "FLOW",
		    "MODE", "STATE", "CREATED", "ERROR");
	for (;;) {
		Saga__V1__ListResponse *resp;

		req.page_size = (int32_t)(limit - shown < CTL_LIST_PAGE ?
		    limit - shown : CTL_LIST_PAGE);
		req.page_token = token;
		ctl_unary(c, "/saga.v1.Orchestrator/List", &req.base, &sc);
		free(token);
		token = NULL;
		if (sc.status != GRPC_STATUS_OK) {
			if (c->json)
				printf("]}\n");
			rc = ctl_call_error(c, &sc);
			ctl_call_free(&sc);
			return rc;
		}
		resp = saga__v1__list_response__unpack(NULL, sc.len, sc.data);
		ctl_call_free(&sc);
		if (resp == NULL) {
			fprintf(stderr, "sagactl: list: the answer is not a "
			    "ListResponse\n");
			return CTL_EXIT_FAILED;
		}
		for (size_t i = 0; i < resp->n_sagas; i++, shown++) {
			if (c->json) {
				struct saga *s = saga_from_pb(resp->sagas[i]);
				char *j = saga_to_json(s, NULL);

				printf("%s%s", first ? "" : ",", j);
				first = 0;
				free(j);
				saga_free(s);
			} else
				print_row(resp->sagas[i]);
		}
		if (resp->next_page_token != NULL &&
		    *resp->next_page_token != '\0')
			token = util_xstrdup(resp->next_page_token);
		saga__v1__list_response__free_unpacked(resp, NULL);
		if (token == NULL || shown >= limit)
			break;
	}
	if (c->json) {
		printf("],\"nextPageToken\":");
		json_write_string(stdout, token);
		printf("}\n");
	} else if (token != NULL)
		printf("(more: raise --limit, or narrow --since/--until)\n");
	free(token);
	return rc;
}

/* The words from argv[i] on, joined by spaces (a reason, a note). */
static char *
join(int argc, char **argv, int i)
{
	size_t	 len = 1;
	char	*s;

	for (int k = i; k < argc; k++)
		len += strlen(argv[k]) + 1;
	s = util_xcalloc(1, len);
	for (int k = i; k < argc; k++) {
		if (k > i)
			strcat(s, " ");
		strcat(s, argv[k]);
	}
	return s;
}

int
ctl_cmd_operate(struct ctl *c, int argc, char **argv)
{
	const char		*cmd = argv[0];
	struct sync_call	 sc;
	char			*text = NULL;
	int			 rc;

	if (argc < 2 || (strcmp(cmd, "retry") == 0 && argc != 2) ||
	    (strcmp(cmd, "resolve") == 0 && argc < 3)) {
		fprintf(stderr, "sagactl: %s: expected %s\n", cmd,
		    strcmp(cmd, "cancel") == 0 ? "ID [REASON]" :
		    strcmp(cmd, "retry") == 0 ? "ID" : "ID NOTE");
		return CTL_EXIT_USAGE;
	}
	text = join(argc, argv, 2);
	if (strcmp(cmd, "cancel") == 0) {
		Saga__V1__CancelRequest req;

		saga__v1__cancel_request__init(&req);
		req.id = argv[1];
		req.reason = text;
		ctl_unary(c, "/saga.v1.Orchestrator/Cancel", &req.base, &sc);
	} else if (strcmp(cmd, "retry") == 0) {
		Saga__V1__RetryRequest req;

		saga__v1__retry_request__init(&req);
		req.id = argv[1];
		ctl_unary(c, "/saga.v1.Orchestrator/Retry", &req.base, &sc);
	} else {
		Saga__V1__ResolveRequest req;

		saga__v1__resolve_request__init(&req);
		req.id = argv[1];
		req.note = text;
		ctl_unary(c, "/saga.v1.Orchestrator/Resolve", &req.base, &sc);
	}
	rc = ctl_print_reply(c, &sc, 1);
	ctl_call_free(&sc);
	free(text);
	return rc;
}
