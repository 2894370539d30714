/*
 * idtable.h - a hash table of objects by saga id, for the master's sagas in
 * flight and its held throttling calls. Intrusive: an object embeds a
 * struct idtable_entry whose id points at its own copy of the id, so the
 * table allocates nothing per entry. It grows by doubling; it never
 * shrinks. Not thread-safe: the loop thread only.
 */
#ifndef SAGAD_IDTABLE_H
#define SAGAD_IDTABLE_H

#include <stddef.h>

struct idtable_entry {
	const char		*id;	/* the owner's; set before add */
	struct idtable_entry	*next;
	int			 in;	/* in a table now */
};

struct idtable {
	struct idtable_entry	**b;
	size_t			  size;	/* buckets, a power of two */
	size_t			  n;
};

/* The object that embeds entry e as its member field. */
#define IDTABLE_ITEM(e, type, field) \
	((type *)(void *)((char *)(e) - offsetof(type, field)))

void	idtable_init(struct idtable *, size_t size);	/* a power of two */
void	idtable_free(struct idtable *);	/* the entries are the caller's */
struct idtable_entry *idtable_find(const struct idtable *, const char *id);
void	idtable_add(struct idtable *, struct idtable_entry *);
void	idtable_del(struct idtable *, struct idtable_entry *); /* if in */

#endif
