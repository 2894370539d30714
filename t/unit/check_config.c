/*
 * check_config.c - the configuration loader: defaults, every error path with
 * its exact "FILE:LINE: KEY: expected ..." line, the sample etc/sagad.conf,
 * worker topics and the SIGHUP check. Each test writes its configuration to
 * a temporary file made with mkstemp; the fixture removes it.
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "bus_config.h"
#include "config.h"
#include "util.h"

static char	tmp_path[4096];
static char	tmp_dir[4096];
static char	err[CONFIG_ERRLEN];

static void
setup(void)
{
	tmp_path[0] = '\0';
	tmp_dir[0] = '\0';
	memset(err, 0, sizeof(err));
}

static void
teardown(void)
{
	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	if (tmp_dir[0] != '\0') {
		char p[4200];

		snprintf(p, sizeof(p), "%s/inc.conf", tmp_dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/main.conf", tmp_dir);
		unlink(p);
		rmdir(tmp_dir);
	}
}

/* Writes text to a fresh temporary file and returns its path. */
static const char *
write_conf(const char *text)
{
	const char	*dir = getenv("TMPDIR");
	FILE		*fp;
	int		 fd;

	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	snprintf(tmp_path, sizeof(tmp_path), "%s/check_config.XXXXXX",
	    dir != NULL ? dir : "/tmp");
	fd = mkstemp(tmp_path);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return tmp_path;
}

static struct config *
load(const char *text, const char *pod_id)
{
	return config_load(write_conf(text), pod_id, err, sizeof(err));
}

/*
 * Loads text, which must be refused, and checks that err holds the line
 * "TMPFILE:LINE: MSG".
 */
static void
refused(const char *text, int line, const char *msg)
{
	struct config	*cfg = load(text, "pod-t");
	char		 want[8192];

	ck_assert_msg(cfg == NULL, "accepted:\n%s", text);
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", tmp_path, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", tmp_path, msg);
	ck_assert_msg(strstr(err, want) != NULL, "want \"%s\" in:\n%s", want,
	    err);
}

/* A service and a node to hang a flow on. */
#define BASE \
	"services = { s = { address = \"127.0.0.1:5000\"; }; };\n" \
	"nodes = { A = { service = \"s\"; action = \"/p.S/A\"; };\n" \
	"          B = { service = \"s\"; action = \"/p.S/B\"; }; };\n"

/* --- the sample and the defaults ------------------------------------------ */

static struct config *
load_sample(void)
{
	const char	*top = getenv("top_srcdir");
	char		 path[4096];
	struct config	*cfg;

	snprintf(path, sizeof(path), "%s/etc/sagad.conf",
	    top != NULL ? top : ".");
	cfg = config_load(path, NULL, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s: %s", path, err);
	return cfg;
}

START_TEST(sample_config_loads)
{
	struct config			*cfg = load_sample();
	const struct config_node	*n;
	const struct config_flow	*f;

	ck_assert_str_eq(cfg->pod_id, "pod-a");
	ck_assert_str_eq(cfg->listen_host, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 10000);
	ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
	ck_assert_ptr_null(cfg->log_file);
	ck_assert_str_eq(cfg->nats.url, "nats://127.0.0.1:4222");
	ck_assert_str_eq(cfg->nats.stream, "SAGA");
	ck_assert_int_eq(cfg->redis.port, 6379);
	ck_assert_int_eq(cfg->redis.saga_ttl, 86400);
	ck_assert_uint_eq(cfg->callbacks.nallow, 2);
	ck_assert_str_eq(cfg->callbacks.allow[1], "localhost");
	ck_assert_uint_eq(cfg->nservices, 3);
	ck_assert_uint_eq(cfg->nnodes, 3);
	ck_assert_uint_eq(cfg->nflows, 3);
	ck_assert_int_eq(cfg->services[0].max_inflight, 256);
	ck_assert_int_eq(cfg->services[2].port, 50053);
	ck_assert_int_eq(cfg->services[0].max_queue, 10000);	/* default */
	ck_assert_int_eq(cfg->redis.lease_ms, 10000);		/* default */
	ck_assert_int_eq(cfg->limits.max_connections, 10000);
	ck_assert_int_eq(cfg->limits.memory_mb, 1024);
	ck_assert_int_eq(cfg->limits.max_context_entries, 1024);

	n = config_node_find(cfg, "CreateOrder");
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(n->timeout_ms, 2000);	/* order's */
	ck_assert_int_eq(n->workers, 2);
	ck_assert_int_eq(n->concurrency, 100);
	n = config_node_find(cfg, "CreatePayment");
	ck_assert_int_eq(n->timeout_ms, 500);
	ck_assert_int_eq(n->compensate_retries, 10);
	n = config_node_find(cfg, "Reserve");
	ck_assert_str_eq(n->request, "reserve_req");
	ck_assert_str_eq(n->reply, "reserve_resp");
	ck_assert_ptr_null(n->compensate_request);	/* the request's */
	ck_assert_str_eq(cfg->services[n->service].name, "stock");

	f = config_flow_find(cfg, "ThrottlingBooking");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->mode, SAGA_MODE_THROTTLING);
	ck_assert_int_eq(f->max_queue, 10000);
	ck_assert_uint_eq(f->nsteps, 2);
	ck_assert_str_eq(cfg->nodes[f->steps[1]].name, "CreatePayment");
	ck_assert_ptr_null(config_flow_find(cfg, "Nope"));
	ck_assert_ptr_null(config_node_find(cfg, "Nope"));
	ck_assert_str_eq(config_mode_name(f->mode), "throttling");
	config_free(cfg);
}
END_TEST

START_TEST(config_lives_while_referenced)
{
	struct config *cfg = load_sample();

	/* Freed by the last holder only (valgrind proves the free). */
	ck_assert_ptr_eq(config_ref(cfg), cfg);
	config_free(cfg);
	ck_assert_str_eq(cfg->pod_id, "pod-a");
	config_free(cfg);
}
END_TEST

START_TEST(sample_config_topics)
{
	struct config		*cfg = load_sample();
	struct config_topic	*t;
	size_t			 n;

	n = config_topics(cfg, &t);
	/*
	 * 2 nodes of AsyncBooking, 2 of Throttling, then the callbacks, then
	 * the legacy topic (older flow definitions' work).
	 */
	ck_assert_uint_eq(n, 6);
	ck_assert_str_eq(t[0].name, "AsyncBooking/CreateOrder");
	ck_assert_int_eq(t[0].mode, SAGA_MODE_ASYNC);
	ck_assert_int_eq(t[0].workers, 2);
	ck_assert_int_eq(t[0].concurrency, 100);
	ck_assert_str_eq(t[1].name, "AsyncBooking/CreatePayment");
	ck_assert_uint_eq(t[1].step, 1);
	ck_assert_int_eq(t[1].workers, 1);
	ck_assert_str_eq(t[3].name, "ThrottlingBooking/CreatePayment");
	ck_assert_int_eq(t[3].mode, SAGA_MODE_THROTTLING);
	ck_assert_str_eq(cfg->flows[t[3].flow].name, "ThrottlingBooking");
	ck_assert_str_eq(cfg->nodes[t[3].node].name, "CreatePayment");
	ck_assert_int_eq(t[3].callbacks, 0);
	ck_assert_str_eq(t[4].name, "callbacks");
	ck_assert_int_eq(t[4].callbacks, 1);
	ck_assert_int_eq(t[4].workers, 1);
	ck_assert_int_eq(t[4].concurrency, 64);
	ck_assert(t[4].flow == CONFIG_TOPIC_NONE);
	ck_assert_str_eq(t[5].name, "legacy");
	ck_assert_int_eq(t[5].legacy, 1);
	ck_assert_int_eq(t[5].callbacks, 0);
	free(t);
	config_free(cfg);
}
END_TEST

START_TEST(topics_callbacks_only_with_an_async_flow)
{
	struct config		*cfg;
	struct config_topic	*t;
	size_t			 n;

	cfg = load(BASE "flows = { T = { mode = \"throttling\"; "
	    "steps = [ \"A\" ]; }; S = { steps = [ \"A\" ]; }; };\n",
	    "pod-t");
	ck_assert_msg(cfg != NULL, "%s", err);
	n = config_topics(cfg, &t);
	/* No callbacks topic; the legacy one, as a queued flow exists. */
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(t[0].name, "T/A");
	ck_assert_int_eq(t[0].callbacks, 0);
	ck_assert_str_eq(t[1].name, "legacy");
	ck_assert_int_eq(t[1].callbacks, 0);
	free(t);
	config_free(cfg);

	cfg = load(BASE "flows = { S = { steps = [ \"A\" ]; }; };\n",
	    "pod-t");
	ck_assert_msg(cfg != NULL, "%s", err);
	n = config_topics(cfg, &t);
	ck_assert_uint_eq(n, 0);
	free(t);
	config_free(cfg);

	cfg = load(BASE "flows = { X = { mode = \"async\"; "
	    "steps = [ \"A\" ]; }; };\n", "pod-t");
	ck_assert_msg(cfg != NULL, "%s", err);
	n = config_topics(cfg, &t);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(t[1].name, "callbacks");
	ck_assert_str_eq(t[2].name, "legacy");
	free(t);
	config_free(cfg);
}
END_TEST

START_TEST(defaults_applied)
{
	struct config	*cfg = load(BASE
	    "flows = { F = { steps = [ \"A\" ]; }; };\n", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->listen, "127.0.0.1:10000");
	ck_assert_str_eq(cfg->listen_host, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 10000);
	ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
	ck_assert_ptr_null(cfg->log_file);
	ck_assert_str_eq(cfg->nats.url, "nats://127.0.0.1:4222");
	ck_assert_str_eq(cfg->nats.stream, "SAGA");
	ck_assert_str_eq(cfg->nats.subject_prefix, "saga");
	ck_assert_int_eq(cfg->nats.replicas, 1);
	ck_assert_str_eq(cfg->queue, "nats");
	ck_assert_str_eq(cfg->rabbitmq.url, "amqp://127.0.0.1:5672");
	ck_assert_str_eq(cfg->rabbitmq.queue_type, "quorum");
	ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
	ck_assert_int_eq(cfg->redis.port, 6379);
	ck_assert_int_eq(cfg->redis.saga_ttl, 86400);
	ck_assert_uint_eq(cfg->callbacks.nallow, 3);
	ck_assert_str_eq(cfg->callbacks.allow[0], "127.0.0.1");
	ck_assert_str_eq(cfg->callbacks.allow[1], "localhost");
	ck_assert_str_eq(cfg->callbacks.allow[2], "::1");
	ck_assert_int_eq(cfg->callbacks.retries, 5);
	ck_assert_int_eq(cfg->services[0].timeout_ms, 5000);
	ck_assert_int_eq(cfg->services[0].max_inflight, 1024);
	ck_assert_int_eq(cfg->nodes[0].retries, 3);
	ck_assert_int_eq(cfg->nodes[0].compensate_retries, 10);
	ck_assert_int_eq(cfg->nodes[0].timeout_ms, 5000);
	ck_assert_int_eq(cfg->nodes[0].backoff_ms, 100);
	ck_assert_int_eq(cfg->nodes[0].workers, 1);
	ck_assert_int_eq(cfg->nodes[0].concurrency, 16);
	ck_assert_ptr_null(cfg->nodes[0].compensate);
	ck_assert_ptr_null(cfg->nodes[0].request);
	ck_assert_ptr_null(cfg->nodes[0].reply);
	ck_assert_int_eq(cfg->flows[0].mode, SAGA_MODE_SYNC);
	ck_assert_int_eq(cfg->flows[0].max_queue, 1000);
	config_free(cfg);
}
END_TEST

START_TEST(empty_file_is_all_defaults)
{
	struct config *cfg = load("", NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->nservices + cfg->nnodes + cfg->nflows, 0);
	ck_assert_str_eq(err, "");
	config_free(cfg);
}
END_TEST

START_TEST(node_timeout_inherits_service)
{
	struct config *cfg = load(
	    "services = { s = { address = \"h:1\"; timeout_ms = 750; }; };\n"
	    "nodes = { A = { service = \"s\"; action = \"/p.S/A\"; };\n"
	    "          B = { service = \"s\"; action = \"/p.S/B\";"
	    " timeout_ms = 30; }; };\n", NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->nodes[0].timeout_ms, 750);
	ck_assert_int_eq(cfg->nodes[1].timeout_ms, 30);
	config_free(cfg);
}
END_TEST

START_TEST(log_file_accepted)
{
	struct config *cfg = load("log_file = \"/var/log/sagad.log\";\n",
	    NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->log_file, "/var/log/sagad.log");
	config_free(cfg);
}
END_TEST

/* Issue 14: log_format and tracing. */
START_TEST(log_format_and_tracing_read)
{
	struct config *cfg = load("log_format = \"json\";\n"
	    "tracing = { otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\";"
	    " sample_ratio = 0.25; };\n", NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->log_format, "json");
	ck_assert_str_eq(cfg->tracing.otlp_endpoint,
	    "http://127.0.0.1:4318/v1/traces");
	ck_assert(cfg->tracing.sample_ratio == 0.25);
	config_free(cfg);
	cfg = load("tracing = { sample_ratio = 0; };\n", NULL);
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert(cfg->tracing.sample_ratio == 0.0);
	ck_assert_ptr_null(cfg->tracing.otlp_endpoint);
	ck_assert_str_eq(cfg->log_format, "text");
	config_free(cfg);
	cfg = load("", NULL);
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert(cfg->tracing.sample_ratio == 1.0);
	config_free(cfg);
}
END_TEST

START_TEST(log_format_and_tracing_refused)
{
	refused("log_format = \"xml\";\n", 1, "log_format: expected "
	    "\"text\" or \"json\", got \"xml\"");
	refused("tracing = { otlp_endpoint = \"https://c:4318\"; };\n", 1,
	    "tracing.otlp_endpoint: expected an OTLP/HTTP URL");
	refused("tracing = { sample_ratio = 1.5; };\n", 1,
	    "tracing.sample_ratio: expected a number from 0 to 1, got 1.5");
	refused("tracing = { sample_ratio = \"all\"; };\n", 1,
	    "tracing.sample_ratio: expected a number from 0 to 1");
}
END_TEST

START_TEST(int64_literal_in_range_accepted)
{
	struct config *cfg = load("redis = { saga_ttl = 3600L; };\n", NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->redis.saga_ttl, 3600);
	config_free(cfg);
}
END_TEST

/* --- pod_id ------------------------------------------------------------------ */

START_TEST(pod_id_defaults_to_hostname)
{
	struct config	*cfg = load("", NULL);
	char		 host[256], *dot;

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	if ((dot = strchr(host, '.')) != NULL)
		*dot = '\0';
	ck_assert_str_eq(cfg->pod_id, host);
	config_free(cfg);
}
END_TEST

START_TEST(pod_id_from_file)
{
	struct config *cfg = load("pod_id = \"pod-f\";\n", NULL);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->pod_id, "pod-f");
	config_free(cfg);
}
END_TEST

START_TEST(pod_id_override_wins)
{
	struct config *cfg = load("pod_id = \"pod-f\";\n", "pod-o");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->pod_id, "pod-o");
	config_free(cfg);
}
END_TEST

START_TEST(pod_id_override_invalid_rejected)
{
	ck_assert_ptr_null(load("", "a.b"));
	ck_assert_msg(strstr(err, ": pod_id (from -P or POD_ID): expected 1 "
	    "to 64 letters, digits, '-' or '_', got \"a.b\"") != NULL, "%s",
	    err);
}
END_TEST

START_TEST(pod_id_invalid_rejected)
{
	refused("pod_id = \"pod a\";\n", 1, "pod_id: expected 1 to 64 "
	    "letters, digits, '-' or '_', got \"pod a\"");
}
END_TEST

/* Issue 11: the bus subjects' prefix, one or more tokens joined by '.'. */
START_TEST(subject_prefix_checked)
{
	struct config *cfg = load("nats = { subject_prefix = \"acme.saga-2\"; "
	    "};\n", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->nats.subject_prefix, "acme.saga-2");
	config_free(cfg);
	refused("nats = { subject_prefix = \"saga.>\"; };\n", 1,
	    "nats.subject_prefix: expected up to 64 characters: tokens of "
	    "letters, digits, '-' or '_' joined by '.', got \"saga.>\"");
	refused("nats = { subject_prefix = \"a..b\"; };\n", 1,
	    "nats.subject_prefix: expected");
	refused("nats = { subject_prefix = \"a.\"; };\n", 1,
	    "nats.subject_prefix: expected");
	refused("nats = { subject_prefix = \"\"; };\n", 1,
	    "nats.subject_prefix: expected");
	refused("nats = { subject_prefix = \"caf\xc3\xa9\"; };\n", 1,
	    "nats.subject_prefix: expected");
}
END_TEST

/* --- syntax and file --------------------------------------------------------- */

START_TEST(syntax_error_names_file_and_line)
{
	refused("listen = \"127.0.0.1:1\";\nnats = { url = ; };\n", 2,
	    "syntax error");
}
END_TEST

START_TEST(missing_file_rejected)
{
	ck_assert_ptr_null(config_load("/nonexistent/sagad.conf", NULL, err,
	    sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/sagad.conf: cannot open: "
	    "No such file or directory");
}
END_TEST

START_TEST(duplicate_key_rejected)
{
	refused("listen = \"127.0.0.1:1\";\nlisten = \"127.0.0.1:2\";\n", 2,
	    "duplicate setting name");
}
END_TEST

START_TEST(duplicate_node_name_rejected)
{
	refused(BASE "nodes = { };\n", 4, "duplicate setting name");
}
END_TEST

/* --- unknown keys -------------------------------------------------------------- */

START_TEST(unknown_key_suggests_nearest)
{
	refused("services = { s = { address = \"h:1\";\n"
	    "  timout_ms = 5; }; };\n", 2,
	    "services.s.timout_ms: unknown key; did you mean 'timeout_ms'?");
}
END_TEST

START_TEST(unknown_key_lists_known_keys)
{
	refused("nats = { zzz = 1; };\n", 1, "nats.zzz: unknown key; expected "
	    "one of: url, stream, replicas");
}
END_TEST

START_TEST(unknown_top_level_key_suggests)
{
	refused("\n\nshutdown_timeout = 5;\n", 3, "shutdown_timeout: unknown "
	    "key; did you mean 'shutdown_timeout_ms'?");
}
END_TEST

/* --- integers ---------------------------------------------------------------- */

START_TEST(int_out_of_range_rejected)
{
	refused("services = { order = { address = \"h:1\"; }; };\n"
	    "nodes = {\n"
	    "  CreateOrder = { service = \"order\"; action = \"/p.S/M\";\n"
	    "    retries = 1000; };\n};\n", 4,
	    "nodes.CreateOrder.retries: expected an integer from 0 to 100, "
	    "got 1000");
}
END_TEST

START_TEST(int_wrap_rejected)
{
	/* libconfig 1.5 reads this as 1215752191 without complaint. */
	refused("shutdown_timeout_ms = 99999999999;\n", 1,
	    "shutdown_timeout_ms: expected an integer from 0 to 3600000, "
	    "got 99999999999");
}
END_TEST

START_TEST(int_wrap_into_range_rejected)
{
	/* 4294967297 wraps to 1, which would pass the bounds. */
	refused("nats = { url = \"nats://h:1\";\n replicas = 4294967297; };\n",
	    2, "nats.replicas: expected an integer from 1 to 5, got "
	    "4294967297");
}
END_TEST

START_TEST(negative_int_wrap_rejected)
{
	refused("redis = { port = -4294967295; };\n", 1, "redis.port: expected "
	    "an integer from 1 to 65535, got -4294967295");
}
END_TEST

START_TEST(hex_int_wrap_rejected)
{
	refused("callbacks = { retries = 0x100000003; };\n", 1,
	    "callbacks.retries: expected an integer from 0 to 100, got "
	    "0x100000003");
}
END_TEST

START_TEST(int_wrap_on_later_line_of_group_rejected)
{
	refused(BASE "flows = { F = { steps = [ \"A\" ];\n"
	    "  max_queue =\n     99999999999; }; };\n", 5,
	    "flows.F.max_queue: expected an integer from 1 to 10000000, got "
	    "99999999999");
}
END_TEST

START_TEST(int_wrap_in_included_file_rejected)
{
	const char	*dir = getenv("TMPDIR");
	char		 path[4200];
	FILE		*fp;

	snprintf(tmp_dir, sizeof(tmp_dir), "%s/check_config.XXXXXX",
	    dir != NULL ? dir : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
	snprintf(path, sizeof(path), "%s/inc.conf", tmp_dir);
	ck_assert_ptr_nonnull(fp = fopen(path, "w"));
	fputs("s = { address = \"h:1\";\n  timeout_ms = 99999999999; };\n",
	    fp);
	fclose(fp);
	/* @include is relative to the including file's directory. */
	snprintf(path, sizeof(path), "%s/main.conf", tmp_dir);
	ck_assert_ptr_nonnull(fp = fopen(path, "w"));
	fputs("services = {\n@include \"inc.conf\"\n};\n", fp);
	fclose(fp);
	ck_assert_ptr_null(config_load(path, NULL, err, sizeof(err)));
	snprintf(path, sizeof(path), "%s/inc.conf:2: services.s.timeout_ms: "
	    "expected an integer from 1 to 3600000, got 99999999999", tmp_dir);
	ck_assert_str_eq(err, path);
}
END_TEST

START_TEST(int64_literal_out_of_range_rejected)
{
	refused("redis = { saga_ttl = 99999999999L; };\n", 1, "redis.saga_ttl: "
	    "expected an integer from 1 to 31536000, got 99999999999");
}
END_TEST

START_TEST(float_where_int_rejected)
{
	refused("callbacks = { retries = 1.5; };\n", 1, "callbacks.retries: "
	    "expected an integer from 0 to 100, got 1.5 (a float)");
}
END_TEST

START_TEST(string_where_int_rejected)
{
	refused("services = { s = { address = \"h:1\"; timeout_ms = \"2s\"; };"
	    " };\n", 1, "services.s.timeout_ms: expected an integer from 1 to "
	    "3600000, got \"2s\"");
}
END_TEST

START_TEST(bool_where_int_rejected)
{
	refused("redis = { port = true; };\n", 1, "redis.port: expected an "
	    "integer from 1 to 65535, got true");
}
END_TEST

START_TEST(int_where_string_rejected)
{
	refused("nats = { stream = 5; };\n", 1, "nats.stream: expected a "
	    "string, got 5");
}
END_TEST

START_TEST(workers_nonpositive_rejected)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { A = { service = \"s\"; action = \"/p.S/A\"; workers = 0;"
	    " }; };\n", 2, "nodes.A.workers: expected an integer from 1 to 256, "
	    "got 0");
}
END_TEST

START_TEST(concurrency_nonpositive_rejected)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { A = { service = \"s\"; action = \"/p.S/A\";"
	    " concurrency = -3; }; };\n", 2, "nodes.A.concurrency: expected an "
	    "integer from 1 to 10000, got -3");
}
END_TEST

START_TEST(max_inflight_nonpositive_rejected)
{
	refused("services = { s = { address = \"h:1\"; max_inflight = 0; }; };\n",
	    1, "services.s.max_inflight: expected an integer from 1 to 1000000, "
	    "got 0");
}
END_TEST

START_TEST(max_queue_nonpositive_rejected)
{
	refused(BASE "flows = { F = { mode = \"throttling\"; steps = [ \"A\" ];"
	    " max_queue = 0; }; };\n", 4, "flows.F.max_queue: expected an "
	    "integer from 1 to 10000000, got 0");
}
END_TEST

START_TEST(shutdown_timeout_bounds)
{
	refused("shutdown_timeout_ms = -1;\n", 1, "shutdown_timeout_ms: "
	    "expected an integer from 0 to 3600000, got -1");
}
END_TEST

/* --- sections ------------------------------------------------------------------ */

START_TEST(nats_url_needs_scheme)
{
	refused("nats = { url = \"127.0.0.1:4222\"; };\n", 1, "nats.url: "
	    "expected a URL starting with nats:// or tls://, got "
	    "\"127.0.0.1:4222\"");
}
END_TEST

/* --- TLS (issue 15) ------------------------------------------------------------ */

START_TEST(tls_keys_accepted)
{
	struct config	*cfg = load("tls = { cert = \"/etc/s.pem\"; "
	    "key = \"/etc/s.key\"; client_ca = \"/etc/ca.pem\"; };\n"
	    "nats = { url = \"tls://127.0.0.1:4222\"; tls = { ca = "
	    "\"/etc/n.pem\"; cert = \"/etc/c.pem\"; key = \"/etc/c.key\"; "
	    "}; };\n"
	    "services = { s = { address = \"127.0.0.1:5000\"; tls = { "
	    "ca = \"/etc/p.pem\"; server_name = \"order.internal\"; }; };\n"
	    "             t = { address = \"127.0.0.1:5001\"; tls = { }; };\n"
	    "             u = { address = \"127.0.0.1:5002\"; }; };\n",
	    "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->tls.on, 1);
	ck_assert_str_eq(cfg->tls.cert, "/etc/s.pem");
	ck_assert_str_eq(cfg->tls.key, "/etc/s.key");
	ck_assert_str_eq(cfg->tls.client_ca, "/etc/ca.pem");
	ck_assert_int_eq(cfg->nats.tls.on, 1);
	ck_assert_str_eq(cfg->nats.tls.ca, "/etc/n.pem");
	ck_assert_str_eq(cfg->nats.tls.key, "/etc/c.key");
	ck_assert_str_eq(cfg->nats.url, "tls://127.0.0.1:4222");
	ck_assert_int_eq(cfg->services[0].tls.on, 1);
	ck_assert_str_eq(cfg->services[0].tls.server_name, "order.internal");
	ck_assert_ptr_null(cfg->services[0].tls.cert);
	/* An empty group: TLS with the system's CAs. */
	ck_assert_int_eq(cfg->services[1].tls.on, 1);
	ck_assert_ptr_null(cfg->services[1].tls.ca);
	ck_assert_int_eq(cfg->services[2].tls.on, 0);
	config_free(cfg);
	cfg = load("listen = \"127.0.0.1:1\";\n", "pod-t");
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->tls.on, 0);
	ck_assert_int_eq(cfg->nats.tls.on, 0);
	config_free(cfg);
}
END_TEST

START_TEST(tls_needs_cert_and_key)
{
	refused("tls = { cert = \"/etc/s.pem\"; };\n", 1,
	    "tls.key: missing: expected an absolute path");
	refused("tls = { cert = \"s.pem\"; key = \"/etc/s.key\"; };\n", 1,
	    "tls.cert: expected an absolute path");
	refused("services = { s = { address = \"127.0.0.1:5000\";\n"
	    "  tls = { cert = \"/etc/c.pem\"; }; }; };\n", 2,
	    "services.s.tls: cert and key go together");
	refused("nats = { tls = { key = \"/etc/c.key\"; }; };\n", 1,
	    "nats.tls: cert and key go together");
	refused("services = { s = { address = \"127.0.0.1:5000\";\n"
	    "  tls = { server_name = \"a b\"; }; }; };\n", 2,
	    "services.s.tls.server_name: expected a host name");
	refused("tls = { cert = \"/a\"; key = \"/b\"; ca = \"/c\"; };\n", 1,
	    "tls.ca: unknown key");
}
END_TEST

START_TEST(rabbitmq_keys_accepted)
{
	struct config	*cfg = load("queue = \"rabbitmq\";\n"
	    "rabbitmq = { url = \"amqp://sagad:s3cret@mq.example:5673/saga\";\n"
	    "             queue_type = \"classic\"; };\n", "pod-t");
	char		 buf[256];

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->queue, "rabbitmq");
	ck_assert_str_eq(cfg->rabbitmq.url,
	    "amqp://sagad:s3cret@mq.example:5673/saga");
	ck_assert_str_eq(cfg->rabbitmq.queue_type, "classic");
	/* The bus the workers and the master open, and how they name it. */
	ck_assert_str_eq(bus_config_name(cfg), "rabbitmq");
	ck_assert_str_eq(bus_config_where(cfg, buf, sizeof(buf)),
	    "amqp://sagad:***@mq.example:5673/saga");
	config_free(cfg);
}
END_TEST

START_TEST(queue_must_be_a_known_driver)
{
	refused("queue = \"kafka\";\n", 1, "queue: expected \"nats\" or "
	    "\"rabbitmq\", got \"kafka\"");
}
END_TEST

START_TEST(rabbitmq_queue_type_checked)
{
	refused("rabbitmq = {\n queue_type = \"lazy\"; };\n", 2,
	    "rabbitmq.queue_type: expected \"quorum\" or \"classic\", got "
	    "\"lazy\"");
}
END_TEST

/* A bad URL is named, its password is not. */
START_TEST(rabbitmq_bad_url_hides_its_password)
{
	refused("rabbitmq = { url = \"amqps://sagad:s3cret@mq:5671/saga\"; };\n",
	    1, "rabbitmq.url: expected a URL "
	    "amqp://[user[:password]@]host[:port][/vhost], got "
	    "\"amqps://sagad:***@mq:5671/saga\"");
	ck_assert_ptr_null(strstr(err, "s3cret"));
	refused("rabbitmq = { url = \"amqp://u:p@ss w0rd@/x\"; };\n", 1,
	    "rabbitmq.url: expected a URL");
	ck_assert_ptr_null(strstr(err, "p@ss"));
	ck_assert_ptr_null(strstr(err, "w0rd"));
}
END_TEST

/* SIGHUP keeps queue and the rabbitmq group; its lines hide the password. */
START_TEST(reload_keeps_the_queue_and_hides_the_password)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load("queue = \"rabbitmq\";\n"
	    "rabbitmq = { url = \"amqp://sagad:old-secret@mq/saga\"; };\n",
	    "pod-t");
	ck_assert_msg(old != NULL, "%s", err);
	new = load("rabbitmq = { url = \"amqp://sagad:new-secret@mq2/saga\";\n"
	    "             queue_type = \"classic\"; };\n", "pod-t");
	ck_assert_msg(new != NULL, "%s", err);
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 3);
	ck_assert_msg(strstr(rerr, ": queue: changed from \"rabbitmq\" to "
	    "\"nats\", but only a restart can change it; keeping "
	    "\"rabbitmq\"") != NULL, "%s", rerr);
	ck_assert_msg(strstr(rerr, ": rabbitmq.url: changed from "
	    "\"amqp://sagad:***@mq/saga\" to \"amqp://sagad:***@mq2/saga\"") !=
	    NULL, "%s", rerr);
	ck_assert_msg(strstr(rerr, ": rabbitmq.queue_type: changed from "
	    "\"quorum\" to \"classic\"") != NULL, "%s", rerr);
	ck_assert_ptr_null(strstr(rerr, "secret"));
	config_keep_restart_keys(new, old);
	ck_assert_str_eq(new->queue, "rabbitmq");
	ck_assert_str_eq(new->rabbitmq.url, "amqp://sagad:old-secret@mq/saga");
	ck_assert_str_eq(new->rabbitmq.queue_type, "quorum");
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(url_redaction)
{
	char	buf[128];

	ck_assert_str_eq(util_url_redact("amqp://u:p@h:1/v", buf, sizeof(buf)),
	    "amqp://u:***@h:1/v");
	ck_assert_str_eq(util_url_redact("amqp://u@h/v", buf, sizeof(buf)),
	    "amqp://u@h/v");
	ck_assert_str_eq(util_url_redact("amqp://h:5672/v", buf, sizeof(buf)),
	    "amqp://h:5672/v");
	ck_assert_str_eq(util_url_redact("amqp://u:a@b/c@h/v", buf,
	    sizeof(buf)), "amqp://u:***@h/v");
	ck_assert_str_eq(util_url_redact("nats://h:4222", buf, sizeof(buf)),
	    "nats://h:4222");
	ck_assert_str_eq(util_url_redact("nats://s3cret@h:4222", buf,
	    sizeof(buf)), "nats://***@h:4222");
	ck_assert_str_eq(util_url_redact("nats://u:p@h:4222", buf,
	    sizeof(buf)), "nats://u:***@h:4222");
}
END_TEST

START_TEST(nats_replicas_bounds)
{
	refused("nats = { replicas = 6; };\n", 1, "nats.replicas: expected an "
	    "integer from 1 to 5, got 6");
}
END_TEST

START_TEST(nats_stream_name_checked)
{
	refused("nats = { stream = \"SA.GA\"; };\n", 1, "nats.stream: expected "
	    "1 to 64 letters, digits, '-' or '_', got \"SA.GA\"");
}
END_TEST

/* Issue 17: a NATS cluster and Redis behind Sentinel. */
START_TEST(cluster_keys_accepted)
{
	struct config	*cfg = load("nats = { urls = [ \"nats://a:4222\", "
	    "\"nats://b:4223\" ]; replicas = 3; };\n"
	    "redis = { sentinels = [ \"127.0.0.1:26379\", \"s2:26380\" ];\n"
	    "  master_name = \"prod\"; min_replicas_ack = 1;\n"
	    "  ack_timeout_ms = 250; };\n", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->nats.url, "nats://a:4222,nats://b:4223");
	ck_assert_int_eq(cfg->nats.replicas, 3);
	ck_assert_int_eq(cfg->redis.nsentinels, 2);
	ck_assert_str_eq(cfg->redis.sentinels[1], "s2:26380");
	ck_assert_str_eq(cfg->redis.master_name, "prod");
	ck_assert_int_eq(cfg->redis.min_replicas_ack, 1);
	ck_assert_int_eq(cfg->redis.ack_timeout_ms, 250);
	config_free(cfg);
	cfg = load("redis = { port = 6380; };\n", "pod-t");
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->redis.nsentinels, 0);
	ck_assert_str_eq(cfg->redis.master_name, "sagad");
	ck_assert_int_eq(cfg->redis.min_replicas_ack, 0);
	ck_assert_int_eq(cfg->redis.ack_timeout_ms, 200);
	config_free(cfg);
}
END_TEST

START_TEST(reload_keeps_the_sentinels_and_nats_urls)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load("nats = { urls = [ \"nats://a:1\", \"nats://b:2\" ]; };\n"
	    "redis = { sentinels = [ \"s1:26379\" ]; };\n", "pod-t");
	ck_assert_msg(old != NULL, "%s", err);
	new = load("nats = { urls = [ \"nats://a:1\", \"nats://c:3\" ]; };\n"
	    "redis = { sentinels = [ \"s1:26379\", \"s2:26379\" ];\n"
	    "  min_replicas_ack = 2; };\n", "pod-t");
	ck_assert_msg(new != NULL, "%s", err);
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 4);
	ck_assert_msg(strstr(rerr, ": redis.sentinels: changed from "
	    "[ \"s1:26379\" ] to [ \"s1:26379\", \"s2:26379\" ], but only a "
	    "restart can change it") != NULL, "%s", rerr);
	ck_assert_msg(strstr(rerr, ": nats.urls: changed from [ \"nats://a:1\", "
	    "\"nats://b:2\" ] to [ \"nats://a:1\", \"nats://c:3\" ]") != NULL,
	    "%s", rerr);
	ck_assert_msg(strstr(rerr, ": redis.min_replicas_ack: changed from 0 "
	    "to 2") != NULL, "%s", rerr);
	config_keep_restart_keys(new, old);
	ck_assert_int_eq(new->redis.nsentinels, 1);
	ck_assert_str_eq(new->redis.sentinels[0], "s1:26379");
	ck_assert_ptr_null(new->redis.sentinels[1]);
	ck_assert_str_eq(new->nats.url, "nats://a:1,nats://b:2");
	ck_assert_int_eq(new->redis.min_replicas_ack, 0);
	ck_assert_int_eq(config_reload_check(old, new, NULL, 0), 0);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(cluster_keys_checked)
{
	refused("redis = { sentinels = [ \"s1\" ]; };\n", 1,
	    "redis.sentinels[0]: expected \"host:port\", got \"s1\"");
	refused("redis = { sentinels = [ \"s1:0\" ]; };\n", 1,
	    "redis.sentinels[0]: expected \"host:port\", got \"s1:0\"");
	refused("nats = { urls = [ \"tcp://a:1\" ]; };\n", 1,
	    "nats.urls[0]: expected a URL starting with nats://, got "
	    "\"tcp://a:1\"");
	refused("redis = { min_replicas_ack = -1; };\n", 1,
	    "redis.min_replicas_ack: expected an integer from 0 to 16, got -1");
	refused("redis = { ack_timeout_ms = 0; };\n", 1,
	    "redis.ack_timeout_ms: expected an integer from 1 to 60000, got 0");
}
END_TEST

START_TEST(redis_port_bounds)
{
	refused("redis = { port = 65536; };\n", 1, "redis.port: expected an "
	    "integer from 1 to 65535, got 65536");
}
END_TEST

START_TEST(redis_saga_ttl_positive)
{
	refused("redis = { saga_ttl = 0; };\n", 1, "redis.saga_ttl: expected "
	    "an integer from 1 to 31536000, got 0");
}
END_TEST

START_TEST(redis_completed_ttl_bounds_and_default)
{
	struct config *cfg = load("redis = { completed_ttl = 3600; };\n", NULL);

	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->redis.completed_ttl, 3600);
	ck_assert_int_eq(cfg->redis.saga_ttl, 86400);
	config_free(cfg);
	cfg = load("redis = { saga_ttl = 600; };\n", NULL);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->redis.completed_ttl, 0);	/* saga_ttl's */
	config_free(cfg);
	refused("redis = { completed_ttl = -1; };\n", 1, "redis.completed_ttl: "
	    "expected an integer from 0 to 31536000, got -1");
}
END_TEST

START_TEST(redis_host_checked)
{
	refused("redis = { host = \"\"; };\n", 1, "redis.host: expected a host "
	    "name or address, got \"\"");
}
END_TEST

START_TEST(section_not_a_group_rejected)
{
	refused("\nredis = 6379;\n", 2, "redis: expected a group { ... }, got "
	    "6379");
}
END_TEST

START_TEST(callbacks_allow_not_array_rejected)
{
	refused("callbacks = { allow = \"127.0.0.1\"; };\n", 1,
	    "callbacks.allow: expected an array of strings [ \"...\" ], got "
	    "\"127.0.0.1\"");
}
END_TEST

START_TEST(callbacks_allow_bad_host_rejected)
{
	refused("callbacks = { allow = [ \"127.0.0.1\", \"a b\" ]; };\n", 1,
	    "callbacks.allow[1]: expected a host name or address, with a port "
	    "as \"host:port\" or \"[v6]:port\" if not 80 or 443, got \"a b\"");
}
END_TEST

START_TEST(callbacks_allow_ports)
{
	struct config *cfg = load("callbacks = { allow = [ \"127.0.0.1:8080\", "
	    "\"[::1]:8080\", \"::1\", \"hooks.example\" ]; };\n", "p");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->callbacks.nallow, 4);
	ck_assert_str_eq(cfg->callbacks.allow[1], "[::1]:8080");
	config_free(cfg);
	refused("callbacks = { allow = [ \"127.0.0.1:0\" ]; };\n", 1,
	    "callbacks.allow[0]: expected a host name or address, with a port");
	refused("callbacks = { allow = [ \"[::1]\" ]; };\n", 1,
	    "callbacks.allow[0]: expected a host name or address, with a port");
	refused("callbacks = { allow = [ \"h:80:80\" ]; };\n", 1,
	    "callbacks.allow[0]: expected a host name or address, with a port");
}
END_TEST

/* Issue 15: least privilege, tokens, credentials. */
START_TEST(security_keys_read)
{
	struct config *cfg = load(
	    "user = \"sagad\"; group = \"daemon\";\n"
	    "auth = { tokens_file = \"/etc/sagad/tokens\"; };\n"
	    "redis = { db = 3; username = \"sagad\"; "
	    "password_file = \"/etc/sagad/redis.pw\"; };\n"
	    "nats = { user = \"sagad\"; password = \"pw\"; };\n", "p");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->user, "sagad");
	ck_assert_str_eq(cfg->group, "daemon");
	ck_assert_str_eq(cfg->auth.tokens_file, "/etc/sagad/tokens");
	ck_assert_int_eq(cfg->redis.db, 3);
	ck_assert_str_eq(cfg->redis.username, "sagad");
	ck_assert_ptr_null(cfg->redis.password);
	ck_assert_str_eq(cfg->redis.password_file, "/etc/sagad/redis.pw");
	ck_assert_str_eq(cfg->nats.user, "sagad");
	ck_assert_str_eq(cfg->nats.password, "pw");
	ck_assert_ptr_null(cfg->nats.creds);
	config_free(cfg);
	cfg = load("", "p");
	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_null(cfg->user);
	ck_assert_ptr_null(cfg->auth.tokens_file);
	ck_assert_int_eq(cfg->redis.db, 0);
	config_free(cfg);
}
END_TEST

START_TEST(security_keys_rejected_without_showing_secrets)
{
	refused("redis = { password = \"a\"; password_file = \"/p\"; };\n",
	    0, "redis: password and password_file: expected one of them");
	refused("redis = { username = \"u\"; };\n", 0,
	    "redis.username: expected a password or password_file with it");
	refused("nats = { user = \"u\"; };\n", 0,
	    "nats: user and password (or password_file) go together");
	refused("nats = { creds = \"/c\"; user = \"u\"; password = \"p\"; };\n",
	    0, "nats: creds and user: expected one of them");
	refused("group = \"g\";\n", 0, "group: expected a user with it");
	refused("auth = { tokens_file = \"tokens\"; };\n", 1,
	    "auth.tokens_file: expected an absolute path");
	refused("redis = { db = 70000; };\n", 1, "redis.db");
	refused("user = \"a b\";\n", 1, "user: expected a name");
	refused("redis = { password = \"S3cret\\nline\"; };\n", 1,
	    "redis.password: expected 1 to 1024 bytes on one line, got \"***\"");
	ck_assert_msg(strstr(err, "S3cret") == NULL, "%s", err);
}
END_TEST

START_TEST(security_keys_reload_hides_passwords)
{
	struct config	*a = load("redis = { password = \"old-S3cret\"; };\n",
			    "p");
	struct config	*b;
	char		 notes[2048];

	ck_assert_ptr_nonnull(a);
	b = load("redis = { password = \"new-S3cret\"; };\n", "p");
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(config_reload_check(a, b, notes, sizeof(notes)), 1);
	ck_assert_msg(strstr(notes, "redis.password: changed from \"***\" to "
	    "\"***\"") != NULL, "%s", notes);
	ck_assert_msg(strstr(notes, "S3cret") == NULL, "%s", notes);
	config_keep_restart_keys(b, a);
	ck_assert_str_eq(b->redis.password, "old-S3cret");
	config_free(a);
	config_free(b);
}
END_TEST

START_TEST(log_file_relative_rejected)
{
	refused("log_file = \"sagad.log\";\n", 1, "log_file: expected an "
	    "absolute path, got \"sagad.log\"");
}
END_TEST

START_TEST(bad_listen_rejected)
{
	refused("listen = \"127.0.0.1\";\n", 1, "listen: expected host:port, "
	    "got \"127.0.0.1\"");
}
END_TEST

/* --- services, nodes, flows ------------------------------------------------------- */

START_TEST(service_bad_address_rejected)
{
	refused("services = {\n  s = { address = \"h:99999\"; };\n};\n", 2,
	    "services.s.address: expected a port from 1 to 65535, got "
	    "\"99999\"");
}
END_TEST

START_TEST(service_missing_address_rejected)
{
	refused("services = {\n  s = { timeout_ms = 5; };\n};\n", 2,
	    "services.s.address: missing: expected a string \"host:port\"");
}
END_TEST

START_TEST(service_not_a_group_rejected)
{
	refused("services = { s = \"h:1\"; };\n", 1, "services.s: expected a "
	    "group { ... }, got \"h:1\"");
}
END_TEST

START_TEST(bad_name_rejected)
{
	refused("services = { s*t = { address = \"h:1\"; }; };\n", 1,
	    "services.s*t: expected a name of 1 to 64 letters, digits, '-' "
	    "or '_'");
}
END_TEST

START_TEST(node_unknown_service_rejected)
{
	refused("services = { order = { address = \"h:1\"; }; };\n"
	    "nodes = {\n  C = { service = \"ordr\"; action = \"/p.S/C\"; };"
	    " };\n", 3, "nodes.C.service: expected the name of a service, got "
	    "\"ordr\"; did you mean 'order'?");
}
END_TEST

START_TEST(node_missing_action_rejected)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { A = { service = \"s\"; }; };\n", 2, "nodes.A.action: "
	    "missing: expected a method as \"/package.Service/Method\"");
}
END_TEST

START_TEST(node_bad_method_rejected)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { A = { service = \"s\"; action = \"/p.S/A\";\n"
	    "  compensate = \"p.S/Undo\"; }; };\n", 3, "nodes.A.compensate: "
	    "expected a method as \"/package.Service/Method\", got "
	    "\"p.S/Undo\"");
}
END_TEST

START_TEST(node_empty_request_key_rejected)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { A = { service = \"s\"; action = \"/p.S/A\";"
	    " request = \"\"; }; };\n", 2, "nodes.A.request: expected a "
	    "context key of 1 to 256 bytes, got \"\"");
}
END_TEST

START_TEST(flow_unknown_node_rejected)
{
	refused(BASE "flows = {\n  F = { steps = [ \"A\", \"C\" ]; };\n};\n",
	    5, "flows.F.steps[1]: expected the name of a node, got \"C\"");
}
END_TEST

START_TEST(flow_unknown_node_suggests_nearest)
{
	refused("services = { s = { address = \"h:1\"; }; };\n"
	    "nodes = { CreateOrder = { service = \"s\"; action = \"/p.S/A\";"
	    " }; };\n"
	    "flows = { F = { steps = [ \"CreateOrdr\" ]; }; };\n", 3,
	    "flows.F.steps[0]: expected the name of a node, got \"CreateOrdr\"; "
	    "did you mean 'CreateOrder'?");
}
END_TEST

START_TEST(flow_same_node_twice_rejected)
{
	refused(BASE "flows = { F = { steps = [ \"A\", \"B\", \"A\" ]; }; };\n",
	    4, "flows.F.steps[2]: expected each node once in a flow, got \"A\" "
	    "again");
}
END_TEST

START_TEST(flow_zero_steps_rejected)
{
	refused(BASE "flows = { F = { steps = [ ]; }; };\n", 4,
	    "flows.F.steps: expected at least one node, got an empty array");
}
END_TEST

START_TEST(flow_missing_steps_rejected)
{
	refused(BASE "flows = { F = { mode = \"sync\"; }; };\n", 4,
	    "flows.F.steps: missing: expected an array of node names "
	    "[ \"Node\", ... ]");
}
END_TEST

START_TEST(flow_bad_mode_rejected)
{
	refused(BASE "flows = { F = { mode = \"fast\"; steps = [ \"A\" ]; }; };\n",
	    4, "flows.F.mode: expected \"sync\", \"async\" or \"throttling\", "
	    "got \"fast\"");
}
END_TEST

/* --- reporting ----------------------------------------------------------------- */

START_TEST(all_errors_collected_in_line_order)
{
	struct config	*cfg;
	char		 want[3 * sizeof(tmp_path) + 256];

	cfg = load("redis = { port = 0; };\n"
	    "nats = { replicas = 0; };\n"
	    "callbacks = { retries = -1; };\n", NULL);
	ck_assert_ptr_null(cfg);
	snprintf(want, sizeof(want),
	    "%s:1: redis.port: expected an integer from 1 to 65535, got 0\n"
	    "%s:2: nats.replicas: expected an integer from 1 to 5, got 0\n"
	    "%s:3: callbacks.retries: expected an integer from 0 to 100, "
	    "got -1", tmp_path, tmp_path, tmp_path);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(errors_beyond_buffer_counted)
{
	char	 small[400], text[4096];
	size_t	 len = 0;

	for (int i = 0; i < 20; i++)
		len += snprintf(text + len, sizeof(text) - len,
		    "listen%d = 1;\n", i);
	ck_assert_ptr_null(config_load(write_conf(text), NULL, small,
	    sizeof(small)));
	ck_assert_msg(strstr(small, "more errors)") != NULL, "%s", small);
	ck_assert_msg(strlen(small) < sizeof(small), "%s", small);
	ck_assert_msg(strncmp(small, tmp_path, strlen(tmp_path)) == 0, "%s",
	    small);
}
END_TEST

/* --- SIGHUP ------------------------------------------------------------------- */

/* --- limits (issue 12) --------------------------------------------------- */

START_TEST(limits_defaults)
{
	struct config *cfg = load("", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->limits.max_connections, 10000);
	ck_assert_int_eq(cfg->limits.max_connections_per_ip, 1000);
	ck_assert_int_eq(cfg->limits.idle_timeout_ms, 300000);
	ck_assert_int_eq(cfg->limits.handshake_timeout_ms, 10000);
	ck_assert_int_eq(cfg->limits.max_context_entries, 1024);
	ck_assert_int_eq(cfg->limits.memory_mb, 1024);
	config_free(cfg);
}
END_TEST

START_TEST(limits_read)
{
	struct config *cfg = load("limits = { max_connections = 400;\n"
	    "  max_connections_per_ip = 100; idle_timeout_ms = 0;\n"
	    "  handshake_timeout_ms = 1000; max_context_entries = 8;\n"
	    "  memory_mb = 64; };\n", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->limits.max_connections, 400);
	ck_assert_int_eq(cfg->limits.max_connections_per_ip, 100);
	ck_assert_int_eq(cfg->limits.idle_timeout_ms, 0);
	ck_assert_int_eq(cfg->limits.handshake_timeout_ms, 1000);
	ck_assert_int_eq(cfg->limits.max_context_entries, 8);
	ck_assert_int_eq(cfg->limits.memory_mb, 64);
	config_free(cfg);
}
END_TEST

START_TEST(limits_bounds_rejected)
{
	refused("limits = { max_connections = 0; };\n", 1,
	    "limits.max_connections: expected an integer from 1 to 1000000, "
	    "got 0");
	refused("\nlimits = { max_connections_per_ip = 1000001; };\n", 2,
	    "limits.max_connections_per_ip: expected an integer from 1 to "
	    "1000000, got 1000001");
	refused("limits = { idle_timeout_ms = -1; };\n", 1,
	    "limits.idle_timeout_ms: expected an integer from 0 to 86400000, "
	    "got -1");
	refused("limits = { handshake_timeout_ms = 99; };\n", 1,
	    "limits.handshake_timeout_ms: expected an integer from 100 to "
	    "600000, got 99");
	refused("limits = { max_context_entries = 0; };\n", 1,
	    "limits.max_context_entries: expected an integer from 1 to "
	    "1000000, got 0");
	refused("limits = {\n  memory_mb = 15; };\n", 2,
	    "limits.memory_mb: expected an integer from 16 to 1048576, got 15");
}
END_TEST

START_TEST(limits_unknown_key_suggests)
{
	refused("limits = { memory_md = 64; };\n", 1, "limits.memory_md: "
	    "unknown key; did you mean 'memory_mb'?");
	refused("limits = { memory_mb = \"64\"; };\n", 1, "limits.memory_mb: "
	    "expected an integer");
}
END_TEST

/* --- http (issue 14) ----------------------------------------------------- */

START_TEST(http_unset_means_no_listener)
{
	struct config *cfg = load("", "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_ptr_null(cfg->http.listen);
	ck_assert_int_eq(cfg->http.max_connections, 256);
	ck_assert_int_eq(cfg->http.max_body_kb, 1024);
	ck_assert_int_eq(cfg->http.timeout_ms, 10000);
	config_free(cfg);
}
END_TEST

START_TEST(http_keys_read_and_checked)
{
	struct config *cfg = load("http = { listen = \"127.0.0.1:10080\";\n"
	    "  max_connections = 5; max_body_kb = 64; timeout_ms = 500; };\n",
	    "pod-t");

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->http.listen, "127.0.0.1:10080");
	ck_assert_str_eq(cfg->http.listen_host, "127.0.0.1");
	ck_assert_int_eq(cfg->http.listen_port, 10080);
	ck_assert_int_eq(cfg->http.max_connections, 5);
	ck_assert_int_eq(cfg->http.max_body_kb, 64);
	ck_assert_int_eq(cfg->http.timeout_ms, 500);
	config_free(cfg);
	refused("http = { listen = \"nope\"; };\n", 1, "http.listen: ");
	refused("http = { timeout_ms = 99; };\n", 1, "http.timeout_ms: "
	    "expected an integer from 100 to 600000, got 99");
	refused("http = { max_body_kb = 0; };\n", 1, "http.max_body_kb: "
	    "expected an integer from 1 to 65536, got 0");
	refused("http = { listn = \"x\"; };\n", 1, "http.listn: unknown key");
}
END_TEST

START_TEST(http_listen_needs_a_restart)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load("http = { listen = \"127.0.0.1:1\"; };\n", "pod-t");
	new = load("http = { listen = \"127.0.0.1:2\"; timeout_ms = 700; };\n",
	    "pod-t");
	ck_assert_ptr_nonnull(old);
	ck_assert_ptr_nonnull(new);
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 1);
	ck_assert_msg(strstr(rerr, "http.listen: changed from") != NULL, "%s",
	    rerr);
	config_keep_restart_keys(new, old);
	ck_assert_str_eq(new->http.listen, "127.0.0.1:1");
	ck_assert_int_eq(new->http.listen_port, 1);
	ck_assert_int_eq(new->http.timeout_ms, 700);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(limits_reload)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load("", "pod-t");
	ck_assert_ptr_nonnull(old);
	new = load("limits = { max_connections = 5; memory_mb = 64;\n"
	    "  max_connections_per_ip = 7; };\n", "pod-t");
	ck_assert_ptr_nonnull(new);
	/* max_connections sizes RLIMIT_NOFILE at start: restart only. */
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 1);
	ck_assert_msg(strstr(rerr, ": limits.max_connections: changed from "
	    "10000 to 5") != NULL, "%s", rerr);
	config_keep_restart_keys(new, old);
	ck_assert_int_eq(new->limits.max_connections, 10000);
	ck_assert_int_eq(new->limits.memory_mb, 64);
	ck_assert_int_eq(new->limits.max_connections_per_ip, 7);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(reload_check_reports_restart_keys)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load(BASE "listen = \"127.0.0.1:1000\";\n"
	    "flows = { F = { steps = [ \"A\" ]; }; };\n", "pod-t");
	ck_assert_msg(old != NULL, "%s", err);
	new = load(BASE "listen = \"127.0.0.1:2000\";\n"
	    "nats = { url = \"nats://10.0.0.1:4222\"; };\n"
	    "redis = { port = 6380; };\n"
	    "flows = { F = { steps = [ \"A\", \"B\" ]; }; };\n"
	    "shutdown_timeout_ms = 1;\n", "pod-t");
	ck_assert_msg(new != NULL, "%s", err);

	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 3);
	ck_assert_msg(strstr(rerr, ": listen: changed from \"127.0.0.1:1000\" "
	    "to \"127.0.0.1:2000\"") != NULL, "%s", rerr);
	ck_assert_msg(strstr(rerr, ": nats.url: changed from") != NULL, "%s",
	    rerr);
	ck_assert_msg(strstr(rerr, ": redis.port: changed from 6379 to 6380") !=
	    NULL, "%s", rerr);
	ck_assert_ptr_null(strstr(rerr, "shutdown_timeout_ms"));
	ck_assert_ptr_null(strstr(rerr, "flows"));

	config_keep_restart_keys(new, old);
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 0);
	ck_assert_str_eq(rerr, "");
	ck_assert_str_eq(new->listen, "127.0.0.1:1000");
	ck_assert_int_eq(new->listen_port, 1000);
	ck_assert_str_eq(new->nats.url, "nats://127.0.0.1:4222");
	ck_assert_int_eq(new->redis.port, 6379);
	/* What SIGHUP may change stays new. */
	ck_assert_int_eq(new->shutdown_timeout_ms, 1);
	ck_assert_uint_eq(new->flows[0].nsteps, 2);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(reload_check_pod_id_and_log_file)
{
	struct config	*old, *new;
	char		 rerr[CONFIG_ERRLEN];

	old = load("", "pod-a");
	ck_assert_ptr_nonnull(old);
	new = load("log_file = \"/tmp/x.log\";\n", "pod-b");
	ck_assert_ptr_nonnull(new);
	ck_assert_int_eq(config_reload_check(old, new, rerr, sizeof(rerr)), 2);
	ck_assert_msg(strstr(rerr, ": pod_id: changed from \"pod-a\" to "
	    "\"pod-b\"") != NULL, "%s", rerr);
	ck_assert_msg(strstr(rerr, ": log_file: changed from (none) to "
	    "\"/tmp/x.log\"") != NULL, "%s", rerr);
	config_keep_restart_keys(new, old);
	ck_assert_ptr_null(new->log_file);
	ck_assert_str_eq(new->pod_id, "pod-a");
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(mode_names)
{
	ck_assert_str_eq(config_mode_name(SAGA_MODE_SYNC), "sync");
	ck_assert_str_eq(config_mode_name(SAGA_MODE_ASYNC), "async");
	ck_assert_str_eq(config_mode_name(SAGA_MODE_THROTTLING), "throttling");
	ck_assert_str_eq(config_mode_name(SAGA_MODE_UNSPECIFIED),
	    "unspecified");
}
END_TEST

static Suite *
config_suite(void)
{
	Suite	*s = suite_create("config");
	TCase	*tc = tcase_create("load");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sample_config_loads);
	tcase_add_test(tc, limits_defaults);
	tcase_add_test(tc, limits_read);
	tcase_add_test(tc, limits_bounds_rejected);
	tcase_add_test(tc, limits_unknown_key_suggests);
	tcase_add_test(tc, limits_reload);
	tcase_add_test(tc, sample_config_topics);
	tcase_add_test(tc, topics_callbacks_only_with_an_async_flow);
	tcase_add_test(tc, defaults_applied);
	tcase_add_test(tc, empty_file_is_all_defaults);
	tcase_add_test(tc, node_timeout_inherits_service);
	tcase_add_test(tc, log_file_accepted);
	tcase_add_test(tc, log_format_and_tracing_read);
	tcase_add_test(tc, log_format_and_tracing_refused);
	tcase_add_test(tc, int64_literal_in_range_accepted);
	tcase_add_test(tc, pod_id_defaults_to_hostname);
	tcase_add_test(tc, pod_id_from_file);
	tcase_add_test(tc, pod_id_override_wins);
	tcase_add_test(tc, pod_id_override_invalid_rejected);
	tcase_add_test(tc, pod_id_invalid_rejected);
	tcase_add_test(tc, subject_prefix_checked);
	tcase_add_test(tc, syntax_error_names_file_and_line);
	tcase_add_test(tc, missing_file_rejected);
	tcase_add_test(tc, duplicate_key_rejected);
	tcase_add_test(tc, duplicate_node_name_rejected);
	tcase_add_test(tc, unknown_key_suggests_nearest);
	tcase_add_test(tc, unknown_key_lists_known_keys);
	tcase_add_test(tc, unknown_top_level_key_suggests);
	tcase_add_test(tc, int_out_of_range_rejected);
	tcase_add_test(tc, int_wrap_rejected);
	tcase_add_test(tc, int_wrap_into_range_rejected);
	tcase_add_test(tc, negative_int_wrap_rejected);
	tcase_add_test(tc, hex_int_wrap_rejected);
	tcase_add_test(tc, int_wrap_on_later_line_of_group_rejected);
	tcase_add_test(tc, int_wrap_in_included_file_rejected);
	tcase_add_test(tc, int64_literal_out_of_range_rejected);
	tcase_add_test(tc, float_where_int_rejected);
	tcase_add_test(tc, string_where_int_rejected);
	tcase_add_test(tc, bool_where_int_rejected);
	tcase_add_test(tc, int_where_string_rejected);
	tcase_add_test(tc, workers_nonpositive_rejected);
	tcase_add_test(tc, concurrency_nonpositive_rejected);
	tcase_add_test(tc, max_inflight_nonpositive_rejected);
	tcase_add_test(tc, max_queue_nonpositive_rejected);
	tcase_add_test(tc, shutdown_timeout_bounds);
	tcase_add_test(tc, nats_url_needs_scheme);
	tcase_add_test(tc, tls_keys_accepted);
	tcase_add_test(tc, tls_needs_cert_and_key);
	tcase_add_test(tc, nats_replicas_bounds);
	tcase_add_test(tc, nats_stream_name_checked);
	tcase_add_test(tc, redis_port_bounds);
	tcase_add_test(tc, redis_saga_ttl_positive);
	tcase_add_test(tc, redis_completed_ttl_bounds_and_default);
	tcase_add_test(tc, redis_host_checked);
	tcase_add_test(tc, section_not_a_group_rejected);
	tcase_add_test(tc, callbacks_allow_not_array_rejected);
	tcase_add_test(tc, callbacks_allow_bad_host_rejected);
	tcase_add_test(tc, callbacks_allow_ports);
	tcase_add_test(tc, security_keys_read);
	tcase_add_test(tc, security_keys_rejected_without_showing_secrets);
	tcase_add_test(tc, security_keys_reload_hides_passwords);
	tcase_add_test(tc, log_file_relative_rejected);
	tcase_add_test(tc, bad_listen_rejected);
	tcase_add_test(tc, service_bad_address_rejected);
	tcase_add_test(tc, service_missing_address_rejected);
	tcase_add_test(tc, service_not_a_group_rejected);
	tcase_add_test(tc, bad_name_rejected);
	tcase_add_test(tc, node_unknown_service_rejected);
	tcase_add_test(tc, node_missing_action_rejected);
	tcase_add_test(tc, node_bad_method_rejected);
	tcase_add_test(tc, node_empty_request_key_rejected);
	tcase_add_test(tc, flow_unknown_node_rejected);
	tcase_add_test(tc, flow_unknown_node_suggests_nearest);
	tcase_add_test(tc, flow_same_node_twice_rejected);
	tcase_add_test(tc, flow_zero_steps_rejected);
	tcase_add_test(tc, flow_missing_steps_rejected);
	tcase_add_test(tc, flow_bad_mode_rejected);
	tcase_add_test(tc, all_errors_collected_in_line_order);
	tcase_add_test(tc, errors_beyond_buffer_counted);
	tcase_add_test(tc, reload_check_reports_restart_keys);
	tcase_add_test(tc, reload_check_pod_id_and_log_file);
	tcase_add_test(tc, rabbitmq_keys_accepted);
	tcase_add_test(tc, queue_must_be_a_known_driver);
	tcase_add_test(tc, rabbitmq_queue_type_checked);
	tcase_add_test(tc, rabbitmq_bad_url_hides_its_password);
	tcase_add_test(tc, reload_keeps_the_queue_and_hides_the_password);
	tcase_add_test(tc, url_redaction);
	tcase_add_test(tc, cluster_keys_accepted);
	tcase_add_test(tc, cluster_keys_checked);
	tcase_add_test(tc, reload_keeps_the_sentinels_and_nats_urls);
	tcase_add_test(tc, mode_names);
	tcase_add_test(tc, config_lives_while_referenced);
	tcase_add_test(tc, http_unset_means_no_listener);
	tcase_add_test(tc, http_keys_read_and_checked);
	tcase_add_test(tc, http_listen_needs_a_restart);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(config_suite());
}
