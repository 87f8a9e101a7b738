/*
 * The supervisor's job table: jobs by id (a hash), by age (a list, oldest
 * first) and by owner. Each owner has a record with its jobs in age order,
 * its running count, its finished jobs in the order they became final (the
 * retention's order) and the disk its logs take, so that Start, a job's
 * exit, the retention and List of one owner touch that owner's jobs only.
 *
 * The table knows nothing of processes or logs: a job embeds a
 * jw__jobent_t and the supervisor gets back to it with jw__list_data.
 * Nothing here calls back, and only jw__jobtable_owner_get allocates.
 */
#ifndef JW_WORKER_JOBTABLE_INT_H
#define JW_WORKER_JOBTABLE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobworker/supervisor.h"
#include "list.h"
#include "strmap.h"

typedef struct jw__owner_s {
  char *name;
  jw__list_t hnode;    /* in its bucket of the owners' hash */
  jw__list_t jobs;     /* its jobs in the table, oldest first */
  jw__list_t finished; /* its final jobs, the first to become final first */
  size_t njobs;
  size_t nrunning;
  size_t nfinished;
  uint64_t disk; /* bytes its jobs' logs take (jw__jobtable_set_disk) */
} jw__owner_t;

typedef struct {
  char id[JW_ID_LEN + 1];
  jw__owner_t *owner; /* NULL once out of the table */
  jw__list_t hnode;   /* in its bucket of the ids' hash */
  jw__list_t age;     /* in the table's list, oldest first */
  jw__list_t by_owner;
  jw__list_t fin; /* in owner->finished once final */
  uint64_t disk;  /* bytes counted in owner->disk */
  bool final;
} jw__jobent_t;

typedef struct {
  jw__strmap_t ids;    /* jobs by id */
  jw__strmap_t owners; /* owner records by name */
  size_t njobs;
  size_t nowners;
  jw__list_t jobs; /* every job, oldest first */
  size_t nrunning;
} jw__jobtable_t;

/* An empty table. Returns 0 or -ENOMEM. */
int jw__jobtable_init(jw__jobtable_t *t);

/* Frees the buckets; the table must be empty (its jobs removed). */
void jw__jobtable_destroy(jw__jobtable_t *t);

/* The job with id, or NULL. */
jw__jobent_t *jw__jobtable_find(const jw__jobtable_t *t, const char *id);

/* The owner record for name, or NULL when it has no job in the table. */
jw__owner_t *jw__jobtable_owner(const jw__jobtable_t *t, const char *name);

/*
 * The owner record for name, made when missing, so that inserting a job
 * after it cannot fail. Returns NULL when out of memory. A record that
 * gets no job must be given back with jw__jobtable_owner_put.
 */
jw__owner_t *jw__jobtable_owner_get(jw__jobtable_t *t, const char *name);

/* Frees the owner record if it has no job. */
void jw__jobtable_owner_put(jw__jobtable_t *t, jw__owner_t *o);

/*
 * Adds a running job (e->id set, unique) of owner o, the newest. Cannot
 * fail: when the hash cannot grow it stays as it is, only fuller.
 */
void jw__jobtable_insert(jw__jobtable_t *t, jw__jobent_t *e, jw__owner_t *o);

/* Marks a job final: out of the running counts, last of the finished. */
void jw__jobtable_set_final(jw__jobtable_t *t, jw__jobent_t *e);

/* Counts bytes as what the job's log takes now, in its owner's total. */
void jw__jobtable_set_disk(jw__jobent_t *e, uint64_t bytes);

/*
 * The owner's final job that became final first, other than except, or
 * NULL.
 */
jw__jobent_t *jw__jobtable_first_finished(const jw__owner_t *o,
                                          const jw__jobent_t *except);

/*
 * Takes a job out of the table (its disk no longer counts); its owner
 * record goes with its last job. A job not in the table is left alone.
 */
void jw__jobtable_remove(jw__jobtable_t *t, jw__jobent_t *e);

/* The entry of a list node of the table's age list or an owner's jobs. */
#define jw__jobent_of_age(n) jw__list_data(n, jw__jobent_t, age)
#define jw__jobent_of_owner(n) jw__list_data(n, jw__jobent_t, by_owner)

#endif /* JW_WORKER_JOBTABLE_INT_H */
