/*
 * config_scan.c - the scan of a configuration file's text for integer
 * literals that libconfig 1.5 reads wrong (see below), so that the loader
 * can refuse them instead of using what atoi() made of them; and the
 * bounded read of a file's text that the scan and the loader share.
 *
 * It is not a parser: it runs only on text libconfig accepted, and it finds
 * nothing but those literals, each with its dotted key and line. Deciding
 * what they mean is config.c's.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "util.h"

#define CONFIG_FILE_MAX	(16 * 1024 * 1024)	/* bytes read of one file */

/*
 * libconfig 1.5 reads an integer literal without an L suffix with atoi():
 * 99999999999 silently becomes 1215752191. The parsed tree cannot tell, so
 * the file's text is scanned for integer literals that do not fit 32 bits,
 * each remembered with the dotted key it is the value of and the line of that
 * key's name, which is the line libconfig gives the setting. The scan runs
 * only on text libconfig accepted, so it can be lenient about syntax.
 */

#define SCAN_DEPTH	32

struct scan {
	struct loader	*l;
	const char	*file;		/* the name libconfig gives it */
	const char	*stack[SCAN_DEPTH];	/* "" for arrays and lists */
	size_t		 stacklen[SCAN_DEPTH];
	int		 depth;
	const char	*name;		/* a name followed by = or : */
	size_t		 namelen;
	int		 nameline;
};

static void	scan_run(struct scan *, const char *, int);

/*
 * The text of the file at path, NUL-ended, to free; NULL with why when it
 * cannot be read or is larger than CONFIG_FILE_MAX.
 */
char *
config_file_text(const char *path, char *why, size_t len)
{
	FILE	*fp;
	char	*buf = NULL;
	size_t	 n = 0, cap = 0, r;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(why, len, "cannot open: %s", strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = util_xrealloc(buf, cap);
		}
		r = fread(buf + n, 1, cap - n - 1, fp);
		n += r;
		if (r == 0)
			break;
		/* A device named by @include must not make us read forever. */
		if (n > CONFIG_FILE_MAX) {
			snprintf(why, len, "larger than %d MiB",
			    CONFIG_FILE_MAX / (1024 * 1024));
			fclose(fp);
			free(buf);
			return NULL;
		}
	}
	if (ferror(fp)) {
		snprintf(why, len, "cannot read: %s", strerror(errno));
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

static void
scan_number(struct scan *sc, const char *tok, size_t n)
{
	struct overflow	*o;
	char		 lit[64], key[512];
	long long	 v;
	size_t		 kl = 0;
	int		 i, hex;
	char		*end;

	if (n >= sizeof(lit) || sc->name == NULL)
		return;
	memcpy(lit, tok, n);
	lit[n] = '\0';
	if (lit[n - 1] == 'L')
		return;			/* 64 bits: libconfig reads it right */
	hex = strncmp(lit, "0x", 2) == 0 || strncmp(lit, "0X", 2) == 0;
	if (!hex && strpbrk(lit, ".eE") != NULL)
		return;			/* a float */
	errno = 0;
	v = strtoll(lit, &end, hex ? 16 : 10);
	if (*end != '\0' || (errno == 0 && v >= INT_MIN && v <= INT_MAX))
		return;
	for (i = 0; i < sc->depth; i++) {
		if (sc->stacklen[i] == 0)
			return;		/* inside an array: no key of ours */
		kl += snprintf(key + kl, sizeof(key) - kl, "%.*s.",
		    (int)sc->stacklen[i], sc->stack[i]);
		if (kl >= sizeof(key))
			return;
	}
	snprintf(key + kl, sizeof(key) - kl, "%.*s", (int)sc->namelen,
	    sc->name);
	sc->l->ovf = util_xrealloc(sc->l->ovf,
	    (sc->l->novf + 1) * sizeof(*sc->l->ovf));
	o = &sc->l->ovf[sc->l->novf++];
	o->file = util_xstrdup(sc->file);
	o->line = sc->nameline;
	o->key = util_xstrdup(key);
	o->text = util_xstrdup(lit);
}

static void
scan_include(struct scan *sc, const char *name, size_t n, int level)
{
	struct scan	 child;
	char		 file[PATH_MAX], full[PATH_MAX * 2], why[128];
	char		*text;

	if (n >= sizeof(file) || level > 10)
		return;
	memcpy(file, name, n);
	file[n] = '\0';
	snprintf(full, sizeof(full), "%s/%s", sc->l->dir, file);
	if ((text = config_file_text(full, why, sizeof(why))) == NULL)
		return;
	/* Included text continues the including file's nesting. */
	child = *sc;
	child.file = file;
	child.name = NULL;
	scan_run(&child, text, level + 1);
	free(text);
}

static void
scan_run(struct scan *sc, const char *p, int level)
{
	int line = 1;

	while (*p != '\0') {
		const char *t = p;

		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r' ||
		    *p == '\f' || *p == '\v') {
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p != '\0' && !(p[0] == '*' &&
			    p[1] == '/'); p++)
				if (*p == '\n')
					line++;
			if (*p != '\0')
				p += 2;
		} else if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				if (*p == '\n')
					line++;
			}
			if (*p != '\0')
				p++;
			sc->name = NULL;
		} else if (*p == '@') {
			/* @include "file" */
			while (*p != '\0' && *p != '"' && *p != '\n')
				p++;
			if (*p == '"') {
				t = ++p;
				while (*p != '\0' && *p != '"' && *p != '\n')
					p++;
				scan_include(sc, t, p - t, level);
				if (*p == '"')
					p++;
			}
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
		    *p <= 'Z') || *p == '*') {
			while (config_is_token_char(*p) || *p == '*')
				p++;
			sc->name = t;
			sc->namelen = p - t;
			sc->nameline = line;
		} else if ((*p >= '0' && *p <= '9') || ((*p == '-' ||
		    *p == '+' || *p == '.') && p[1] != '\0')) {
			p++;
			while ((*p >= '0' && *p <= '9') || (*p >= 'a' &&
			    *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    *p == '.' || ((*p == '-' || *p == '+') &&
			    (p[-1] == 'e' || p[-1] == 'E')))
				p++;
			scan_number(sc, t, p - t);
			sc->name = NULL;
		} else if (*p == '{' || *p == '[' || *p == '(') {
			if (sc->depth < SCAN_DEPTH) {
				int named = *p == '{' && sc->name != NULL;

				sc->stack[sc->depth] = named ? sc->name : "";
				sc->stacklen[sc->depth] = named ?
				    sc->namelen : 0;
			}
			sc->depth++;
			sc->name = NULL;
			p++;
		} else if (*p == '}' || *p == ']' || *p == ')') {
			if (sc->depth > 0)
				sc->depth--;
			sc->name = NULL;
			p++;
		} else if (*p == '=' || *p == ':') {
			p++;			/* the name stays pending */
		} else {
			sc->name = NULL;	/* ; , and the rest */
			p++;
		}
	}
}

/*
 * Scans text, the file libconfig names file, into l's overflows; included
 * files are read from l's directory.
 */
void
config_scan(struct loader *l, const char *file, const char *text)
{
	struct scan	sc;

	memset(&sc, 0, sizeof(sc));
	sc.l = l;
	sc.file = file;
	scan_run(&sc, text, 0);
}

/* The overflow the scan found for the setting s of that key, if any. */
const struct overflow *
config_overflow_find(struct loader *l, const config_setting_t *s,
    const char *key)
{
	const char	*f = config_setting_source_file(s);
	int		 line = config_setting_source_line(s);

	for (size_t i = 0; i < l->novf; i++)
		if (l->ovf[i].line == line && strcmp(l->ovf[i].key, key) == 0 &&
		    (f == NULL || strcmp(l->ovf[i].file, f) == 0))
			return &l->ovf[i];
	return NULL;
}
