/* The string-keyed hash. See strmap.h. */
#include "strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define INITIAL_BUCKETS 64

static const char *key_of(const jw__strmap_t *m, jw__list_t *node) {
  char *elem = (char *)node - m->node_off;
  return m->key_is_ptr ? *(const char **)(void *)(elem + m->key_off)
                       : (const char *)(elem + m->key_off);
}

/*
 * Bucket heads start zeroed (calloc) and are made empty lists on first
 * use: a map of n heads costs no pass over them, and every use goes
 * through the one check, which the static analyzer can follow.
 */
static jw__list_t *bucket(jw__list_t *b, size_t nbuckets, const char *key) {
  jw__list_t *h = &b[(size_t)jw__fnv1a64(key, strlen(key)) & (nbuckets - 1)];
  if (h->next == NULL)
    jw__list_init(h);
  return h;
}

int jw__strmap_init_at(jw__strmap_t *m, size_t node_off, size_t key_off,
                       bool key_is_ptr) {
  memset(m, 0, sizeof(*m));
  m->node_off = node_off;
  m->key_off = key_off;
  m->key_is_ptr = key_is_ptr;
  m->buckets = calloc(INITIAL_BUCKETS, sizeof(jw__list_t));
  if (m->buckets == NULL)
    return -ENOMEM;
  m->nbuckets = INITIAL_BUCKETS;
  return 0;
}

void jw__strmap_destroy(jw__strmap_t *m) {
  free(m->buckets);
  m->buckets = NULL;
  m->nbuckets = 0;
  m->count = 0;
}

/* Doubles the buckets; on allocation failure the old ones simply stay. */
static void grow(jw__strmap_t *m) {
  size_t n = m->nbuckets * 2;
  jw__list_t *b = calloc(n, sizeof(jw__list_t));
  if (b == NULL)
    return;
  for (size_t i = 0; i < m->nbuckets; i++) {
    jw__list_t *node, *tmp;
    if (m->buckets[i].next == NULL)
      continue; /* never used */
    jw__list_foreach_safe(node, tmp, &m->buckets[i]) {
      jw__list_remove(node);
      jw__list_insert_tail(bucket(b, n, key_of(m, node)), node);
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
}

jw__list_t *jw__strmap_find(const jw__strmap_t *m, const char *key) {
  jw__list_t *n;
  if (key == NULL || m->buckets == NULL)
    return NULL;
  jw__list_foreach(n, bucket(m->buckets, m->nbuckets, key)) {
    if (strcmp(key_of(m, n), key) == 0)
      return n;
  }
  return NULL;
}

void jw__strmap_insert(jw__strmap_t *m, jw__list_t *node) {
  if (m->count + 1 > m->nbuckets)
    grow(m);
  jw__list_insert_tail(bucket(m->buckets, m->nbuckets, key_of(m, node)), node);
  m->count++;
}

void jw__strmap_remove(jw__strmap_t *m, jw__list_t *node) {
  if (!jw__list_linked(node))
    return;
  jw__list_remove(node);
  m->count--;
}
