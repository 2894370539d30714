/*
 * tls.h - the TLS adapter the gRPC server, the gRPC client and the HTTP
 * listener share: an OpenSSL context built from PEM files, with the rules
 * of sagad.conf(5) (TLS 1.2 and later, AEAD ciphers with forward secrecy,
 * ALPN "h2" for gRPC, client certificates when a client CA is given), and
 * the bufferevents (libevent's bufferevent_openssl) that carry a connection
 * over it.
 *
 * A struct tls is a stable handle: reloading it (SIGHUP) builds a new
 * context from the files and swaps it in only when the whole of it loaded;
 * connections already up keep the context they started with, new ones get
 * the new one. It never logs: errors come back as sentences in err.
 */
#ifndef SAGAD_TLS_H
#define SAGAD_TLS_H

#include <stddef.h>

#include <event2/util.h>

struct bufferevent;
struct event_base;
struct tls;
struct tls_cache;

/*
 * A server context: cert (a PEM chain, leaf first) and key; client_ca not
 * NULL makes a client certificate signed by it required (mTLS).
 */
struct tls	*tls_server_new(const char *cert, const char *key,
		    const char *client_ca, char *err, size_t errlen);
/*
 * A client context: ca (PEM) or, NULL, the system's trusted CAs; cert and
 * key (both or neither) a client certificate for mTLS.
 */
struct tls	*tls_client_new(const char *ca, const char *cert,
		    const char *key, char *err, size_t errlen);
/*
 * Loads the files again (same roles, new paths allowed). On any error the
 * running context stays and -1 says why; 0: new connections use the new one.
 */
int		 tls_reload(struct tls *, const char *ca_or_client_ca,
		    const char *cert, const char *key, char *err,
		    size_t errlen);
struct tls	*tls_ref(struct tls *);
void		 tls_free(struct tls *);	/* drops a reference */
int		 tls_mtls(const struct tls *);	/* server: client certs required */

/*
 * The bufferevent of an accepted connection (fd, or -1 when the caller sets
 * it later, as evhttp's bevcb does: src/http.c). h2: the peer must offer
 * ALPN "h2" (gRPC); else "http/1.1" is chosen if offered. It owns fd and its
 * SSL (closed on free).
 */
struct bufferevent *tls_accept_bev(struct tls *, struct event_base *,
		    evutil_socket_t fd, int h2);

/*
 * The bufferevent of an outgoing connection (no socket yet: connect it with
 * bufferevent_socket_connect*), offering ALPN "h2". name: the name the
 * server's certificate must carry (a host name, checked with SNI sent, or
 * an IP address). NULL with err if OpenSSL cannot make it.
 */
struct bufferevent *tls_connect_bev(struct tls *, struct event_base *,
		    const char *name, char *err, size_t errlen);

/*
 * Once connected: the subject of the peer's certificate (RFC 2253, as
 * "CN=alice,O=Example"), or -1 if it sent none or bev is not TLS.
 */
int		 tls_peer_subject(struct bufferevent *, char *buf, size_t len);
/* Whether the peer agreed to HTTP/2 (ALPN "h2"). */
int		 tls_alpn_h2(struct bufferevent *);
/*
 * Why the TLS of bev failed, for an error message: "certificate verify
 * failed: hostname mismatch", or OpenSSL's reason ("tlsv13 alert
 * certificate required"). NULL if OpenSSL saw no error (a plain TCP
 * failure). Takes the errors off the bufferevent's queue.
 */
const char	*tls_bev_error(struct bufferevent *, char *buf, size_t len);

/*
 * Client contexts by their files, for the services' TLS: the same (ca,
 * cert, key) gives the same struct tls for as long as the cache lives, so
 * channels keyed by it survive a reload. tls_cache_reload() reloads each
 * from its files (a failure keeps the running one and is said in err).
 */
struct tls_cache *tls_cache_new(void);
void		 tls_cache_free(struct tls_cache *);
struct tls	*tls_cache_client(struct tls_cache *, const char *ca,
		    const char *cert, const char *key, char *err,
		    size_t errlen);
int		 tls_cache_reload(struct tls_cache *, char *err,
		    size_t errlen);

#endif
