#ifndef POSTERN_MODLOAD_H
#define POSTERN_MODLOAD_H

#include <stddef.h>

#include <postern/module.h>

struct loaded_module {
	void *dl;
	/* The descriptor as the core reads it: the module's struct_size bytes,
	 * the rest zero, so fields newer than the module read as absent. */
	struct postern_module desc;
	char path[4096];
};

/*
 * dlopens path (RTLD_NOW|RTLD_LOCAL), finds `postern_module` and checks
 * its ABI. On failure writes one line naming the file to err and returns
 * -1. The caller owns *mod_r and releases it with modload_close().
 */
int modload_open(const char *path, const char *expected_name,
		 struct loaded_module **mod_r, char *err, size_t err_size);
void modload_close(struct loaded_module **mod);
/* The ABI check alone (also used by the tests). 0 or -1 with err. */
int modload_check(const struct postern_module *desc, const char *path,
		  const char *expected_name, char *err, size_t err_size);
/* `postern --modules`: lists every module in dir. Returns 0, or 1 when
 * some file there is not a loadable module. */
int modload_list(const char *dir);
/* "auth", "storage", "command" or a combination, for listings. */
const char *modload_kind(const struct postern_module *desc);

#endif
