/*
 * tls.c - the TLS adapter (tls.h): OpenSSL contexts made from the PEM files
 * sagad.conf(5) names, and the bufferevent_openssl connections over them,
 * for the gRPC server (src/grpc/server.c), the gRPC client
 * (src/grpc/client.c) and the HTTP listener (src/http.c's bevcb).
 *
 * The rules are in one place, here: TLS 1.2 at least; for TLS 1.2 only
 * ECDHE with AES-GCM or ChaCha20-Poly1305 (what RFC 7540 leaves HTTP/2
 * anyway), TLS 1.3 with OpenSSL's suites; no compression, no
 * renegotiation. A gRPC listener requires ALPN "h2": a client hello without
 * ALPN, or without h2 in it, is refused with the no_application_protocol
 * alert. A server with a client CA requires a client certificate it signed.
 * A client verifies the server's certificate (the given CA or the system's)
 * and its name (SNI sent for host names; an IP address is checked against
 * the certificate's IP addresses).
 *
 * What it is not: it knows nothing of sockets, HTTP/2 or the configuration;
 * it never logs.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "util.h"

#define TLS12_CIPHERS	"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define ALPN_H2		"\x02h2"
#define ALPN_HTTP11	"\x08http/1.1"

struct tls {
	int		 refs;
	int		 server;
	int		 mtls;		/* server: client certificates required */
	SSL_CTX		*ctx;
};

/* SSL_set_app_data() of a gRPC listener's connections. */
static char h2_mark;

/* OpenSSL's first queued error as "what: reason"; clears the queue. */
static void
ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long	 e = ERR_peek_last_error();
	const char	*r = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s: %s", what, r != NULL ? r :
	    "OpenSSL error");
	ERR_clear_error();
}

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg SAGAD_UNUSED)
{
	int			 h2 = SSL_get_app_data(ssl) == &h2_mark;
	const unsigned char	*want = (const unsigned char *)(h2 ? ALPN_H2 :
				    ALPN_HTTP11);
	unsigned int		 wantlen = h2 ? 3 : 9;
	unsigned char		*sel;

	if (SSL_select_next_proto(&sel, outlen, want, wantlen, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED) {
		*out = sel;
		return SSL_TLSEXT_ERR_OK;
	}
	/* gRPC is HTTP/2 only: a client that cannot speak it is refused. */
	return h2 ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

/* A gRPC listener refuses a hello without ALPN, as one without h2 in it. */
static int
client_hello(SSL *ssl, int *al, void *arg SAGAD_UNUSED)
{
	const unsigned char	*p;
	size_t			 len;

	if (SSL_get_app_data(ssl) != &h2_mark ||
	    SSL_client_hello_get0_ext(ssl,
	    TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len))
		return SSL_CLIENT_HELLO_SUCCESS;
	*al = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

static SSL_CTX *
ctx_common(int server, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		ssl_err(err, errlen, "tls: cannot make a context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | (server ?
	    SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		ssl_err(err, errlen, "tls: ciphers");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err,
    size_t errlen)
{
	char what[1200];

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "cert %s", cert);
		ssl_err(err, errlen, what);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(what, sizeof(what), "key %s", key);
		ssl_err(err, errlen, what);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what), "key %s does not match cert %s",
		    key, cert);
		ssl_err(err, errlen, what);
		return -1;
	}
	return 0;
}

static SSL_CTX *
server_ctx(const char *cert, const char *key, const char *client_ca,
    char *err, size_t errlen)
{
	SSL_CTX			*ctx;
	STACK_OF(X509_NAME)	*names;
	char			 what[1200];

	if (cert == NULL || key == NULL) {
		snprintf(err, errlen, "tls: a server needs cert and key");
		return NULL;
	}
	if ((ctx = ctx_common(1, err, errlen)) == NULL)
		return NULL;
	if (load_pair(ctx, cert, key, err, errlen) == -1)
		goto fail;
	if (client_ca != NULL) {
		snprintf(what, sizeof(what), "client_ca %s", client_ca);
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1 ||
		    (names = SSL_load_client_CA_file(client_ca)) == NULL) {
			ssl_err(err, errlen, what);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	/* Sessions resume only under the same verification rules. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sagad", 5);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_client_hello_cb(ctx, client_hello, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *
client_ctx(const char *ca, const char *cert, const char *key, char *err,
    size_t errlen)
{
	SSL_CTX	*ctx;
	char	 what[1200];

	if ((cert == NULL) != (key == NULL)) {
		snprintf(err, errlen, "tls: a client certificate needs both "
		    "cert and key");
		return NULL;
	}
	if ((ctx = ctx_common(0, err, errlen)) == NULL)
		return NULL;
	if (ca != NULL) {
		snprintf(what, sizeof(what), "ca %s", ca);
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			ssl_err(err, errlen, what);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ssl_err(err, errlen, "tls: the system's CAs");
		goto fail;
	}
	if (cert != NULL && load_pair(ctx, cert, key, err, errlen) == -1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)ALPN_H2, 3)
	    != 0) {
		ssl_err(err, errlen, "tls: ALPN");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls *
tls_server_new(const char *cert, const char *key, const char *client_ca,
    char *err, size_t errlen)
{
	struct tls	*t;
	SSL_CTX		*ctx;

	if ((ctx = server_ctx(cert, key, client_ca, err, errlen)) == NULL)
		return NULL;
	t = util_xcalloc(1, sizeof(*t));
	t->refs = 1;
	t->server = 1;
	t->mtls = client_ca != NULL;
	t->ctx = ctx;
	return t;
}

struct tls *
tls_client_new(const char *ca, const char *cert, const char *key, char *err,
    size_t errlen)
{
	struct tls	*t;
	SSL_CTX		*ctx;

	if ((ctx = client_ctx(ca, cert, key, err, errlen)) == NULL)
		return NULL;
	t = util_xcalloc(1, sizeof(*t));
	t->refs = 1;
	t->ctx = ctx;
	return t;
}

int
tls_reload(struct tls *t, const char *ca, const char *cert, const char *key,
    char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ctx = t->server ? server_ctx(cert, key, ca, err, errlen) :
	    client_ctx(ca, cert, key, err, errlen);
	if (ctx == NULL)
		return -1;
	/* Connections up hold a reference of their own to the old one. */
	SSL_CTX_free(t->ctx);
	t->ctx = ctx;
	if (t->server)
		t->mtls = ca != NULL;
	return 0;
}

struct tls *
tls_ref(struct tls *t)
{
	if (t != NULL)
		t->refs++;
	return t;
}

void
tls_free(struct tls *t)
{
	if (t == NULL || --t->refs > 0)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

int
tls_mtls(const struct tls *t)
{
	return t != NULL && t->mtls;
}

/* --- connections ------------------------------------------------------- */

struct bufferevent *
tls_accept_bev(struct tls *t, struct event_base *base, evutil_socket_t fd,
    int h2)
{
	struct bufferevent	*bev;
	SSL			*ssl;

	if ((ssl = SSL_new(t->ctx)) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if (h2)
		SSL_set_app_data(ssl, &h2_mark);
	bev = bufferevent_openssl_socket_new(base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static int
is_ip(const char *s)
{
	struct in6_addr a;

	return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

struct bufferevent *
tls_connect_bev(struct tls *t, struct event_base *base, const char *name,
    char *err, size_t errlen)
{
	struct bufferevent	*bev;
	X509_VERIFY_PARAM	*vp;
	SSL			*ssl;
	int			 ok;

	if ((ssl = SSL_new(t->ctx)) == NULL) {
		ssl_err(err, errlen, "tls: cannot make a connection");
		return NULL;
	}
	vp = SSL_get0_param(ssl);
	if (is_ip(name))
		ok = X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1;
	else {
		X509_VERIFY_PARAM_set_hostflags(vp,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, name) == 1 &&
		    SSL_set1_host(ssl, name) == 1;
	}
	if (!ok) {
		snprintf(err, errlen, "tls: cannot check the server's name "
		    "against \"%s\"", name);
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		snprintf(err, errlen, "tls: cannot make a socket buffer");
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int
tls_peer_subject(struct bufferevent *bev, char *buf, size_t len)
{
	SSL	*ssl = bufferevent_openssl_get_ssl(bev);
	X509	*cert;
	BIO	*bio;
	int	 n;

	if (len == 0 || ssl == NULL ||
	    (cert = SSL_get_peer_certificate(ssl)) == NULL)
		return -1;
	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		X509_free(cert);
		return -1;
	}
	X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
	    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_read(bio, buf, (int)len - 1);
	BIO_free(bio);
	X509_free(cert);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* It goes into log lines: printable ASCII only. */
	for (char *p = buf; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	return 0;
}

int
tls_alpn_h2(struct bufferevent *bev)
{
	SSL			*ssl = bufferevent_openssl_get_ssl(bev);
	const unsigned char	*p;
	unsigned int		 len;

	if (ssl == NULL)
		return 0;
	SSL_get0_alpn_selected(ssl, &p, &len);
	return len == 2 && memcmp(p, "h2", 2) == 0;
}

const char *
tls_bev_error(struct bufferevent *bev, char *buf, size_t len)
{
	SSL		*ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long	 e, first = 0;
	long		 v;
	const char	*r;

	if (ssl == NULL)
		return NULL;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (first == 0)
			first = e;
	if ((v = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(buf, len, "certificate verify failed: %s",
		    X509_verify_cert_error_string(v));
		return buf;
	}
	if (first == 0)
		return NULL;
	r = ERR_reason_error_string(first);
	snprintf(buf, len, "%s", r != NULL ? r : "TLS error");
	return buf;
}

/* --- the services' client contexts -------------------------------------- */

struct tls_cache_ent {
	struct tls_cache_ent	*next;
	char			*ca, *cert, *key;
	struct tls		*tls;		/* NULL: the files did not load */
	char			 err[SAGAD_ERRLEN];
};

struct tls_cache {
	struct tls_cache_ent	*ents;
};

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL &&
	    strcmp(a, b) == 0);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? util_xstrdup(s) : NULL;
}

struct tls_cache *
tls_cache_new(void)
{
	return util_xcalloc(1, sizeof(struct tls_cache));
}

void
tls_cache_free(struct tls_cache *c)
{
	struct tls_cache_ent *e;

	if (c == NULL)
		return;
	while ((e = c->ents) != NULL) {
		c->ents = e->next;
		tls_free(e->tls);
		free(e->ca);
		free(e->cert);
		free(e->key);
		free(e);
	}
	free(c);
}

struct tls *
tls_cache_client(struct tls_cache *c, const char *ca, const char *cert,
    const char *key, char *err, size_t errlen)
{
	struct tls_cache_ent *e;

	for (e = c->ents; e != NULL; e = e->next)
		if (same(e->ca, ca) && same(e->cert, cert) &&
		    same(e->key, key))
			break;
	if (e == NULL) {
		e = util_xcalloc(1, sizeof(*e));
		e->ca = dup_or_null(ca);
		e->cert = dup_or_null(cert);
		e->key = dup_or_null(key);
		e->tls = tls_client_new(ca, cert, key, e->err,
		    sizeof(e->err));
		e->next = c->ents;
		c->ents = e;
	}
	if (e->tls == NULL)
		snprintf(err, errlen, "%s", e->err);
	return e->tls;
}

int
tls_cache_reload(struct tls_cache *c, char *err, size_t errlen)
{
	struct tls_cache_ent	*e;
	size_t			 used = 0;
	int			 bad = 0;
	char			 why[SAGAD_ERRLEN];

	if (errlen > 0)
		err[0] = '\0';
	for (e = c->ents; e != NULL; e = e->next) {
		if (e->tls == NULL) {
			e->tls = tls_client_new(e->ca, e->cert, e->key, why,
			    sizeof(why));
			if (e->tls != NULL) {
				e->err[0] = '\0';
				continue;
			}
			snprintf(e->err, sizeof(e->err), "%s", why);
		} else if (tls_reload(e->tls, e->ca, e->cert, e->key, why,
		    sizeof(why)) == 0)
			continue;
		/* A context that loaded before stays: calls still go out. */
		bad++;
		if (used < errlen) {
			int n = snprintf(err + used, errlen - used, "%s%s",
			    used ? "; " : "", why);
			if (n > 0)
				used += (size_t)n;
		}
	}
	return bad > 0 ? -1 : 0;
}
