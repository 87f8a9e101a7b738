/*
 * Fuzz target: the durable job records' journal (lib/worker/record.c,
 * jw__journal_parse and jw__record_decode), which teleportd reads at every
 * start from a file a crash may have torn and a disk may have damaged.
 *
 * Input: the journal's bytes. Oracles:
 *  - the input is copied to a buffer of its exact size, so ASan sees any
 *    read past it;
 *  - every record read has its strings (a command that is not empty), its
 *    counts within the caps, a state and an end reason in range, and
 *    encodes again to an entry that decodes to the same fields;
 *  - every skipped stretch starts inside the input, after the last entry
 *    read, and has a reason.
 */
#include <stdlib.h>
#include <string.h>

#include "../../lib/worker/record.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

struct state {
  size_t len;
  uint64_t last_bad;
  int nbad;
};

static void same(const jw__record_t *a, const jw__record_t *b) {
  FUZZ_CHECK(strcmp(a->id, b->id) == 0);
  FUZZ_CHECK(strcmp(a->owner, b->owner) == 0);
  FUZZ_CHECK(strcmp(a->command, b->command) == 0);
  FUZZ_CHECK(a->nargs == b->nargs && a->nenv == b->nenv);
  for (size_t i = 0; i < a->nargs; i++)
    FUZZ_CHECK(strcmp(a->args[i], b->args[i]) == 0);
  for (size_t i = 0; i < a->nenv; i++)
    FUZZ_CHECK(strcmp(a->env[i], b->env[i]) == 0);
  FUZZ_CHECK(strcmp(a->working_dir, b->working_dir) == 0);
  FUZZ_CHECK(strcmp(a->cg_name, b->cg_name) == 0);
  FUZZ_CHECK(memcmp(&a->limits, &b->limits, sizeof(a->limits)) == 0);
  FUZZ_CHECK(memcmp(&a->proc, &b->proc, sizeof(a->proc)) == 0);
  FUZZ_CHECK(a->output_bytes == b->output_bytes &&
             a->output_dropped == b->output_dropped &&
             a->end_reason == b->end_reason && a->pid_start == b->pid_start &&
             a->age_seq == b->age_seq && a->fin_seq == b->fin_seq);
}

static void on_record(jw__record_t *rec, void *data) {
  jw__record_t again;
  unsigned char *buf;
  size_t len;
  (void)data;
  FUZZ_CHECK(rec->command != NULL && rec->command[0] != '\0');
  FUZZ_CHECK(rec->owner != NULL && rec->working_dir != NULL &&
             rec->cg_name != NULL);
  FUZZ_CHECK(rec->nargs <= JW__REC_MAX_ITEMS && rec->nenv <= JW__REC_MAX_ITEMS);
  FUZZ_CHECK(rec->args[rec->nargs] == NULL && rec->env[rec->nenv] == NULL);
  FUZZ_CHECK(rec->proc.state >= JW_PROC_RUNNING &&
             rec->proc.state <= JW_PROC_STOPPED);
  FUZZ_CHECK((unsigned)rec->end_reason <= JW_END_SERVER_CRASH);
  FUZZ_CHECK(jw__record_encode(rec, &buf, &len) == 0);
  FUZZ_CHECK(jw__record_decode(buf, len, &again, NULL) == 0);
  same(rec, &again);
  jw__record_free(&again);
  free(buf);
  jw__record_free(rec);
}

static void on_delete(const char *id, void *data) {
  (void)data;
  FUZZ_CHECK(strlen(id) == JW_ID_LEN);
}

static void on_bad(uint64_t off, int err, const char *why, void *data) {
  struct state *s = data;
  FUZZ_CHECK(off < s->len && err < 0 && why != NULL);
  FUZZ_CHECK(s->nbad == 0 || off > s->last_bad);
  s->last_bad = off;
  s->nbad++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct state s = {size, 0, 0};
  jw__journal_visitor_t v = {on_record, on_delete, on_bad, &s};
  unsigned char *copy = malloc(size > 0 ? size : 1);
  if (copy == NULL)
    return 0;
  memcpy(copy, data, size);
  FUZZ_CHECK(jw__journal_parse(copy, size, &v) == 0);
  free(copy);
  return 0;
}
