/*
 * fuzz_config.c - a libFuzzer target for the configuration loader: each
 * input is written to a file and loaded as sagad -t would load it; a config
 * that loads is also reloaded against itself and freed. @include is part of
 * the language, so inputs may name other files; the loader bounds what it
 * reads.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static char err[CONFIG_ERRLEN];
	struct config *cfg;
	FILE *fp;

	if (path[0] == '\0') {
		int fd;

		snprintf(path, sizeof(path), "/tmp/fuzz_config.XXXXXX");
		if ((fd = mkstemp(path)) == -1)
			return 0;
		close(fd);
	}
	if ((fp = fopen(path, "w")) == NULL)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	cfg = config_load(path, "pod-f", err, sizeof(err));
	if (cfg != NULL) {
		struct config_topic *t = NULL;

		(void)config_topics(cfg, &t);
		free(t);
		(void)config_reload_check(cfg, cfg, err, sizeof(err));
		config_free(cfg);
	}
	return 0;
}
