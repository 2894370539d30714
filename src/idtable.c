/*
 * idtable.c - a hash table of objects by saga id (see idtable.h): FNV-1a,
 * chained buckets, doubled when the entries outnumber them.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idtable.h"
#include "util.h"

static uint64_t
hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void
idtable_init(struct idtable *t, size_t size)
{
	t->size = size;
	t->n = 0;
	t->b = util_xcalloc(size, sizeof(*t->b));
}

void
idtable_free(struct idtable *t)
{
	free(t->b);
	t->b = NULL;
	t->size = t->n = 0;
}

struct idtable_entry *
idtable_find(const struct idtable *t, const char *id)
{
	struct idtable_entry *e = t->b[hash_id(id) & (t->size - 1)];

	for (; e != NULL; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void
grow(struct idtable *t)
{
	size_t			  nsize = t->size * 2, b;
	struct idtable_entry	**nb = util_xcalloc(nsize, sizeof(*nb));

	for (size_t i = 0; i < t->size; i++) {
		struct idtable_entry *e = t->b[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			b = hash_id(e->id) & (nsize - 1);
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(t->b);
	t->b = nb;
	t->size = nsize;
}

void
idtable_add(struct idtable *t, struct idtable_entry *e)
{
	size_t b;

	if (t->n + 1 > t->size)
		grow(t);
	b = hash_id(e->id) & (t->size - 1);
	e->next = t->b[b];
	t->b[b] = e;
	e->in = 1;
	t->n++;
}

void
idtable_del(struct idtable *t, struct idtable_entry *e)
{
	struct idtable_entry **pp;

	if (!e->in)
		return;
	for (pp = &t->b[hash_id(e->id) & (t->size - 1)]; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	e->in = 0;
	t->n--;
}
