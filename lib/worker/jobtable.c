/*
 * The job table: two chained hashes (ids, owners) over jw__list_t buckets,
 * the age list and the per-owner lists. See jobtable_int.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "jobtable_int.h"

#define INITIAL_BUCKETS 64

static size_t hash_str(const char *s) {
  return (size_t)jw__fnv1a64(s, strlen(s));
}

/*
 * Bucket heads start zeroed (calloc) and are made empty lists on first
 * use: a table of n heads costs no pass over them, and every use goes
 * through the one check, which the static analyzer can follow.
 */
static jw__list_t *new_buckets(size_t n) {
  return calloc(n, sizeof(jw__list_t));
}

static jw__list_t *bucket(jw__list_t *b, size_t nbuckets, const char *key) {
  jw__list_t *h = &b[hash_str(key) & (nbuckets - 1)];
  if (h->next == NULL)
    jw__list_init(h);
  return h;
}

int jw__jobtable_init(jw__jobtable_t *t) {
  memset(t, 0, sizeof(*t));
  jw__list_init(&t->jobs);
  t->nbuckets = INITIAL_BUCKETS;
  t->nobuckets = INITIAL_BUCKETS;
  t->buckets = new_buckets(t->nbuckets);
  t->obuckets = new_buckets(t->nobuckets);
  if (t->buckets == NULL || t->obuckets == NULL) {
    free(t->buckets);
    free(t->obuckets);
    t->buckets = t->obuckets = NULL;
    return -ENOMEM;
  }
  return 0;
}

void jw__jobtable_destroy(jw__jobtable_t *t) {
  free(t->buckets);
  free(t->obuckets);
  t->buckets = t->obuckets = NULL;
}

/*
 * Doubles a hash whose nodes sit at offset off of elements keyed by the
 * string at key_off; on allocation failure the old one simply stays.
 */
static void grow(jw__list_t **buckets, size_t *nbuckets, size_t node_off,
                 size_t key_off, int key_is_ptr) {
  size_t n = *nbuckets * 2, i;
  jw__list_t *b = new_buckets(n);
  if (b == NULL)
    return;
  for (i = 0; i < *nbuckets; i++) {
    jw__list_t *node, *tmp;
    if ((*buckets)[i].next == NULL)
      continue; /* never used */
    jw__list_foreach_safe(node, tmp, &(*buckets)[i]) {
      char *elem = (char *)node - node_off;
      const char *key = key_is_ptr ? *(const char **)(void *)(elem + key_off)
                                   : (const char *)(elem + key_off);
      jw__list_remove(node);
      jw__list_insert_tail(bucket(b, n, key), node);
    }
  }
  free(*buckets);
  *buckets = b;
  *nbuckets = n;
}

jw__jobent_t *jw__jobtable_find(const jw__jobtable_t *t, const char *id) {
  jw__list_t *n;
  if (id == NULL)
    return NULL;
  jw__list_foreach(n, bucket(t->buckets, t->nbuckets, id)) {
    jw__jobent_t *e = jw__list_data(n, jw__jobent_t, hnode);
    if (strcmp(e->id, id) == 0)
      return e;
  }
  return NULL;
}

jw__owner_t *jw__jobtable_owner(const jw__jobtable_t *t, const char *name) {
  jw__list_t *n;
  if (name == NULL)
    return NULL;
  jw__list_foreach(n, bucket(t->obuckets, t->nobuckets, name)) {
    jw__owner_t *o = jw__list_data(n, jw__owner_t, hnode);
    if (strcmp(o->name, name) == 0)
      return o;
  }
  return NULL;
}

jw__owner_t *jw__jobtable_owner_get(jw__jobtable_t *t, const char *name) {
  jw__owner_t *o = jw__jobtable_owner(t, name);
  if (o != NULL)
    return o;
  o = calloc(1, sizeof(*o));
  if (o == NULL || (o->name = strdup(name)) == NULL) {
    free(o);
    return NULL;
  }
  jw__list_init(&o->jobs);
  jw__list_init(&o->finished);
  if (t->nowners + 1 > t->nobuckets)
    grow(&t->obuckets, &t->nobuckets, offsetof(jw__owner_t, hnode),
         offsetof(jw__owner_t, name), 1);
  jw__list_insert_tail(bucket(t->obuckets, t->nobuckets, name), &o->hnode);
  t->nowners++;
  return o;
}

void jw__jobtable_owner_put(jw__jobtable_t *t, jw__owner_t *o) {
  if (o == NULL || o->njobs > 0)
    return;
  jw__list_remove(&o->hnode);
  t->nowners--;
  free(o->name);
  free(o);
}

void jw__jobtable_insert(jw__jobtable_t *t, jw__jobent_t *e, jw__owner_t *o) {
  if (t->njobs + 1 > t->nbuckets)
    grow(&t->buckets, &t->nbuckets, offsetof(jw__jobent_t, hnode),
         offsetof(jw__jobent_t, id), 0);
  jw__list_insert_tail(bucket(t->buckets, t->nbuckets, e->id), &e->hnode);
  jw__list_insert_tail(&t->jobs, &e->age);
  jw__list_insert_tail(&o->jobs, &e->by_owner);
  jw__list_init(&e->fin);
  e->owner = o;
  e->final = false;
  e->disk = 0;
  o->njobs++;
  o->nrunning++;
  t->njobs++;
  t->nrunning++;
}

void jw__jobtable_set_final(jw__jobtable_t *t, jw__jobent_t *e) {
  if (e->final || e->owner == NULL)
    return;
  e->final = true;
  e->owner->nrunning--;
  t->nrunning--;
  jw__list_insert_tail(&e->owner->finished, &e->fin);
  e->owner->nfinished++;
}

void jw__jobtable_set_disk(jw__jobent_t *e, uint64_t bytes) {
  if (e->owner == NULL)
    return;
  e->owner->disk = e->owner->disk - e->disk + bytes;
  e->disk = bytes;
}

jw__jobent_t *jw__jobtable_first_finished(const jw__owner_t *o,
                                          const jw__jobent_t *except) {
  jw__list_t *n;
  jw__list_foreach(n, &o->finished) {
    jw__jobent_t *e = jw__list_data(n, jw__jobent_t, fin);
    if (e != except)
      return e;
  }
  return NULL;
}

void jw__jobtable_remove(jw__jobtable_t *t, jw__jobent_t *e) {
  jw__owner_t *o = e->owner;
  if (o == NULL)
    return;
  jw__list_remove(&e->hnode);
  jw__list_remove(&e->age);
  jw__list_remove(&e->by_owner);
  if (e->final) {
    jw__list_remove(&e->fin);
    o->nfinished--;
  } else {
    o->nrunning--;
    t->nrunning--;
  }
  o->disk -= e->disk;
  e->disk = 0;
  o->njobs--;
  t->njobs--;
  e->owner = NULL;
  jw__jobtable_owner_put(t, o);
}
