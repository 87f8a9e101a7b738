/*
 * One string-keyed hash for the whole library: chained, over jw__list_t
 * bucket heads, intrusive like the list (an element embeds its node and
 * its key; nothing is allocated per element). The map doubles when it
 * holds as many elements as buckets; when that allocation fails it stays
 * as it is, only fuller, so inserting never fails. Keys are compared with
 * strcmp and hashed with FNV-1a.
 */
#ifndef JW_COMMON_STRMAP_H
#define JW_COMMON_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "list.h"

typedef struct {
  jw__list_t *buckets; /* a power of two of them */
  size_t nbuckets;
  size_t count;
  size_t node_off; /* where the element's jw__list_t node is */
  size_t key_off;  /* where its key is: a char array, or a char * */
  bool key_is_ptr;
} jw__strmap_t;

/*
 * An empty map of elements of type whose node is field node and whose key
 * is field key (a char array, or a char * with key_is_ptr). Returns 0 or
 * -ENOMEM.
 */
#define jw__strmap_init(m, type, node, key, key_is_ptr)                        \
  jw__strmap_init_at(m, offsetof(type, node), offsetof(type, key), key_is_ptr)
int jw__strmap_init_at(jw__strmap_t *m, size_t node_off, size_t key_off,
                       bool key_is_ptr);

/* Frees the buckets (not the elements). */
void jw__strmap_destroy(jw__strmap_t *m);

/* The node of the element with key, or NULL. */
jw__list_t *jw__strmap_find(const jw__strmap_t *m, const char *key);

/* Adds an element (its key unique in the map). Cannot fail. */
void jw__strmap_insert(jw__strmap_t *m, jw__list_t *node);

/* Takes an element out of the map; one not in it is left alone. */
void jw__strmap_remove(jw__strmap_t *m, jw__list_t *node);

#endif /* JW_COMMON_STRMAP_H */
