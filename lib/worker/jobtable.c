/*
 * The job table: two string maps (ids, owners), the age list and the per-owner
 * lists. See jobtable_int.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobtable_int.h"

int jw__jobtable_init(jw__jobtable_t *t) {
  memset(t, 0, sizeof(*t));
  jw__list_init(&t->jobs);
  if (jw__strmap_init(&t->ids, jw__jobent_t, hnode, id, false) != 0 ||
      jw__strmap_init(&t->owners, jw__owner_t, hnode, name, true) != 0) {
    jw__jobtable_destroy(t);
    return -ENOMEM;
  }
  return 0;
}

void jw__jobtable_destroy(jw__jobtable_t *t) {
  jw__strmap_destroy(&t->ids);
  jw__strmap_destroy(&t->owners);
}

jw__jobent_t *jw__jobtable_find(const jw__jobtable_t *t, const char *id) {
  jw__list_t *n = jw__strmap_find(&t->ids, id);
  return n != NULL ? jw__list_data(n, jw__jobent_t, hnode) : NULL;
}

jw__owner_t *jw__jobtable_owner(const jw__jobtable_t *t, const char *name) {
  jw__list_t *n = jw__strmap_find(&t->owners, name);
  return n != NULL ? jw__list_data(n, jw__owner_t, hnode) : NULL;
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
  jw__strmap_insert(&t->owners, &o->hnode);
  t->nowners++;
  return o;
}

void jw__jobtable_owner_put(jw__jobtable_t *t, jw__owner_t *o) {
  if (o == NULL || o->njobs > 0)
    return;
  jw__strmap_remove(&t->owners, &o->hnode);
  t->nowners--;
  free(o->name);
  free(o);
}

void jw__jobtable_insert(jw__jobtable_t *t, jw__jobent_t *e, jw__owner_t *o) {
  jw__strmap_insert(&t->ids, &e->hnode);
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
  jw__strmap_remove(&t->ids, &e->hnode);
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
