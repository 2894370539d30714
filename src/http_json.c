/*
 * http_json.c - protobuf's JSON mapping (see http_json.h), driven by the
 * protobuf-c descriptors so that Saga, SagaEvent, ListResponse and the
 * requests all share one writer and one reader. Proto3 only: every field
 * is singular without presence, repeated, or a map (a repeated message of
 * a two-field "...Entry" type whose fields are key and value).
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "http_json.h"
#include "json.h"
#include "util.h"

#define MAX_NAME	128

void
http_json_name(const char *f, char *buf, size_t len)
{
	size_t o = 0;
	int up = 0;

	for (; *f != '\0' && o + 1 < len; f++) {
		if (*f == '_') {
			up = 1;
			continue;
		}
		buf[o++] = up && *f >= 'a' && *f <= 'z' ? (char)(*f - 32) : *f;
		up = 0;
	}
	buf[o] = '\0';
}

static int
is_map(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *d = f->descriptor;
	size_t n;

	if (f->type != PROTOBUF_C_TYPE_MESSAGE ||
	    f->label != PROTOBUF_C_LABEL_REPEATED || d == NULL ||
	    d->n_fields != 2)
		return 0;
	n = strlen(d->name);
	return n > 5 && strcmp(d->name + n - 5, "Entry") == 0 &&
	    strcmp(d->fields[0].name, "key") == 0 &&
	    strcmp(d->fields[1].name, "value") == 0;
}

/* --- the writer ------------------------------------------------------------ */

static void	write_msg(FILE *, const ProtobufCMessage *);

/* One value of field f stored at p. */
static void
write_value(FILE *fp, const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(fp, "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(fp, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(fp, "\"%" PRId64 "\"", *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(fp, "\"%" PRIu64 "\"", *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		fprintf(fp, "%.9g", (double)*(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		fprintf(fp, "%.17g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", fp);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);

		if (ev != NULL)
			json_write_string(fp, ev->name);
		else
			fprintf(fp, "%d", v);
		break;
	}
	case PROTOBUF_C_TYPE_STRING:
		json_write_string(fp, *(char *const *)p);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		size_t n;
		char *s = grpc_b64_encode(b->data, b->len, &n);

		json_write_stringn(fp, s, n);
		free(s);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

		if (m == NULL)
			fputs("null", fp);
		else
			write_msg(fp, m);
		break;
	}
	}
}

static size_t
value_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:
		return 4;
	}
}

static void
write_msg(FILE *fp, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	char name[MAX_NAME];

	fputc('{', fp);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *p = (const char *)m + f->offset;

		if (i > 0)
			fputc(',', fp);
		http_json_name(f->name, name, sizeof(name));
		json_write_string(fp, name);
		fputc(':', fp);
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			write_value(fp, f, p);
			continue;
		}
		{
			size_t n = *(const size_t *)((const char *)m +
			    f->quantifier_offset);
			const char *arr = *(char *const *)p;
			int map = is_map(f);

			fputc(map ? '{' : '[', fp);
			for (size_t k = 0; k < n; k++) {
				const void *e = arr + k * value_size(f);

				if (k > 0)
					fputc(',', fp);
				if (map) {
					const ProtobufCMessage *ent =
					    *(ProtobufCMessage *const *)e;
					const ProtobufCMessageDescriptor *ed =
					    f->descriptor;

					/* Keys are strings in JSON. */
					if (ed->fields[0].type ==
					    PROTOBUF_C_TYPE_STRING)
						write_value(fp, &ed->fields[0],
						    (const char *)ent +
						    ed->fields[0].offset);
					else {
						fputc('"', fp);
						write_value(fp, &ed->fields[0],
						    (const char *)ent +
						    ed->fields[0].offset);
						fputc('"', fp);
					}
					fputc(':', fp);
					write_value(fp, &ed->fields[1],
					    (const char *)ent +
					    ed->fields[1].offset);
				} else
					write_value(fp, f, e);
			}
			fputc(map ? '}' : ']', fp);
		}
	}
	fputc('}', fp);
}

void
http_json_write(FILE *fp, const ProtobufCMessage *m)
{
	write_msg(fp, m);
}

/* --- the reader ------------------------------------------------------------ */

static ProtobufCMessage *read_msg(const ProtobufCMessageDescriptor *,
	    const struct json_value *, const char *path, char *err,
	    size_t errlen);

static const char *
json_type_name(const struct json_value *v)
{
	static const char *names[] = { "null", "false", "true", "a number",
	    "a string", "an array", "an object" };

	return names[v->type];
}

/* One value of field f from v into p. */
static int
read_value(const ProtobufCFieldDescriptor *f, const struct json_value *v,
    void *p, const char *path, char *err, size_t errlen)
{
	long long ll;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (json_int(v, INT32_MIN, INT32_MAX, &ll) == -1)
			goto bad_int;
		*(int32_t *)p = (int32_t)ll;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (json_int(v, 0, UINT32_MAX, &ll) == -1)
			goto bad_int;
		*(uint32_t *)p = (uint32_t)ll;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (json_int(v, f->type == PROTOBUF_C_TYPE_UINT64 ||
		    f->type == PROTOBUF_C_TYPE_FIXED64 ? 0 : INT64_MIN,
		    INT64_MAX, &ll) == -1)
			goto bad_int;
		*(int64_t *)p = (int64_t)ll;
		return 0;
	case PROTOBUF_C_TYPE_BOOL:
		if (v->type != JSON_TRUE && v->type != JSON_FALSE) {
			snprintf(err, errlen, "%s: expected true or false, "
			    "got %s", path, json_type_name(v));
			return -1;
		}
		*(protobuf_c_boolean *)p = v->type == JSON_TRUE;
		return 0;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *ev = NULL;

		if (v->type == JSON_STRING)
			ev = protobuf_c_enum_descriptor_get_value_by_name(
			    f->descriptor, v->s);
		else if (json_int(v, INT32_MIN, INT32_MAX, &ll) == 0)
			ev = protobuf_c_enum_descriptor_get_value(
			    f->descriptor, (int)ll);
		if (ev == NULL) {
			const ProtobufCEnumDescriptor *ed = f->descriptor;

			snprintf(err, errlen, "%s: expected a value of %s "
			    "(%s...)", path, ed->name, ed->n_values > 1 ?
			    ed->values[1].name : "");
			return -1;
		}
		*(int *)p = ev->value;
		return 0;
	}
	case PROTOBUF_C_TYPE_STRING:
		if (v->type != JSON_STRING || strlen(v->s) != v->slen) {
			snprintf(err, errlen, "%s: expected a string without "
			    "NUL, got %s", path, json_type_name(v));
			return -1;
		}
		*(char **)p = util_xstrdup(v->s);
		return 0;
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = p;
		uint8_t *out;
		size_t n;

		if (v->type != JSON_STRING ||
		    grpc_b64_decode(v->s, v->slen, &out, &n) == -1) {
			snprintf(err, errlen, "%s: expected base64 bytes", path);
			return -1;
		}
		b->data = out;
		b->len = n;
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		ProtobufCMessage *m = read_msg(f->descriptor, v, path, err,
		    errlen);

		if (m == NULL)
			return -1;
		*(ProtobufCMessage **)p = m;
		return 0;
	}
	default:
		snprintf(err, errlen, "%s: a type this API does not read",
		    path);
		return -1;
	}
bad_int:
	snprintf(err, errlen, "%s: expected an integer in range (a number "
	    "or a string of digits)", path);
	return -1;
}

static const ProtobufCFieldDescriptor *
field_by_json(const ProtobufCMessageDescriptor *d, const char *key)
{
	char name[MAX_NAME];

	for (unsigned i = 0; i < d->n_fields; i++) {
		http_json_name(d->fields[i].name, name, sizeof(name));
		if (strcmp(name, key) == 0 ||
		    strcmp(d->fields[i].name, key) == 0)
			return &d->fields[i];
	}
	return NULL;
}

static int
read_repeated(const ProtobufCFieldDescriptor *f, const struct json_value *v,
    ProtobufCMessage *m, const char *path, char *err, size_t errlen)
{
	size_t *np = (size_t *)((char *)m + f->quantifier_offset);
	char **arrp = (char **)((char *)m + f->offset);
	size_t sz = value_size(f);
	char sub[300];
	int map = is_map(f);

	if (v->type != (map ? JSON_OBJECT : JSON_ARRAY)) {
		snprintf(err, errlen, "%s: expected %s, got %s", path,
		    map ? "an object" : "an array", json_type_name(v));
		return -1;
	}
	if (v->n == 0)
		return 0;
	*arrp = util_xcalloc(v->n, sz);
	for (size_t k = 0; k < v->n; k++) {
		const struct json_value *e = &v->items[k];

		if (!map) {
			snprintf(sub, sizeof(sub), "%.200s[%zu]", path, k);
			if (read_value(f, e, *arrp + k * sz, sub, err,
			    errlen) == -1)
				return -1;
			(*np)++;
			continue;
		}
		{
			const ProtobufCMessageDescriptor *ed = f->descriptor;
			ProtobufCMessage *ent = util_xcalloc(1,
			    ed->sizeof_message);
			struct json_value key;

			ed->message_init(ent);
			((ProtobufCMessage **)(void *)*arrp)[k] = ent;
			(*np)++;
			snprintf(sub, sizeof(sub), "%.200s.%.64s", path, e->key);
			memset(&key, 0, sizeof(key));
			key.type = JSON_STRING;
			key.s = e->key;
			key.slen = e->keylen;
			if (read_value(&ed->fields[0], &key, (char *)ent +
			    ed->fields[0].offset, sub, err, errlen) == -1 ||
			    read_value(&ed->fields[1], e, (char *)ent +
			    ed->fields[1].offset, sub, err, errlen) == -1)
				return -1;
		}
	}
	return 0;
}

static ProtobufCMessage *
read_msg(const ProtobufCMessageDescriptor *d, const struct json_value *v,
    const char *path, char *err, size_t errlen)
{
	ProtobufCMessage	*m;
	char			 sub[300];

	if (v->type != JSON_OBJECT) {
		snprintf(err, errlen, "%s: expected an object, got %s",
		    *path ? path : "body", json_type_name(v));
		return NULL;
	}
	m = util_xcalloc(1, d->sizeof_message);
	d->message_init(m);
	for (size_t i = 0; i < v->n; i++) {
		const struct json_value *e = &v->items[i];
		const ProtobufCFieldDescriptor *f;

		snprintf(sub, sizeof(sub), "%.200s%s%.64s", path,
		    *path ? "." : "", e->key);
		if (strlen(e->key) != e->keylen ||
		    (f = field_by_json(d, e->key)) == NULL) {
			snprintf(err, errlen, "%s: unknown field of %s", sub,
			    d->name);
			goto bad;
		}
		if (e->type == JSON_NULL)
			continue;	/* null: the default */
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			if (read_repeated(f, e, m, sub, err, errlen) == -1)
				goto bad;
		} else {
			void *p = (char *)m + f->offset;

			/* A field named twice (name and jsonName). */
			if (f->type == PROTOBUF_C_TYPE_STRING &&
			    *(char **)p != NULL &&
			    (const void *)*(char **)p != f->default_value &&
			    **(char **)p != '\0') {
				snprintf(err, errlen, "%s: given twice", sub);
				goto bad;
			}
			if (read_value(f, e, p, sub, err, errlen) == -1)
				goto bad;
		}
	}
	return m;
bad:
	protobuf_c_message_free_unpacked(m, NULL);
	return NULL;
}

ProtobufCMessage *
http_json_read(const ProtobufCMessageDescriptor *d, const struct json_value *v,
    char *err, size_t errlen)
{
	return read_msg(d, v, "", err, errlen);
}
