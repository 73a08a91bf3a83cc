#ifndef POSTERN_CONF_H
#define POSTERN_CONF_H

#include <libconfig.h>
#include <stddef.h>
#include <sys/socket.h>

#include <postern/module.h>

/* What the core hands a module as its settings: its validated config group
 * (defaults filled in) and its table. */
struct postern_conf {
	config_setting_t *group;
	const struct postern_setting *table;
};

struct net_range {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct listen_conf {
	const char *name;
	int tls_mode; /* enum tls_mode */
	const char *address;
	int port;
	const char *file;
	int line;
};

struct loaded_module; /* modload.c */
struct tls_server;   /* tls.c */

/* One entry of auth, storage or commands: which module, with what. */
struct module_conf {
	const char *short_name;  /* "passwd" */
	char so_name[64];        /* "auth_passwd" */
	const char *file;
	int line;
	struct postern_conf settings;
	struct loaded_module *loaded;
	const struct postern_module *desc;
	void *state; /* from init() */
	int initialized;
};

struct command_entry {
	const struct postern_command *cmd;
	void *mod_state;
};

struct server_conf {
	config_t cfg; /* owns every string below */
	char *path;

	const char *hostname;
	const char *user;
	int idle_timeout;
	int login_timeout;
	int max_sessions;
	int max_sessions_per_ip;
	int max_auth_failures;
	int auth_failure_delay_ms;
	int max_protocol_errors;
	int spare_workers;
	int log_level;
	struct net_range *plain_nets;
	size_t n_plain_nets;

	struct listen_conf *listens;
	size_t n_listens;
	struct tls_server *tls; /* NULL: no tls group */
	const char *modules_dir;

	struct module_conf *auth;
	size_t n_auth;
	struct module_conf *storage;
	size_t n_storage;
	struct module_conf *cmds;
	size_t n_cmds;

	struct command_entry *commands; /* core + modules; NULL name ends */
	size_t n_commands;
};

/*
 * Reads and validates the config at path, loads and ABI-checks every module
 * it names, validates their settings and calls their init(). Every problem
 * is logged as "FILE:LINE: message"; returns NULL if there was any.
 */
struct server_conf *conf_load(const char *path);
/* Calls module fini()s and frees; clears *conf. */
void conf_free(struct server_conf **conf);
/* Prints the effective config (defaults filled in) to stdout. */
void conf_print(const struct server_conf *conf);
/* Prints a settings table as `postern --module-help` shows it. */
void conf_print_table(const struct postern_setting *table);

int net_range_parse(const char *str, struct net_range *range_r);
int net_range_match(const struct net_range *ranges, size_t count,
		    const struct sockaddr *sa);

/* The services table handed to modules (api.c). */
extern const struct postern_api postern_api;



/* Setting accessors behind the services table. */
const char *conf_get_string(const struct postern_conf *conf, const char *name);
long long conf_get_int(const struct postern_conf *conf, const char *name);
int conf_get_bool(const struct postern_conf *conf, const char *name);
size_t conf_get_list_count(const struct postern_conf *conf, const char *name);
const char *conf_get_list_item(const struct postern_conf *conf,
			       const char *name, size_t i);
/* The core's own table, for `postern --module-help server`. */
const struct postern_setting *conf_server_settings(void);
#endif
