#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>

struct pio;

enum tls_mode {
	TLS_NONE = 0,
	TLS_STARTTLS, /* plain, upgraded by STLS (RFC 2595) */
	TLS_IMPLICIT, /* TLS from the first byte (RFC 8314, port 995) */
};

/* One certificate: the default one, or one chosen by SNI name. */
struct tls_cert_settings {
	const char *name; /* SNI server name; NULL for the default */
	const char *certificate;
	const char *key;
	const char *chain; /* may be NULL */
	const char *where; /* "FILE:LINE" for error messages */
};

/* The config's tls group, as plain data for tls_server_new(). */
struct tls_settings {
	struct tls_cert_settings cert;
	struct tls_cert_settings *sni;
	size_t n_sni;
	const char *ca;           /* may be NULL */
	const char *min_protocol; /* "TLSv1.2" or "TLSv1.3" */
	const char *ciphers;      /* TLS 1.2 cipher list, may be NULL */
	const char *ciphersuites; /* TLS 1.3 suites, may be NULL */
	int handshake_timeout;    /* seconds */
};

struct tls_server;

/*
 * Builds the SSL_CTXs once, in the master: loads certificates and keys,
 * checks each key matches its certificate, sets protocol floor, ciphers,
 * session tickets and ALPN "pop3". Forked workers share the result, so no
 * session ever reads a certificate. Returns NULL with a message naming the
 * file in err.
 */
struct tls_server *tls_server_new(const struct tls_settings *settings,
				  char *err, size_t err_size);
void tls_server_free(struct tls_server **srv);

/*
 * One handshake per certificate with ourselves, in memory, in the master
 * before it forks workers. OpenSSL sets up much on first use (the
 * private key's precomputed values, its algorithm caches): done here,
 * the workers share those pages with the master; done in each worker's
 * first handshake, they cost every worker about 75 KB of its own. Best
 * effort: a handshake that fails here only leaves that to the workers.
 * Random generators reseed in each worker (OpenSSL's fork detection).
 */
void tls_server_warm_up(struct tls_server *srv);

/*
 * Runs the server side of the handshake on io's socket (bounded by the
 * handshake timeout) and switches io to TLS. Returns 0, or -1 with a
 * reason in err (the session must end: the stream is unusable).
 */
int tls_start(struct pio *io, const struct tls_server *srv, char *err,
	      size_t err_size);
/* Ends TLS on io (close_notify, best effort) and frees its state. */
void tls_end(struct pio *io);
/* For logs: "TLSv1.3". */
const char *tls_version(const struct pio *io);

#endif
