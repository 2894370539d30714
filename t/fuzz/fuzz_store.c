/*
 * fuzz_store.c - a libFuzzer target for the Redis record parsing of the
 * store: the input is what Redis would send (RESP), read by hiredis's own
 * reader as the store's connection does; each reply is parsed as a saga
 * hash (store_parse_hash) and, when that works, turned into a struct saga as
 * Get, Run's join and recovery do.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "saga.h"
#include "store.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = redisReaderCreate();
	void *reply;
	int n = 0;

	if (rd == NULL)
		return 0;
	redisReaderFeed(rd, (const char *)data, size);
	while (n++ < 64 && redisReaderGetReply(rd, &reply) == REDIS_OK &&
	    reply != NULL) {
		struct store_saga rec;
		char err[256];

		if (store_parse_hash(reply, &rec, err, sizeof(err)) == 0) {
			struct saga *s = saga_from_pb(rec.saga);

			saga_free(s);
			saga__v1__saga__free_unpacked(rec.saga, NULL);
		}
		freeReplyObject(reply);
	}
	redisReaderFree(rd);
	return 0;
}
