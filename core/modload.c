#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modload.h"

int
modload_check(const struct postern_module *desc, const char *path,
	      const char *expected_name, char *err, size_t err_size)
{
	if (desc->abi_major != POSTERN_ABI_MAJOR ||
	    desc->abi_minor > POSTERN_ABI_MINOR) {
		snprintf(err, err_size,
			 "%s: module is for ABI version %u.%u (we have %u.%u)",
			 path, desc->abi_major, desc->abi_minor,
			 POSTERN_ABI_MAJOR, POSTERN_ABI_MINOR);
		return -1;
	}
	if (desc->struct_size < offsetof(struct postern_module, reserved)) {
		snprintf(err, err_size,
			 "%s: module descriptor too small (%u bytes)", path,
			 desc->struct_size);
		return -1;
	}
	if (desc->name == NULL ||
	    (expected_name != NULL && strcmp(desc->name, expected_name) != 0)) {
		snprintf(err, err_size,
			 "%s: module calls itself '%s', expected '%s'", path,
			 desc->name != NULL ? desc->name : "(null)",
			 expected_name != NULL ? expected_name : "?");
		return -1;
	}
	for (size_t i = 0; i < sizeof(desc->reserved) / sizeof(*desc->reserved);
	     i++) {
		if (desc->reserved[i] != NULL) {
			snprintf(err, err_size,
				 "%s: module sets reserved fields", path);
			return -1;
		}
	}
	if (desc->auth == NULL && desc->storage == NULL &&
	    desc->commands == NULL) {
		snprintf(err, err_size,
			 "%s: module provides no auth, storage or commands",
			 path);
		return -1;
	}
	return 0;
}

int
modload_open(const char *path, const char *expected_name,
	     struct loaded_module **mod_r, char *err, size_t err_size)
{
	const struct postern_module *desc;
	struct loaded_module *mod;
	size_t size;
	void *dl;

	*mod_r = NULL;
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		snprintf(err, err_size, "cannot load module: %s", dlerror());
		return -1;
	}
	desc = dlsym(dl, "postern_module");
	if (desc == NULL) {
		snprintf(err, err_size,
			 "%s: not a postern module (no postern_module symbol)",
			 path);
		dlclose(dl);
		return -1;
	}
	mod = calloc(1, sizeof(*mod));
	if (mod == NULL) {
		snprintf(err, err_size, "%s: out of memory", path);
		dlclose(dl);
		return -1;
	}
	/* Read the header first: struct_size is only trusted after the ABI
	 * version says the layout is ours. */
	memcpy(&mod->desc, desc, offsetof(struct postern_module, name));
	size = desc->struct_size < sizeof(mod->desc) ? desc->struct_size
						     : sizeof(mod->desc);
	if (mod->desc.abi_major == POSTERN_ABI_MAJOR &&
	    mod->desc.abi_minor <= POSTERN_ABI_MINOR)
		memcpy(&mod->desc, desc, size);
	if (modload_check(&mod->desc, path, expected_name, err, err_size) < 0) {
		free(mod);
		dlclose(dl);
		return -1;
	}
	mod->dl = dl;
	snprintf(mod->path, sizeof(mod->path), "%s", path);
	*mod_r = mod;
	return 0;
}

void
modload_close(struct loaded_module **mod)
{
	if (*mod == NULL)
		return;
	dlclose((*mod)->dl);
	free(*mod);
	*mod = NULL;
}

const char *
modload_kind(const struct postern_module *desc)
{
	static const char *const kinds[8] = {
		"none",		   "auth",	      "storage",
		"auth+storage",	   "command",	      "auth+command",
		"storage+command", "auth+storage+command",
	};

	return kinds[(desc->auth != NULL) | (desc->storage != NULL) << 1 |
		     (desc->commands != NULL) << 2];
}

static int
is_module_file(const char *name)
{
	size_t len = strlen(name);

	return len > 3 && strcmp(name + len - 3, ".so") == 0;
}

int
modload_list(const char *dir)
{
	struct dirent **names;
	int n, ret = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: cannot list modules: %s\n", dir,
			strerror(errno));
		return 1;
	}
	printf("%-8s %-20s %-10s %s\n", "KIND", "NAME", "VERSION", "ABI");
	for (int i = 0; i < n; i++) {
		char path[4096], err[512];
		struct loaded_module *mod;

		if (is_module_file(names[i]->d_name)) {
			snprintf(path, sizeof(path), "%s/%s", dir,
				 names[i]->d_name);
			if (modload_open(path, NULL, &mod, err, sizeof(err)) <
			    0) {
				fprintf(stderr, "%s\n", err);
				ret = 1;
			} else {
				printf("%-8s %-20s %-10s %u.%u\n",
				       modload_kind(&mod->desc), mod->desc.name,
				       mod->desc.version != NULL
					       ? mod->desc.version
					       : "-",
				       mod->desc.abi_major,
				       mod->desc.abi_minor);
				modload_close(&mod);
			}
		}
		free(names[i]);
	}
	free(names);
	return ret;
}
