/*
 * h2.h - what the gRPC server and client share of nghttp2: small inline
 * helpers, no state. Internal to src/grpc.
 */
#ifndef SAGAD_GRPC_H2_H
#define SAGAD_GRPC_H2_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

/*
 * nghttp2_nv takes non-const pointers it never writes through; going through
 * uintptr_t says so without a cast-qual warning.
 */
static inline void
grpc_nv_set(nghttp2_nv *nv, const char *name, size_t namelen,
    const void *value, size_t valuelen)
{
	nv->name = (uint8_t *)(uintptr_t)name;
	nv->namelen = namelen;
	nv->value = (uint8_t *)(uintptr_t)value;
	nv->valuelen = valuelen;
	nv->flags = NGHTTP2_NV_FLAG_NONE;
}

#endif
