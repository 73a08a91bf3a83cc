#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "modload.h"
#include "session.h"
#include "tls.h"

#ifndef POSTERN_MODULES_DIR
#define POSTERN_MODULES_DIR "/usr/local/lib/postern/modules"
#endif

/* The core's own settings, declared like a module's so one validator, one
 * default filler and one printer serve both. */
static const struct postern_setting server_settings[] = {
	{ "hostname", POSTERN_SETTING_STRING, NULL, 0,
	  "host name for the greeting and logs (default: gethostname())" },
	{ "user", POSTERN_SETTING_STRING, NULL, 0,
	  "after binding, run the whole daemon as this user (virtual mail)" },
	{ "idle_timeout", POSTERN_SETTING_INT, "600", 0,
	  "seconds a logged-in client may stay silent" },
	{ "login_timeout", POSTERN_SETTING_INT, "60", 0,
	  "seconds a client may stay silent before logging in" },
	{ "max_sessions", POSTERN_SETTING_INT, "1000", 0,
	  "connections at once, in total" },
	{ "max_sessions_per_ip", POSTERN_SETTING_INT, "20", 0,
	  "connections at once from one client address" },
	{ "max_auth_failures", POSTERN_SETTING_INT, "3", 0,
	  "failed logins on one connection before it is closed" },
	{ "auth_failure_delay_ms", POSTERN_SETTING_INT, "2000", 0,
	  "delay before answering a failed login, in milliseconds" },
	{ "max_protocol_errors", POSTERN_SETTING_INT, "10", 0,
	  "bad commands on one connection before it is closed" },
	{ "plaintext_auth_networks", POSTERN_SETTING_STRING_LIST,
	  "[ \"127.0.0.0/8\", \"::1/128\" ]", 0,
	  "client networks allowed to log in with a plaintext password "
	  "without TLS" },
	{ "spare_workers", POSTERN_SETTING_INT, "2", 0,
	  "idle pre-forked session workers kept ready" },
	{ "log_level", POSTERN_SETTING_STRING, "info", 0,
	  "err, warning, notice, info or debug" },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct postern_setting listen_settings[] = {
	{ "name", POSTERN_SETTING_STRING, "pop3", 0,
	  "listener name, matched to systemd socket FileDescriptorName" },
	{ "address", POSTERN_SETTING_STRING, "0.0.0.0", 0,
	  "IPv4 or IPv6 address to bind" },
	{ "port", POSTERN_SETTING_INT, "110", 0, "TCP port" },
	{ "tls", POSTERN_SETTING_STRING, "none", 0,
	  "\"none\", \"starttls\" (STLS, RFC 2595) or \"implicit\" (RFC 8314)" },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct postern_setting tls_settings_table[] = {
	{ "certificate", POSTERN_SETTING_STRING, NULL, 1,
	  "PEM certificate (leaf first, intermediates may follow)" },
	{ "key", POSTERN_SETTING_STRING, NULL, 1, "PEM private key" },
	{ "chain", POSTERN_SETTING_STRING, NULL, 0,
	  "PEM intermediates, when not in the certificate file" },
	{ "ca", POSTERN_SETTING_STRING, NULL, 0,
	  "PEM CA bundle (for client certificates; not required)" },
	{ "min_protocol", POSTERN_SETTING_STRING, "TLSv1.2", 0,
	  "oldest protocol accepted: TLSv1.2 or TLSv1.3" },
	{ "ciphers", POSTERN_SETTING_STRING, NULL, 0,
	  "TLS 1.2 cipher list (OpenSSL syntax); default: OpenSSL's" },
	{ "ciphersuites", POSTERN_SETTING_STRING, NULL, 0,
	  "TLS 1.3 cipher suites; default: OpenSSL's" },
	{ "handshake_timeout", POSTERN_SETTING_INT, "30", 0,
	  "seconds a client may take to finish the TLS handshake" },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct postern_setting sni_settings_table[] = {
	{ "name", POSTERN_SETTING_STRING, NULL, 1,
	  "server name the client asks for (SNI)" },
	{ "certificate", POSTERN_SETTING_STRING, NULL, 1, "PEM certificate" },
	{ "key", POSTERN_SETTING_STRING, NULL, 1, "PEM private key" },
	{ "chain", POSTERN_SETTING_STRING, NULL, 0, "PEM intermediates" },
	{ NULL, 0, NULL, 0, NULL },
};

static const char *const top_keys[] = {
	"server", "listen", "modules_dir", "auth", "storage", "commands", "tls",
	NULL,
};
static const char *const tls_core_keys[] = { "sni", NULL };
static const char *const module_core_keys[] = { "module", NULL };

struct loader {
	struct server_conf *conf;
	unsigned errors;
};

static void POSTERN_PRINTF(3, 4)
conf_error(struct loader *ld, const config_setting_t *where,
	   const char *fmt, ...)
{
	char msg[768];
	const char *file = NULL;
	int line = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (where != NULL) {
		file = config_setting_source_file(where);
		line = (int)config_setting_source_line(where);
	}
	if (file == NULL)
		file = ld->conf->path;
	if (line > 0)
		log_err("%s:%d: %s", file, line, msg);
	else /* about the file as a whole: nothing to point at */
		log_err("%s: %s", file, msg);
	ld->errors++;
}

static const char *
type_name(enum postern_setting_type type)
{
	switch (type) {
	case POSTERN_SETTING_STRING: return "string";
	case POSTERN_SETTING_INT: return "integer";
	case POSTERN_SETTING_BOOL: return "boolean";
	case POSTERN_SETTING_STRING_LIST: return "list of strings";
	}
	return "?";
}

static int
has_type(const config_setting_t *s, enum postern_setting_type type)
{
	int t = config_setting_type(s);

	switch (type) {
	case POSTERN_SETTING_STRING:
		return t == CONFIG_TYPE_STRING;
	case POSTERN_SETTING_INT:
		return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
	case POSTERN_SETTING_BOOL:
		return t == CONFIG_TYPE_BOOL;
	case POSTERN_SETTING_STRING_LIST:
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return 0;
		for (int i = 0; i < config_setting_length(s); i++) {
			if (config_setting_type(config_setting_get_elem(
				    s, (unsigned)i)) != CONFIG_TYPE_STRING)
				return 0;
		}
		return 1;
	}
	return 0;
}

static int
in_list(const char *name, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++) {
		if (strcmp(name, *list) == 0)
			return 1;
	}
	return 0;
}

/* Adds the table's default for a missing key to the group, parsed the way
 * the config would be, so accessors and `postern -n` see one truth. */
static int
add_default(config_setting_t *group, const struct postern_setting *row)
{
	config_t tmp;
	char text[1024];
	config_setting_t *src, *dst;
	int ret = -1;

	config_init(&tmp);
	snprintf(text, sizeof(text), "v = %s%s%s;",
		 row->type == POSTERN_SETTING_STRING ? "\"" : "",
		 row->default_value,
		 row->type == POSTERN_SETTING_STRING ? "\"" : "");
	if (config_read_string(&tmp, text) != CONFIG_TRUE)
		goto out;
	src = config_lookup(&tmp, "v");
	if (src == NULL || !has_type(src, row->type))
		goto out;
	switch (row->type) {
	case POSTERN_SETTING_STRING:
		dst = config_setting_add(group, row->name, CONFIG_TYPE_STRING);
		ret = dst != NULL && config_setting_set_string(
			dst, config_setting_get_string(src)) == CONFIG_TRUE;
		break;
	case POSTERN_SETTING_INT:
		/* Plain int unless it needs 64 bits, as a person writes it. */
		dst = config_setting_add(group, row->name,
					 config_setting_type(src));
		ret = dst != NULL && config_setting_set_int64(
			dst, config_setting_get_int64(src)) == CONFIG_TRUE;
		break;
	case POSTERN_SETTING_BOOL:
		dst = config_setting_add(group, row->name, CONFIG_TYPE_BOOL);
		ret = dst != NULL && config_setting_set_bool(
			dst, config_setting_get_bool(src)) == CONFIG_TRUE;
		break;
	case POSTERN_SETTING_STRING_LIST:
		dst = config_setting_add(group, row->name, CONFIG_TYPE_ARRAY);
		ret = dst != NULL;
		for (int i = 0; ret && i < config_setting_length(src); i++) {
			ret = config_setting_set_string_elem(
				dst, -1,
				config_setting_get_string_elem(src, i)) != NULL;
		}
		break;
	}
	ret = ret ? 0 : -1;
out:
	config_destroy(&tmp);
	return ret;
}

/*
 * Checks a group against a settings table: unknown keys, wrong types and
 * missing required keys are errors; defaults are filled in. core_keys are
 * keys the core itself reads from the group.
 */
static void
validate_group(struct loader *ld, config_setting_t *group,
	       const struct postern_setting *table,
	       const char *const *core_keys, const char *what)
{
	const struct postern_setting *row;

	for (int i = 0; i < config_setting_length(group); i++) {
		config_setting_t *s = config_setting_get_elem(group,
							      (unsigned)i);
		const char *name = config_setting_name(s);

		if (name == NULL || in_list(name, core_keys))
			continue;
		for (row = table; row != NULL && row->name != NULL; row++) {
			if (strcmp(row->name, name) == 0)
				break;
		}
		if (row == NULL || row->name == NULL) {
			conf_error(ld, s, "unknown setting '%s' in %s", name,
				   what);
		} else if (!has_type(s, row->type)) {
			conf_error(ld, s, "%s: '%s' must be a %s", what, name,
				   type_name(row->type));
		}
	}
	for (row = table; row != NULL && row->name != NULL; row++) {
		if (config_setting_get_member(group, row->name) != NULL)
			continue;
		if (row->required) {
			conf_error(ld, group, "%s: missing required setting "
				   "'%s'", what, row->name);
		} else if (row->default_value != NULL &&
			   add_default(group, row) < 0) {
			conf_error(ld, group, "%s: bad default for '%s': %s",
				   what, row->name, row->default_value);
		}
	}
}

static config_setting_t *
ensure_group(config_setting_t *parent, const char *name)
{
	config_setting_t *s = config_setting_get_member(parent, name);

	if (s == NULL)
		s = config_setting_add(parent, name, CONFIG_TYPE_GROUP);
	return s;
}

static long long
group_int(const config_setting_t *group, const char *name)
{
	const config_setting_t *s = config_setting_get_member(group, name);

	return s != NULL ? config_setting_get_int64(s) : 0;
}

static const char *
group_string(const config_setting_t *group, const char *name)
{
	const config_setting_t *s = config_setting_get_member(group, name);

	return s != NULL ? config_setting_get_string(s) : NULL;
}

static int
int_setting(struct loader *ld, config_setting_t *group, const char *name,
	    long long min, long long max)
{
	config_setting_t *s = config_setting_get_member(group, name);
	long long v = group_int(group, name);

	if (s != NULL && (v < min || v > max)) {
		conf_error(ld, s, "'%s' must be between %lld and %lld", name,
			   min, max);
		return (int)min;
	}
	return (int)v;
}

int
net_range_parse(const char *str, struct net_range *range_r)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(str, '/');
	size_t len = slash != NULL ? (size_t)(slash - str) : strlen(str);
	unsigned max;
	char *end;

	if (len >= sizeof(addr))
		return -1;
	memcpy(addr, str, len);
	addr[len] = '\0';
	memset(range_r, 0, sizeof(*range_r));
	if (inet_pton(AF_INET, addr, range_r->addr) == 1) {
		range_r->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, range_r->addr) == 1) {
		range_r->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	range_r->prefix = max;
	if (slash != NULL) {
		errno = 0;
		unsigned long p = strtoul(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == slash + 1 || p > max)
			return -1;
		range_r->prefix = (unsigned)p;
	}
	return 0;
}

static int
prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int
net_range_match(const struct net_range *ranges, size_t count,
		const struct sockaddr *sa)
{
	const unsigned char *addr;
	unsigned char mapped[4];
	int family = sa->sa_family;

	if (family == AF_INET) {
		addr = (const unsigned char *)&((const struct sockaddr_in *)sa)
			       ->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 =
			&((const struct sockaddr_in6 *)sa)->sin6_addr;
		addr = a6->s6_addr;
		/* An IPv4 client on a dual-stack socket matches IPv4 ranges. */
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(mapped, a6->s6_addr + 12, 4);
			addr = mapped;
			family = AF_INET;
		}
	} else {
		return 0;
	}
	for (size_t i = 0; i < count; i++) {
		if (ranges[i].family == family &&
		    prefix_match(ranges[i].addr, addr, ranges[i].prefix))
			return 1;
	}
	return 0;
}

static void
load_server(struct loader *ld, config_setting_t *root)
{
	struct server_conf *conf = ld->conf;
	config_setting_t *server = ensure_group(root, "server");
	config_setting_t *nets;
	char host[256];
	int level;

	if (config_setting_type(server) != CONFIG_TYPE_GROUP) {
		conf_error(ld, server, "'server' must be a group");
		return;
	}
	validate_group(ld, server, server_settings, NULL, "server");
	if (config_setting_get_member(server, "hostname") == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		config_setting_set_string(
			config_setting_add(server, "hostname",
					   CONFIG_TYPE_STRING),
			host);
	}
	conf->hostname = group_string(server, "hostname");
	conf->user = group_string(server, "user");
	if (conf->user != NULL && getpwnam(conf->user) == NULL) {
		conf_error(ld, config_setting_get_member(server, "user"),
			   "unknown user '%s'", conf->user);
	}
	conf->idle_timeout = int_setting(ld, server, "idle_timeout", 1, 86400);
	conf->login_timeout = int_setting(ld, server, "login_timeout", 1, 3600);
	conf->max_sessions = int_setting(ld, server, "max_sessions", 1, 1000000);
	conf->max_sessions_per_ip =
		int_setting(ld, server, "max_sessions_per_ip", 1, 1000000);
	conf->max_auth_failures =
		int_setting(ld, server, "max_auth_failures", 1, 100);
	conf->auth_failure_delay_ms =
		int_setting(ld, server, "auth_failure_delay_ms", 0, 60000);
	conf->max_protocol_errors =
		int_setting(ld, server, "max_protocol_errors", 1, 1000);
	conf->spare_workers = int_setting(ld, server, "spare_workers", 0, 1000);
	level = log_level_parse(group_string(server, "log_level") != NULL
					? group_string(server, "log_level")
					: "info");
	if (level < 0) {
		conf_error(ld, config_setting_get_member(server, "log_level"),
			   "unknown log_level '%s'",
			   group_string(server, "log_level"));
		level = POSTERN_LOG_INFO;
	}
	conf->log_level = level;

	nets = config_setting_get_member(server, "plaintext_auth_networks");
	if (nets != NULL && has_type(nets, POSTERN_SETTING_STRING_LIST)) {
		size_t n = (size_t)config_setting_length(nets);

		conf->plain_nets = calloc(n + 1, sizeof(*conf->plain_nets));
		for (size_t i = 0; conf->plain_nets != NULL && i < n; i++) {
			const char *str =
				config_setting_get_string_elem(nets, (int)i);

			if (net_range_parse(str, &conf->plain_nets[i]) < 0) {
				conf_error(ld, nets,
					   "plaintext_auth_networks: bad "
					   "network '%s'", str);
			}
		}
		conf->n_plain_nets = n;
	}
}

static int
parse_tls_mode(const char *mode)
{
	if (mode == NULL || strcmp(mode, "none") == 0)
		return TLS_NONE;
	if (strcmp(mode, "starttls") == 0)
		return TLS_STARTTLS;
	if (strcmp(mode, "implicit") == 0)
		return TLS_IMPLICIT;
	return -1;
}

/* "FILE:LINE" of a setting, for messages made outside this file. */
static const char *
where(struct loader *ld, const config_setting_t *s, char *buf, size_t size)
{
	const char *file = config_setting_source_file(s);

	snprintf(buf, size, "%s:%u", file != NULL ? file : ld->conf->path,
		 config_setting_source_line(s));
	return buf;
}

static void
cert_settings(struct loader *ld, config_setting_t *g,
	      struct tls_cert_settings *cert, char *where_buf, size_t size)
{
	cert->name = group_string(g, "name");
	cert->certificate = group_string(g, "certificate");
	cert->key = group_string(g, "key");
	cert->chain = group_string(g, "chain");
	cert->where = where(ld, g, where_buf, size);
}

/* The top-level tls group: certificates are loaded here, in the master,
 * so `postern -t` names a missing or mismatched file. */
static void
load_tls(struct loader *ld, config_setting_t *root)
{
	config_setting_t *g = config_setting_get_member(root, "tls");
	config_setting_t *sni;
	struct tls_settings ts;
	char err[1024], where_main[4200], (*where_sni)[4200] = NULL;
	unsigned before = ld->errors;

	if (g == NULL)
		return;
	if (!config_setting_is_group(g)) {
		conf_error(ld, g, "'tls' must be a group: tls = { ... };");
		return;
	}
	validate_group(ld, g, tls_settings_table, tls_core_keys, "tls");
	memset(&ts, 0, sizeof(ts));
	cert_settings(ld, g, &ts.cert, where_main, sizeof(where_main));
	ts.cert.name = NULL;
	ts.ca = group_string(g, "ca");
	ts.min_protocol = group_string(g, "min_protocol");
	ts.ciphers = group_string(g, "ciphers");
	ts.ciphersuites = group_string(g, "ciphersuites");
	ts.handshake_timeout = int_setting(ld, g, "handshake_timeout", 1, 600);
	sni = config_setting_get_member(g, "sni");
	if (sni != NULL && !config_setting_is_list(sni)) {
		conf_error(ld, sni, "tls: 'sni' must be a list: "
			   "( { name = ...; certificate = ...; key = ...; } )");
		return;
	}
	if (sni != NULL) {
		size_t n = (size_t)config_setting_length(sni);

		ts.sni = calloc(n + 1, sizeof(*ts.sni));
		where_sni = calloc(n + 1, sizeof(*where_sni));
		for (size_t i = 0; ts.sni != NULL && where_sni != NULL && i < n;
		     i++) {
			config_setting_t *e =
				config_setting_get_elem(sni, (unsigned)i);

			if (!config_setting_is_group(e)) {
				conf_error(ld, e, "tls sni entries must be "
					   "groups");
				continue;
			}
			validate_group(ld, e, sni_settings_table, NULL,
				       "tls sni");
			cert_settings(ld, e, &ts.sni[ts.n_sni], where_sni[i],
				      sizeof(where_sni[i]));
			ts.n_sni++;
		}
	}
	if (ld->errors == before) {
		ld->conf->tls = tls_server_new(&ts, err, sizeof(err));
		if (ld->conf->tls == NULL) {
			log_err("%s", err);
			ld->errors++;
		}
	}
	free(ts.sni);
	free(where_sni);
}

static void
load_listens(struct loader *ld, config_setting_t *root)
{
	struct server_conf *conf = ld->conf;
	config_setting_t *list = config_setting_get_member(root, "listen");
	int n;

	if (list == NULL) {
		conf_error(ld, NULL, "no 'listen' entries");
		return;
	}
	if (!config_setting_is_list(list) && !config_setting_is_array(list)) {
		conf_error(ld, list, "'listen' must be a list: ( { ... } )");
		return;
	}
	n = config_setting_length(list);
	if (n == 0)
		conf_error(ld, list, "no 'listen' entries");
	conf->listens = calloc((size_t)n + 1, sizeof(*conf->listens));
	for (int i = 0; conf->listens != NULL && i < n; i++) {
		config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct listen_conf *l = &conf->listens[conf->n_listens];
		struct net_range probe;

		if (!config_setting_is_group(g)) {
			conf_error(ld, g, "listen entries must be groups");
			continue;
		}
		validate_group(ld, g, listen_settings, NULL, "listen");
		l->name = group_string(g, "name");
		l->address = group_string(g, "address");
		l->port = int_setting(ld, g, "port", 1, 65535);
		l->tls_mode = parse_tls_mode(group_string(g, "tls"));
		if (l->tls_mode < 0)
			conf_error(ld, config_setting_get_member(g, "tls"),
				   "listen: tls must be \"none\", \"starttls\" "
				   "or \"implicit\"");
		else if (l->tls_mode != TLS_NONE &&
			 config_setting_get_member(root, "tls") == NULL)
			conf_error(ld, g, "listen %s: tls = \"%s\" needs a "
				   "top-level tls group with a certificate",
				   l->name, group_string(g, "tls"));
		l->file = config_setting_source_file(g);
		l->line = (int)config_setting_source_line(g);
		if (l->address == NULL || net_range_parse(l->address, &probe) < 0 ||
		    strchr(l->address, '/') != NULL) {
			conf_error(ld, g, "listen: bad address '%s'",
				   l->address != NULL ? l->address : "");
		}
		for (size_t j = 0; l->name != NULL && j < conf->n_listens; j++) {
			if (strcmp(conf->listens[j].name, l->name) == 0)
				conf_error(ld, g, "listen: duplicate name "
					   "'%s'", l->name);
		}
		conf->n_listens++;
	}
}

static int
valid_module_name(const char *name)
{
	if (*name == '\0' || strlen(name) > 40)
		return 0;
	for (; *name != '\0'; name++) {
		if (!((*name >= 'a' && *name <= 'z') ||
		      (*name >= '0' && *name <= '9') || *name == '_'))
			return 0;
	}
	return 1;
}

/* Loads the module `prefix`_`name`.so for one config entry. */
static int
load_module(struct loader *ld, struct module_conf *mc, const char *prefix,
	    const char *name, config_setting_t *where)
{
	char path[4096], err[1024];

	if (!valid_module_name(name)) {
		conf_error(ld, where, "bad module name '%s'", name);
		return -1;
	}
	mc->short_name = name;
	snprintf(mc->so_name, sizeof(mc->so_name), "%s_%s", prefix, name);
	mc->file = config_setting_source_file(where);
	mc->line = (int)config_setting_source_line(where);
	if (snprintf(path, sizeof(path), "%s/%s.so", ld->conf->modules_dir,
		     mc->so_name) >= (int)sizeof(path)) {
		conf_error(ld, where, "modules_dir too long");
		return -1;
	}
	if (access(path, F_OK) < 0) {
		conf_error(ld, where, "module '%s': %s: %s", name, path,
			   strerror(errno));
		return -1;
	}
	if (modload_open(path, mc->so_name, &mc->loaded, err, sizeof(err)) <
	    0) {
		conf_error(ld, where, "%s", err);
		return -1;
	}
	mc->desc = &mc->loaded->desc;
	return 0;
}

static void
load_module_list(struct loader *ld, config_setting_t *root, const char *key,
		 const char *prefix, struct module_conf **list_r,
		 size_t *count_r)
{
	config_setting_t *list = config_setting_get_member(root, key);
	struct module_conf *mcs;
	char what[128];
	int n;

	if (list == NULL)
		return;
	if (!config_setting_is_list(list)) {
		conf_error(ld, list, "'%s' must be a list: ( { module = ...; } )",
			   key);
		return;
	}
	n = config_setting_length(list);
	mcs = calloc((size_t)n + 1, sizeof(*mcs));
	*list_r = mcs;
	for (int i = 0; mcs != NULL && i < n; i++) {
		config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct module_conf *mc = &mcs[*count_r];
		const char *name;

		if (!config_setting_is_group(g)) {
			conf_error(ld, g, "%s entries must be groups", key);
			continue;
		}
		name = group_string(g, "module");
		if (name == NULL) {
			conf_error(ld, g, "%s entry without 'module = \"...\"'",
				   key);
			continue;
		}
		if (load_module(ld, mc, prefix, name, g) < 0)
			continue;
		snprintf(what, sizeof(what), "%s module %s", key, name);
		mc->settings.group = g;
		mc->settings.table = mc->desc->settings;
		validate_group(ld, g, mc->desc->settings, module_core_keys,
			       what);
		(*count_r)++;
	}
}

static void
load_commands(struct loader *ld, config_setting_t *root)
{
	struct server_conf *conf = ld->conf;
	config_setting_t *list = config_setting_get_member(root, "commands");
	int n;

	if (list == NULL)
		return;
	if (!has_type(list, POSTERN_SETTING_STRING_LIST)) {
		conf_error(ld, list, "'commands' must be a list of strings: "
			   "[ \"top\", \"uidl\" ]");
		return;
	}
	n = config_setting_length(list);
	conf->cmds = calloc((size_t)n + 1, sizeof(*conf->cmds));
	for (int i = 0; conf->cmds != NULL && i < n; i++) {
		struct module_conf *mc = &conf->cmds[conf->n_cmds];

		if (load_module(ld, mc, "cmd",
				config_setting_get_string_elem(list, i),
				list) < 0)
			continue;
		/* A command module's settings would go in a group of its
		 * own; none has any yet, so it gets an empty view. */
		mc->settings.group = NULL;
		mc->settings.table = mc->desc->settings;
		conf->n_cmds++;
	}
}

static void
check_kinds(struct loader *ld)
{
	struct server_conf *conf = ld->conf;

	for (size_t i = 0; i < conf->n_auth; i++) {
		const struct postern_auth_ops *ops = conf->auth[i].desc->auth;

		if (ops == NULL || ops->verify_plain == NULL)
			conf_error(ld, conf->auth[i].settings.group,
				   "module %s is not an auth module",
				   conf->auth[i].so_name);
	}
	for (size_t i = 0; i < conf->n_storage; i++) {
		const struct postern_storage_ops *ops =
			conf->storage[i].desc->storage;
		const struct postern_setting *row;

		if (ops == NULL || ops->open == NULL || ops->msg_open == NULL ||
		    ops->commit == NULL || ops->close == NULL) {
			conf_error(ld, conf->storage[i].settings.group,
				   "module %s is not a storage module",
				   conf->storage[i].so_name);
			continue;
		}
		for (row = conf->storage[i].desc->settings;
		     row != NULL && row->name != NULL; row++) {
			if (strcmp(row->name, "path") == 0 &&
			    row->type == POSTERN_SETTING_STRING)
				break;
		}
		if (row == NULL || row->name == NULL)
			conf_error(ld, conf->storage[i].settings.group,
				   "module %s declares no 'path' setting",
				   conf->storage[i].so_name);
	}
	for (size_t i = 0; i < conf->n_cmds; i++) {
		if (conf->cmds[i].desc->commands == NULL)
			conf_error(ld, NULL, "module %s has no commands",
				   conf->cmds[i].so_name);
	}
	if (conf->n_auth == 0)
		conf_error(ld, NULL, "no 'auth' modules configured");
	if (conf->n_storage == 0)
		conf_error(ld, NULL, "no 'storage' modules configured");
}

static void
add_commands(struct loader *ld, const struct postern_command *rows,
	     void *state, const struct module_conf *mc)
{
	struct server_conf *conf = ld->conf;

	for (; rows != NULL && rows->name != NULL; rows++) {
		size_t i;

		for (i = 0; i < conf->n_commands; i++) {
			if (strcasecmp(conf->commands[i].cmd->name,
				       rows->name) == 0)
				break;
		}
		if (i < conf->n_commands || rows->handler == NULL ||
		    rows->max_args > POSTERN_MAX_ARGS ||
		    rows->min_args > rows->max_args) {
			log_err("%s:%d: module %s: command %s is a duplicate "
				"or malformed", mc->file != NULL ? mc->file
								 : conf->path,
				mc->line, mc->so_name, rows->name);
			ld->errors++;
			continue;
		}
		struct command_entry *grown =
			realloc(conf->commands, (conf->n_commands + 2) *
							sizeof(*grown));
		if (grown == NULL) {
			ld->errors++;
			return;
		}
		conf->commands = grown;
		conf->commands[conf->n_commands].cmd = rows;
		conf->commands[conf->n_commands].mod_state = state;
		conf->n_commands++;
		conf->commands[conf->n_commands].cmd = NULL;
	}
}

static void
init_modules(struct loader *ld, struct module_conf *mcs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct module_conf *mc = &mcs[i];
		const char *error = NULL;

		if (mc->desc->init == NULL) {
			mc->initialized = 1;
		} else if (mc->desc->init(&postern_api, &mc->settings,
					  &mc->state, &error) != POSTERN_OK) {
			log_err("%s:%d: module %s: %s",
				mc->file != NULL ? mc->file : ld->conf->path,
				mc->line, mc->so_name,
				error != NULL ? error : "init failed");
			ld->errors++;
			continue;
		}
		mc->initialized = 1;
		add_commands(ld, mc->desc->commands, mc->state, mc);
	}
}

struct server_conf *
conf_load(const char *path)
{
	struct server_conf *conf = calloc(1, sizeof(*conf));
	struct loader ld = { .conf = conf };
	config_setting_t *root, *md;

	if (conf == NULL)
		return NULL;
	config_init(&conf->cfg);
	conf->path = strdup(path);
	if (conf->path == NULL)
		goto fail;
	if (config_read_file(&conf->cfg, path) != CONFIG_TRUE) {
		if (config_error_type(&conf->cfg) == CONFIG_ERR_FILE_IO)
			log_err("%s:0: cannot read: %s", path, strerror(errno));
		else
			log_err("%s:%d: %s",
				config_error_file(&conf->cfg) != NULL
					? config_error_file(&conf->cfg)
					: path,
				config_error_line(&conf->cfg),
				config_error_text(&conf->cfg));
		goto fail;
	}
	root = config_root_setting(&conf->cfg);
	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);

		if (!in_list(config_setting_name(s), top_keys))
			conf_error(&ld, s, "unknown setting '%s'",
				   config_setting_name(s));
	}
	load_server(&ld, root);
	load_listens(&ld, root);
	load_tls(&ld, root);

	md = config_setting_get_member(root, "modules_dir");
	if (md == NULL) {
		md = config_setting_add(root, "modules_dir", CONFIG_TYPE_STRING);
		config_setting_set_string(md, POSTERN_MODULES_DIR);
	} else if (config_setting_type(md) != CONFIG_TYPE_STRING) {
		conf_error(&ld, md, "'modules_dir' must be a string");
		goto fail;
	}
	conf->modules_dir = config_setting_get_string(md);

	load_module_list(&ld, root, "auth", "auth", &conf->auth, &conf->n_auth);
	load_module_list(&ld, root, "storage", "storage", &conf->storage,
			 &conf->n_storage);
	load_commands(&ld, root);
	check_kinds(&ld);
	if (ld.errors > 0)
		goto fail;

	add_commands(&ld, session_core_commands, NULL, NULL);
	init_modules(&ld, conf->auth, conf->n_auth);
	init_modules(&ld, conf->storage, conf->n_storage);
	init_modules(&ld, conf->cmds, conf->n_cmds);
	if (ld.errors > 0)
		goto fail;
	return conf;
fail:
	conf_free(&conf);
	return NULL;
}

static void
free_modules(struct module_conf **mcs, size_t count)
{
	for (size_t i = 0; *mcs != NULL && i < count; i++) {
		struct module_conf *mc = &(*mcs)[i];

		if (mc->initialized && mc->desc->fini != NULL)
			mc->desc->fini(mc->state);
		modload_close(&mc->loaded);
	}
	free(*mcs);
	*mcs = NULL;
}

void
conf_free(struct server_conf **conf_p)
{
	struct server_conf *conf = *conf_p;

	if (conf == NULL)
		return;
	free_modules(&conf->cmds, conf->n_cmds);
	free_modules(&conf->storage, conf->n_storage);
	free_modules(&conf->auth, conf->n_auth);
	free(conf->commands);
	tls_server_free(&conf->tls);
	free(conf->listens);
	free(conf->plain_nets);
	config_destroy(&conf->cfg);
	free(conf->path);
	free(conf);
	*conf_p = NULL;
}

void
conf_print(const struct server_conf *conf)
{
	config_write(&conf->cfg, stdout);
}

void
conf_print_table(const struct postern_setting *table)
{
	printf("%-26s %-16s %-12s %s\n", "SETTING", "TYPE", "DEFAULT", "DOC");
	for (; table != NULL && table->name != NULL; table++) {
		printf("%-26s %-16s %-12s %s%s\n", table->name,
		       type_name(table->type),
		       table->default_value != NULL ? table->default_value
						    : "-",
		       table->required ? "(required) " : "", table->doc);
	}
}

/* Accessors handed to modules through the services table. Settings were
 * validated against the table, so a key the table names is either set
 * with the right type or absent without a default. */
static const config_setting_t *
member(const struct postern_conf *conf, const char *name)
{
	return conf != NULL && conf->group != NULL
		       ? config_setting_get_member(conf->group, name)
		       : NULL;
}

const char *
conf_get_string(const struct postern_conf *conf, const char *name)
{
	const config_setting_t *s = member(conf, name);

	return s != NULL ? config_setting_get_string(s) : NULL;
}

long long
conf_get_int(const struct postern_conf *conf, const char *name)
{
	const config_setting_t *s = member(conf, name);

	return s != NULL ? config_setting_get_int64(s) : 0;
}

int
conf_get_bool(const struct postern_conf *conf, const char *name)
{
	const config_setting_t *s = member(conf, name);

	return s != NULL ? config_setting_get_bool(s) : 0;
}

size_t
conf_get_list_count(const struct postern_conf *conf, const char *name)
{
	const config_setting_t *s = member(conf, name);

	return s != NULL ? (size_t)config_setting_length(s) : 0;
}

const char *
conf_get_list_item(const struct postern_conf *conf, const char *name,
		   size_t i)
{
	const config_setting_t *s = member(conf, name);

	return s != NULL ? config_setting_get_string_elem(s, (int)i) : NULL;
}

const struct postern_setting *
conf_server_settings(void)
{
	return server_settings;
}
