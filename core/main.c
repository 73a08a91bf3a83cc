#include <getopt.h>
#include <libconfig.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "modload.h"
#include "privdrop.h"
#include "worker.h"

#ifndef POSTERN_CONFIG
#define POSTERN_CONFIG "/etc/postern/postern.conf"
#endif
#ifndef POSTERN_MODULES_DIR
#define POSTERN_MODULES_DIR "/usr/local/lib/postern/modules"
#endif
#ifndef POSTERN_VERSION
#define POSTERN_VERSION "0"
#endif

static void
block_signals(void)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: postern [-c FILE] [-t | -n | --inetd]\n"
		"       postern [-c FILE] --modules\n"
		"       postern [-c FILE] --module-help NAME\n"
		"  -c, --config FILE     configuration (default %s)\n"
		"  -t, --test            check the configuration and modules, "
		"then exit\n"
		"  -n, --print           print the effective configuration\n"
		"      --inetd           serve one session on stdin/stdout\n"
		"      --modules         list the modules in modules_dir\n"
		"      --module-help NAME  print a module's settings\n"
		"  -V, --version         print the version\n",
		POSTERN_CONFIG);
}

/* modules_dir from the config, read leniently: --modules must work even
 * when the config names a module that does not load. */
static char *
modules_dir_of(const char *path, int explicit_path)
{
	config_t cfg;
	const char *dir = NULL;
	char *ret;

	config_init(&cfg);
	if (config_read_file(&cfg, path) == CONFIG_TRUE)
		config_lookup_string(&cfg, "modules_dir", &dir);
	else if (explicit_path)
		fprintf(stderr, "%s:%d: %s (using the default modules_dir)\n",
			path, config_error_line(&cfg), config_error_text(&cfg));
	ret = strdup(dir != NULL ? dir : POSTERN_MODULES_DIR);
	config_destroy(&cfg);
	return ret;
}

static int
module_help(const char *dir, const char *name)
{
	static const char *const prefixes[] = { "", "auth_", "storage_",
						"cmd_" };
	char path[4096], err[1024];
	struct loaded_module *mod;

	if (strcmp(name, "server") == 0) {
		printf("server: the core's settings (group 'server')\n");
		conf_print_table(conf_server_settings());
		return 0;
	}
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++) {
		snprintf(path, sizeof(path), "%s/%s%s.so", dir, prefixes[i],
			 name);
		if (access(path, F_OK) < 0)
			continue;
		if (modload_open(path, NULL, &mod, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		printf("%s %s (%s): %s\n", mod->desc.name,
		       mod->desc.version != NULL ? mod->desc.version : "-",
		       modload_kind(&mod->desc),
		       mod->desc.description != NULL ? mod->desc.description
						     : "");
		conf_print_table(mod->desc.settings);
		for (const struct postern_command *c = mod->desc.commands;
		     c != NULL && c->name != NULL; c++)
			printf("command %s: %u-%u arguments%s%s\n", c->name,
			       c->min_args, c->max_args,
			       c->capa != NULL ? ", CAPA " : "",
			       c->capa != NULL ? c->capa : "");
		modload_close(&mod);
		return 0;
	}
	fprintf(stderr, "no module '%s' in %s\n", name, dir);
	return 1;
}

static int
serve(const char *path)
{
	struct server_conf *conf = conf_load(path);
	struct listener *listeners;
	size_t n_listeners;
	const char *error;

	if (conf == NULL)
		return 1;
	log_set_level((enum postern_log_level)conf->log_level);
	if (listen_open(conf, &listeners, &n_listeners) < 0) {
		conf_free(&conf);
		return 1;
	}
	if (conf->user != NULL && geteuid() == 0 &&
	    privdrop_daemon(conf->user, &error) < 0) {
		log_err("%s: server.user %s: %s", path, conf->user, error);
		conf_free(&conf);
		return 1;
	}
	return master_run(&conf, path, listeners, n_listeners);
}

static int
serve_inetd(const char *path)
{
	struct server_conf *conf = conf_load(path);
	const char *error;
	sigset_t none;
	int ret;

	if (conf == NULL)
		return 1;
	log_set_level((enum postern_log_level)conf->log_level);
	if (conf->user != NULL && geteuid() == 0 &&
	    privdrop_daemon(conf->user, &error) < 0) {
		log_err("%s: server.user %s: %s", path, conf->user, error);
		conf_free(&conf);
		return 1;
	}
	/* No master here: SIGTERM ends the session (without UPDATE). */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	ret = worker_inetd(conf);
	conf_free(&conf);
	return ret;
}

int
main(int argc, char **argv)
{
	enum { OPT_INETD = 256, OPT_MODULES, OPT_MODULE_HELP };
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "print", no_argument, NULL, 'n' },
		{ "inetd", no_argument, NULL, OPT_INETD },
		{ "modules", no_argument, NULL, OPT_MODULES },
		{ "module-help", required_argument, NULL, OPT_MODULE_HELP },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = POSTERN_CONFIG, *help_name = NULL;
	int opt, test = 0, print = 0, inetd = 0, list = 0, explicit_path = 0;

	log_init();
	/* Until the master's signalfd exists, a SIGHUP or SIGTERM (a reload
	 * right after start) must wait, not kill: block them now, before
	 * any socket is bound. The master reads them from the signalfd. */
	block_signals();
	while ((opt = getopt_long(argc, argv, "c:tnVh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			explicit_path = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'n':
			print = 1;
			break;
		case OPT_INETD:
			inetd = 1;
			break;
		case OPT_MODULES:
			list = 1;
			break;
		case OPT_MODULE_HELP:
			help_name = optarg;
			break;
		case 'V':
			printf("postern %s (module ABI %d.%d)\n",
			       POSTERN_VERSION, POSTERN_ABI_MAJOR,
			       POSTERN_ABI_MINOR);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (list || help_name != NULL) {
		char *dir = modules_dir_of(path, explicit_path);
		int ret = dir == NULL ? 1
			  : list      ? modload_list(dir)
				      : module_help(dir, help_name);
		free(dir);
		return ret;
	}
	if (test || print) {
		struct server_conf *conf = conf_load(path);

		if (conf == NULL)
			return 1;
		if (print)
			conf_print(conf);
		else
			fprintf(stderr, "%s: configuration ok\n", path);
		conf_free(&conf);
		return 0;
	}
	return inetd ? serve_inetd(path) : serve(path);
}
