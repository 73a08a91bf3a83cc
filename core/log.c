#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static enum postern_log_level max_level = POSTERN_LOG_INFO;
static int journal_prefix;

static const char *const level_names[] = {
	[POSTERN_LOG_ERR] = "err",	 [POSTERN_LOG_WARNING] = "warning",
	[POSTERN_LOG_NOTICE] = "notice", [POSTERN_LOG_INFO] = "info",
	[POSTERN_LOG_DEBUG] = "debug",
};

/* journald sets JOURNAL_STREAM=dev:inode for the stream it gave us; only
 * then do priority prefixes help (elsewhere they would be noise). */
void
log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;

	journal_prefix = 0;
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return;
	if (fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev &&
	    st.st_ino == ino)
		journal_prefix = 1;
}

void
log_set_level(enum postern_log_level level)
{
	max_level = level;
}

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(*level_names);
	     i++) {
		if (level_names[i] != NULL && strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

void
postern_vlog(enum postern_log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t len = 0;
	int n;

	if (level > max_level)
		return;
	if (journal_prefix) {
		line[0] = '<';
		line[1] = (char)('0' + level);
		line[2] = '>';
		len = 3;
	}
	n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	if (n < 0)
		return;
	len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n
						  : sizeof(line) - len - 2;
	line[len++] = '\n';
	/* One write per line, so lines of concurrent workers never mix. */
	if (write(STDERR_FILENO, line, len) < 0) {
		/* nowhere left to report it */
	}
	explicit_bzero(line, sizeof(line));
}

void
postern_log(enum postern_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	postern_vlog(level, fmt, ap);
	va_end(ap);
}

const char *
log_safe(char *buf, size_t size, const char *str)
{
	size_t i;

	for (i = 0; str[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)str[i];
		buf[i] = (c <= 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[i] = '\0';
	return buf;
}
