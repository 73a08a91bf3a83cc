/*
 * postern module ABI: the one header a third-party module includes.
 *
 * A module is a shared object named <kind>_<name>.so that exports exactly
 * one symbol, `postern_module`, a struct postern_module. The core dlopens
 * it with RTLD_NOW|RTLD_LOCAL, checks the ABI version before touching
 * anything else, validates the module's settings from its table, then
 * calls init() once in the master before any socket is opened.
 *
 * ABI change log (append only; bump MINOR for additions at the end of a
 * struct, MAJOR for anything else):
 *   1.0  2026-11-23  first public ABI.
 *   1.1  2026-11-23  api->scratch (per-call scratch memory).
 */
#ifndef POSTERN_MODULE_H
#define POSTERN_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include <postern/api.h>
#include <postern/auth.h>
#include <postern/command.h>
#include <postern/storage.h>

#define POSTERN_ABI_MAJOR 1
#define POSTERN_ABI_MINOR 1

#define POSTERN_EXPORT __attribute__((visibility("default")))

/* One row of a module's settings table; the table ends with a row whose
 * name is NULL. The core validates the config group against it (unknown
 * keys, wrong types, missing required keys are file:line errors) and
 * prints it for `postern --module-help NAME`. */
enum postern_setting_type {
	POSTERN_SETTING_STRING = 1,
	POSTERN_SETTING_INT,
	POSTERN_SETTING_BOOL,
	POSTERN_SETTING_STRING_LIST,
};

struct postern_setting {
	const char *name;
	enum postern_setting_type type;
	/* Default in config syntax ("600", "true", "/etc/x"); NULL: none. */
	const char *default_value;
	int required;
	const char *doc; /* one line */
};

struct postern_module {
	uint16_t abi_major;
	uint16_t abi_minor;
	uint16_t struct_size;
	uint16_t reserved0;

	/* Equals the .so basename without ".so": [a-z0-9_]+, e.g. "cmd_top". */
	const char *name;
	const char *version;
	const char *description;
	const struct postern_setting *settings; /* may be NULL */

	/*
	 * Called once in the master after the settings were validated.
	 * *mod_r is the module's private state, passed back to every op.
	 * Returns POSTERN_OK, or POSTERN_FAIL with a message in *error_r
	 * (read by the core before init returns, so a static buffer of the
	 * module will do), which makes `postern -t` and start-up fail naming
	 * the module; fini is not called then.
	 */
	int (*init)(const struct postern_api *api,
		    const struct postern_conf *conf, void **mod_r,
		    const char **error_r);
	/* Frees what init allocated; may be NULL. */
	void (*fini)(void *mod);

	/* Any of these; NULL when the module has none. */
	const struct postern_auth_ops *auth;
	const struct postern_storage_ops *storage;
	const struct postern_command *commands; /* ends with a NULL name */

	void *reserved[8]; /* must be NULL */
};

#define POSTERN_MODULE_HEADER                                               \
	.abi_major = POSTERN_ABI_MAJOR, .abi_minor = POSTERN_ABI_MINOR,     \
	.struct_size = sizeof(struct postern_module)

#endif
