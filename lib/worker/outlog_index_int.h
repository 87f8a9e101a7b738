/*
 * The outlog's sparse index and the scans over its records file: where a
 * byte of output is in the file (a reader that resumes at an offset), and
 * where the last N lines start (a tail), without reading the whole file.
 *
 * The index holds one entry (a record's file offset and the output offset
 * of its first payload byte) per JW__OUTIDX_STEP bytes of file, at most
 * JW__OUTIDX_MAX entries: when full, every other entry goes and the step
 * doubles, so the index of any log takes at most 64 KiB. A lookup
 * bisects the index, then walks the records of one step, reading the file
 * in buffered chunks (many small records cost one read, a large one is
 * skipped by its length).
 */
#ifndef JW_WORKER_OUTLOG_INDEX_INT_H
#define JW_WORKER_OUTLOG_INDEX_INT_H

#include <stddef.h>
#include <stdint.h>

#define JW__OUTIDX_STEP (1u << 20)
#define JW__OUTIDX_MAX 4096

typedef struct {
  uint64_t file_off; /* the record's header */
  uint64_t out_off;  /* its first payload byte in the output */
} jw__outidx_ent_t;

typedef struct {
  jw__outidx_ent_t *v;
  size_t n, cap;
  uint64_t step;
} jw__outidx_t;

/* Where a byte of output is: its record's payload, and what is left of it. */
typedef struct {
  uint64_t file_off; /* the byte itself in the file */
  uint32_t rec_left; /* payload bytes of its record from it on */
  int stream;
} jw__outidx_pos_t;

/* Notes a record written at file_off whose payload starts at out_off. */
void jw__outidx_note(jw__outidx_t *idx, uint64_t file_off, uint64_t out_off);

void jw__outidx_free(jw__outidx_t *idx);

/*
 * Builds the index of the first size bytes of fd's records (a log opened
 * again from its file has none). Returns 0 or -errno.
 */
int jw__outidx_build(jw__outidx_t *idx, int fd, uint64_t size);

/*
 * Finds output byte target (< the output bytes in the first size bytes of
 * fd's records). Returns 0 with *pos set, or -errno.
 */
int jw__outidx_locate(const jw__outidx_t *idx, int fd, uint64_t size,
                      uint64_t target, jw__outidx_pos_t *pos);

/*
 * The output offset where the last nlines lines of the output from offset
 * from on begin (from itself when there are fewer), for a log of size
 * file bytes holding bytes output bytes. A final line without its newline
 * counts as a line. Returns 0 with *out set, or -errno.
 */
int jw__outidx_tail(const jw__outidx_t *idx, int fd, uint64_t size,
                    uint64_t bytes, uint64_t from, uint32_t nlines,
                    uint64_t *out);

#endif /* JW_WORKER_OUTLOG_INDEX_INT_H */
