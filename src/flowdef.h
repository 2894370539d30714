/*
 * flowdef.h - a flow's definition as a saga starts with it, so that a
 * reload (or another pod's configuration) never changes a saga in flight.
 * A definition is packed as proto/sagad/v1/work.proto's FlowDef; its
 * version is the FNV-1a 64 of those bytes in 16 hex digits, which every
 * config_flow carries (config.c) and every saga records (saga.h). Masters
 * store each version once (saga:def:<version>, store.h); whoever drives a
 * saga whose version its configuration no longer has asks for it and
 * drives the saga on a view made from it.
 *
 * Core: no I/O. What it is not: the fetching and caching of definitions
 * (the engines do it), nor the routing of such a saga's work (work.h's
 * legacy topic).
 */
#ifndef SAGAD_FLOWDEF_H
#define SAGAD_FLOWDEF_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The packed definition of flow (malloc'd). */
uint8_t		*flowdef_pack(const struct config *, const struct config_flow *,
		    size_t *len);

/* The version of a packed definition: 16 hex digits and a NUL. */
void		 flowdef_version(const uint8_t *, size_t,
		    char out[CONFIG_VERSION_LEN + 1]);

/* Sets every flow's version (the loader calls it on a whole config). */
void		 flowdef_version_all(struct config *);

/*
 * A view of base with the one flow of the packed definition (named and
 * versioned as it was), its nodes as defined then, and its services: base's
 * own by name when base still has them (an address may move), else as
 * defined then. The view holds a reference on base; config_free() frees
 * it. NULL with err when the bytes are not a FlowDef.
 */
struct config	*flowdef_view(struct config *base, const uint8_t *, size_t,
		    char *err, size_t errlen);

/* Hex of bytes (malloc'd), and back: NULL when s is not even-length hex. */
char		*flowdef_hex(const uint8_t *, size_t);
uint8_t		*flowdef_unhex(const char *s, size_t *len);

#endif
