#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "tls.h"

struct tls_server {
	SSL_CTX *ctx; /* default certificate; the one handshakes start on */
	SSL_CTX **sni_ctx;
	char **sni_names;
	size_t n_sni;
	int handshake_timeout;
};

/* The last OpenSSL error as text, for messages a person reads. */
static const char *
ssl_error(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, size, "%s", strerror(errno));
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_len,
	    const unsigned char *in, unsigned in_len, void *arg)
{
	static const unsigned char pop3[] = { 4, 'p', 'o', 'p', '3' };
	unsigned char *selected;

	if (SSL_select_next_proto(&selected, out_len, pop3, sizeof(pop3), in,
				  in_len) == OPENSSL_NPN_NEGOTIATED) {
		*out = selected;
		return SSL_TLSEXT_ERR_OK;
	}
	/* A client offering other protocols only still gets POP3. */
	return SSL_TLSEXT_ERR_NOACK;
}

static int
sni_select(SSL *ssl, int *alert, void *arg)
{
	const struct tls_server *srv = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i < srv->n_sni; i++) {
		if (strcasecmp(srv->sni_names[i], name) == 0) {
			SSL_set_SSL_CTX(ssl, srv->sni_ctx[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK; /* the default certificate answers */
}

static int
parse_protocol(const char *name)
{
	if (name == NULL || strcmp(name, "TLSv1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(name, "TLSv1.3") == 0)
		return TLS1_3_VERSION;
	return -1;
}

static SSL_CTX *
ctx_new(const struct tls_settings *ts, const struct tls_cert_settings *cert,
	char *err, size_t err_size)
{
	char buf[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int min = parse_protocol(ts->min_protocol);
	const char *bad;

	if (ctx == NULL) {
		snprintf(err, err_size, "%s: cannot create TLS context: %s",
			 cert->where, ssl_error(buf, sizeof(buf)));
		return NULL;
	}
	if (min < 0) {
		snprintf(err, err_size, "%s: tls min_protocol must be "
			 "\"TLSv1.2\" or \"TLSv1.3\"", cert->where);
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, min);
	/* Idle sessions keep no record buffers (memory per session). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_RENEGOTIATION);
	/* Tickets: stateless resumption across workers, since every worker
	 * inherits this context and its ticket keys from the master. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"postern",
				       7);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (ts->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ts->ciphers) != 1) {
		snprintf(err, err_size, "%s: bad tls ciphers '%s': %s",
			 cert->where, ts->ciphers, ssl_error(buf, sizeof(buf)));
		goto fail;
	}
	if (ts->ciphersuites != NULL &&
	    SSL_CTX_set_ciphersuites(ctx, ts->ciphersuites) != 1) {
		snprintf(err, err_size, "%s: bad tls ciphersuites '%s': %s",
			 cert->where, ts->ciphersuites,
			 ssl_error(buf, sizeof(buf)));
		goto fail;
	}
	/* OpenSSL says "system lib" for these; say what a person can fix. */
	bad = access(cert->certificate, R_OK) < 0 ? cert->certificate
	      : access(cert->key, R_OK) < 0	  ? cert->key
						  : NULL;
	if (bad != NULL) { /* errno is the failed access()'s */
		snprintf(err, err_size, "%s: tls %s %s: %s", cert->where,
			 bad == cert->key ? "key" : "certificate", bad,
			 strerror(errno));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert->certificate) != 1) {
		snprintf(err, err_size, "%s: tls certificate %s: %s",
			 cert->where, cert->certificate,
			 ssl_error(buf, sizeof(buf)));
		goto fail;
	}
	if (cert->chain != NULL) {
		/* Extra intermediates kept apart from the leaf file. */
		FILE *f = fopen(cert->chain, "r");
		X509 *x;

		if (f == NULL) {
			snprintf(err, err_size, "%s: tls chain %s: %s",
				 cert->where, cert->chain, strerror(errno));
			goto fail;
		}
		while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
			if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
				X509_free(x);
				break;
			}
		}
		fclose(f);
		ERR_clear_error(); /* the PEM reader's "no start line" */
	}
	/* OpenSSL checks the key against the certificate as it loads it;
	 * a mismatch fails here ("key values mismatch"). */
	if (SSL_CTX_use_PrivateKey_file(ctx, cert->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, err_size, "%s: tls key %s (for certificate %s): %s",
			 cert->where, cert->key, cert->certificate,
			 ssl_error(buf, sizeof(buf)));
		goto fail;
	}
	if (ts->ca != NULL && SSL_CTX_load_verify_locations(ctx, ts->ca, NULL) != 1) {
		snprintf(err, err_size, "%s: tls ca %s: %s", cert->where,
			 ts->ca, ssl_error(buf, sizeof(buf)));
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* A handshake of server_ctx with a default client, in memory. */
static int
warm_up(SSL_CTX *server_ctx)
{
	SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
	SSL *client = NULL, *server = NULL;
	BIO *client_bio = NULL, *server_bio = NULL;
	int client_done = 0, server_done = 0;

	if (client_ctx == NULL)
		goto out;
	client = SSL_new(client_ctx);
	server = SSL_new(server_ctx);
	if (client == NULL || server == NULL ||
	    BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) != 1)
		goto out;
	SSL_set_bio(client, client_bio, client_bio);
	SSL_set_bio(server, server_bio, server_bio);
	SSL_set_connect_state(client);
	SSL_set_accept_state(server);
	for (int i = 0; i < 8 && !(client_done && server_done); i++) {
		client_done = client_done || SSL_do_handshake(client) == 1;
		server_done = server_done || SSL_do_handshake(server) == 1;
	}
	if (server_done)
		SSL_CTX_remove_session(server_ctx, SSL_get_session(server));
out:
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(client_ctx);
	ERR_clear_error();
	return client_done && server_done;
}

void
tls_server_warm_up(struct tls_server *srv)
{
	size_t done = warm_up(srv->ctx);

	for (size_t i = 0; i < srv->n_sni; i++)
		done += warm_up(srv->sni_ctx[i]);
	log_debug("tls: warm-up handshakes done for %zu of %zu certificates",
		  done, srv->n_sni + 1);
}

struct tls_server *
tls_server_new(const struct tls_settings *ts, char *err, size_t err_size)
{
	struct tls_server *srv = calloc(1, sizeof(*srv));

	if (srv == NULL) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	srv->handshake_timeout = ts->handshake_timeout;
	srv->ctx = ctx_new(ts, &ts->cert, err, err_size);
	if (srv->ctx == NULL)
		goto fail;
	srv->sni_ctx = calloc(ts->n_sni + 1, sizeof(*srv->sni_ctx));
	srv->sni_names = calloc(ts->n_sni + 1, sizeof(*srv->sni_names));
	if (srv->sni_ctx == NULL || srv->sni_names == NULL)
		goto fail;
	for (size_t i = 0; i < ts->n_sni; i++) {
		srv->sni_ctx[i] = ctx_new(ts, &ts->sni[i], err, err_size);
		if (srv->sni_ctx[i] == NULL)
			goto fail;
		srv->sni_names[i] = strdup(ts->sni[i].name);
		srv->n_sni++;
		if (srv->sni_names[i] == NULL)
			goto fail;
	}
	SSL_CTX_set_tlsext_servername_callback(srv->ctx, sni_select);
	SSL_CTX_set_tlsext_servername_arg(srv->ctx, srv);
	return srv;
fail:
	tls_server_free(&srv);
	return NULL;
}

void
tls_server_free(struct tls_server **srv_p)
{
	struct tls_server *srv = *srv_p;

	if (srv == NULL)
		return;
	for (size_t i = 0; i < srv->n_sni; i++) {
		SSL_CTX_free(srv->sni_ctx[i]);
		free(srv->sni_names[i]);
	}
	free(srv->sni_ctx);
	free(srv->sni_names);
	SSL_CTX_free(srv->ctx);
	free(srv);
	*srv_p = NULL;
}

static ssize_t
tls_read(struct pio *io, void *buf, size_t len)
{
	size_t n = 0;
	int ret = SSL_read_ex(io->transport_ctx, buf, len, &n);

	if (ret == 1)
		return (ssize_t)n;
	switch (SSL_get_error(io->transport_ctx, ret)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
		/* The socket's receive timeout ran out (proto.c). */
		errno = EAGAIN;
		break;
	default:
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			errno = EIO;
		break;
	}
	ERR_clear_error();
	return -1;
}

static ssize_t
tls_write(struct pio *io, const void *buf, size_t len)
{
	size_t n = 0;

	/* One call per output buffer (128 KB): OpenSSL cuts full 16 KB
	 * records, not one record per line. */
	if (SSL_write_ex(io->transport_ctx, buf, len, &n) == 1)
		return (ssize_t)n;
	ERR_clear_error();
	return -1;
}

static size_t
tls_pending(struct pio *io)
{
	return SSL_has_pending(io->transport_ctx) ? 1 : 0;
}

static const struct pio_transport tls_transport = {
	.read = tls_read,
	.write = tls_write,
	.pending = tls_pending,
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * SSL_accept with one deadline for the whole handshake (a client dribbling
 * a byte at a time cannot stretch it): the socket is non-blocking while
 * we poll for whatever OpenSSL waits on.
 */
static int
accept_until(SSL *ssl, int fd, int timeout_s)
{
	long long deadline = now_ms() + (long long)timeout_s * 1000;
	int flags = fcntl(fd, F_GETFL), ret;

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	for (;;) {
		struct pollfd pfd = { .fd = fd };
		long long left;
		int e;

		ret = SSL_accept(ssl);
		if (ret == 1)
			break;
		e = SSL_get_error(ssl, ret);
		if (e == SSL_ERROR_WANT_READ)
			pfd.events = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			pfd.events = POLLOUT;
		else
			break;
		left = deadline - now_ms();
		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			errno = ETIMEDOUT;
			ret = -2;
			break;
		}
	}
	fcntl(fd, F_SETFL, flags);
	return ret;
}

int
tls_start(struct pio *io, const struct tls_server *srv, char *err,
	  size_t err_size)
{
	char buf[256];
	SSL *ssl = SSL_new(srv->ctx);
	int ret;

	if (ssl == NULL || SSL_set_fd(ssl, io->fd) != 1) {
		snprintf(err, err_size, "%s", ssl_error(buf, sizeof(buf)));
		SSL_free(ssl);
		return -1;
	}
	ret = accept_until(ssl, io->fd, srv->handshake_timeout);
	if (ret != 1) {
		int e = ret == -2 ? SSL_ERROR_SYSCALL : SSL_get_error(ssl, ret);

		if (ret == -2)
			snprintf(err, err_size, "handshake: timeout");
		else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			snprintf(err, err_size, "handshake: %s",
				 errno == 0 ? "connection closed"
					    : strerror(errno));
		else
			snprintf(err, err_size, "handshake: %s",
				 ssl_error(buf, sizeof(buf)));
		SSL_free(ssl);
		return -1;
	}
	io->transport = &tls_transport;
	io->transport_ctx = ssl;
	return 0;
}

void
tls_end(struct pio *io)
{
	SSL *ssl = io->transport_ctx;
	int rcvtimeo;

	if (io->transport != &tls_transport || ssl == NULL)
		return;
	if (!io->failed) {
		/* close_notify, without waiting for the peer's. */
		SSL_set_quiet_shutdown(ssl, 0);
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	ERR_clear_error();
	io->transport_ctx = NULL;
	rcvtimeo = io->rcvtimeo_ms;
	pio_attach(io, io->fd);
	io->rcvtimeo_ms = rcvtimeo;
}

const char *
tls_version(const struct pio *io)
{
	if (io->transport != &tls_transport)
		return "no";
	return SSL_get_version(io->transport_ctx);
}
