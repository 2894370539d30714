/*
 * http_json.h - protobuf's JSON mapping for the HTTP API: any protobuf-c
 * message written as JSON (lowerCamelCase names, enums by name, 64-bit
 * integers as strings, bytes as base64, maps as objects, every field
 * written, defaults included) and a JSON object read into a message of a
 * given type, strictly (unknown fields and wrong types are errors). It
 * knows no saga: the descriptors say everything. No I/O.
 */
#ifndef SAGAD_HTTP_JSON_H
#define SAGAD_HTTP_JSON_H

#include <stddef.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

struct json_value;

void	 http_json_write(FILE *, const ProtobufCMessage *);
/*
 * The message, to free with protobuf_c_message_free_unpacked(m, NULL), or
 * NULL with a sentence naming the field in err.
 */
ProtobufCMessage *http_json_read(const ProtobufCMessageDescriptor *,
	    const struct json_value *, char *err, size_t errlen);
/* "saga_id" -> "sagaId" into buf. */
void	 http_json_name(const char *field, char *buf, size_t len);

#endif
