/*
 * jw_outlog: a job's output as an append-only file of records.
 *
 * A record is [1 byte stream][4 bytes payload length, little endian]
 * [payload]. The log keeps only the file descriptor and counters; readers
 * keep a file offset each and read the file through a few blocks the whole
 * thread shares (below), so memory does not depend on how much a job
 * writes, how far behind a reader is, or how many readers are stalled.
 *
 * Appends use pwritev(2) directly on the loop thread. The data lands in
 * the page cache, so a write costs a memory copy and does not wait for
 * the disk, except under dirty-page throttling when the disk cannot keep
 * up at all. Handing writes to the thread pool instead would need a queue
 * of buffers in memory (bounded only by blocking the pipes anyway), copies,
 * and care about ordering against readers; the direct write is simpler and
 * keeps every byte a reader may see already in the file.
 *
 * A log closed while readers are open is only marked closed: each reader
 * holds it, and the last one to close frees it (as Redis's freeClientAsync:
 * never free what a caller further up still holds). The same goes for a
 * reader closed from a notify callback: it is marked, and freed once the
 * notifying pass is over.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "jobworker/error.h"
#include "jobworker/outlog.h"
#include "list.h"
#include "outlog_index_int.h"
#include "outlog_int.h"
#include "precond.h"

#define HDR_LEN JW_OUTLOG_RECORD_HDR

/*
 * The largest payload of one record. Larger appends are split; a reader
 * coalesces the pieces again.
 */
#define MAX_RECORD (1U << 30)

/*
 * Readers read the file in blocks: one pread of up to BLOCK_LEN bytes, then
 * the record headers and payloads are parsed from memory, so that a log of
 * line-sized records costs one read per block rather than two per record.
 * The blocks belong to the thread, not to a reader (the loop runs readers
 * one at a time): a stalled or idle reader holds no buffer, and readers of
 * one job at the same place (fan-out) share one read. The bytes of a file
 * below its size never change while its log lives (appends only add; a
 * failed append cuts only what was past the size; reopen makes a new log),
 * so a block stays valid until evicted; it is keyed by the log's id, never
 * reused, rather than its address, which a new log may get.
 *
 * Appends made while a reader waits for them are copied into a block as
 * well: the newest bytes of a job being watched are served from memory
 * without a pread (a bounded tail, shared by all readers of the job). The
 * file stays the source of truth: a block only ever holds a copy of bytes
 * already written there.
 *
 * A payload piece of DIRECT_MIN bytes or more that no block holds is read
 * straight into the caller's buffer: one copy, as before the blocks.
 */
#define BLOCK_LEN (64 * 1024 + 64) /* a record of a 64 KiB pipe read fits */
#define NBLOCKS 4
#define DIRECT_MIN (16 * 1024)

typedef struct {
  uint64_t log_id; /* 0: empty */
  uint64_t off;    /* file offset of buf[0] */
  uint32_t len;
  uint32_t used; /* last use, for eviction */
  char *buf;     /* BLOCK_LEN bytes, allocated when first filled */
} block_t;

/*
 * The buffers are mapped on first use and unmapped when the thread's last
 * reader closes, so that a thread that never reads a log (the thread
 * pool's) has none, nor a server that nobody watches. They are mappings of
 * their own rather than heap chunks: 64 KiB chunks freed in the middle of
 * the heap stay resident and raise the server's RSS for good (the stalled
 * subscribers' figure went from 12 to 21 KiB each with them). When one
 * cannot be mapped, the read goes to the file directly, as without blocks.
 */
static _Thread_local block_t blocks[NBLOCKS];
static _Thread_local uint32_t block_clock;
static _Thread_local unsigned thread_readers; /* open on this thread */
static _Thread_local uint64_t reader_preads;  /* for the tests */
static _Atomic uint64_t last_log_id;

struct jw_outlog_reader_s {
  jw_outlog_t *log;
  jw__list_t node; /* in log->readers */
  jw_outlog_notify_cb cb;
  void *data;
  uint64_t file_off; /* next unread byte of the file */
  uint64_t consumed; /* payload bytes read */
  uint32_t rec_left; /* payload bytes left in the current record */
  jw_stream_t rec_stream;
  unsigned want_notify : 1;
  unsigned closed : 1;
};

struct jw_outlog_s {
  uint64_t id; /* the blocks' key: unique in the process */
  int fd;
  char *path;
  uint64_t size; /* bytes of complete records in the file */
  uint64_t bytes;
  uint64_t dropped;
  uint64_t max_bytes; /* 0: no cap */
  int finished;
  int closed;   /* jw_outlog_close was called: freed with its last reader */
  int unlinked; /* ... with unlink_file: its job is gone */
  jw__list_t readers; /* oldest first */
  unsigned notifying; /* depth of notify_readers() on the stack */
  unsigned waiting;   /* readers with want_notify set */
  int need_sweep;     /* readers closed while notifying, to free later */
  jw__outidx_t idx;   /* where offsets are in the file (outlog_index.c) */
};

int jw_outlog_create(const char *path, jw_outlog_t **out) {
  jw_outlog_t *log;
  size_t n;

  if (path == NULL || out == NULL)
    return -EINVAL;
  log = calloc(1, sizeof(*log));
  if (log == NULL)
    return -ENOMEM;
  n = strlen(path) + 1;
  log->path = malloc(n);
  if (log->path == NULL) {
    free(log);
    return -ENOMEM;
  }
  memcpy(log->path, path, n);
  jw__list_init(&log->readers);
  log->id = ++last_log_id;
  /* Room for the first entries now, so that an append never allocates. */
  log->idx.v = malloc(16 * sizeof(*log->idx.v));
  log->idx.cap = 16;
  if (log->idx.v == NULL) {
    free(log->path);
    free(log);
    return -ENOMEM;
  }
  log->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (log->fd < 0) {
    int err = -errno;
    jw__outidx_free(&log->idx);
    free(log->path);
    free(log);
    return err;
  }
  *out = log;
  return 0;
}

/*
 * Empties this thread's blocks of a log (id), for other logs to use, or
 * all of them and frees their buffers (id 0).
 */
static void blocks_drop(uint64_t id) {
  for (int i = 0; i < NBLOCKS; i++) {
    if (blocks[i].log_id == id || id == 0) {
      blocks[i].log_id = 0;
      blocks[i].used = 0;
    }
    if (id == 0) {
      if (blocks[i].buf != NULL)
        munmap(blocks[i].buf, BLOCK_LEN);
      blocks[i].buf = NULL;
    }
  }
}

static void free_log(jw_outlog_t *log) {
  blocks_drop(log->id);
  if (log->fd >= 0)
    close(log->fd);
  jw__outidx_free(&log->idx);
  free(log->path);
  free(log);
}

static void maybe_release_fd(jw_outlog_t *log);

/* Frees the log if it is closed and nothing holds it. Returns 1 if so. */
static int maybe_free(jw_outlog_t *log) {
  if (!log->closed || log->notifying > 0 || !jw__list_empty(&log->readers))
    return 0;
  free_log(log);
  return 1;
}

static void sweep(jw_outlog_t *log) {
  jw__list_t *n, *tmp;
  log->need_sweep = 0;
  jw__list_foreach_safe(n, tmp, &log->readers) {
    jw_outlog_reader_t *r = jw__list_data(n, jw_outlog_reader_t, node);
    if (r->closed) {
      jw__list_remove(n);
      free(r);
    }
  }
  maybe_release_fd(log);
}

/*
 * Calls the notify callback of every reader waiting for data. A callback
 * may close any reader (only marked while we iterate, freed afterwards),
 * open readers (appended, seen with nothing to notify), append again (a
 * nested pass) or close the log. Returns 1 when the log was freed (it was
 * closed and its last reader went): the caller must not touch it then.
 */
static int notify_readers(jw_outlog_t *log) {
  jw__list_t *n;
  log->notifying++;
  jw__list_foreach(n, &log->readers) {
    jw_outlog_reader_t *r = jw__list_data(n, jw_outlog_reader_t, node);
    if (r->closed || !r->want_notify || r->cb == NULL)
      continue;
    r->want_notify = 0;
    log->waiting--;
    r->cb(r, r->data);
  }
  if (--log->notifying > 0)
    return 0;
  if (log->need_sweep)
    sweep(log);
  return maybe_free(log);
}

/* The block of this thread that holds file byte off of the log, or NULL. */
static block_t *block_find(uint64_t id, uint64_t off) {
  for (int i = 0; i < NBLOCKS; i++) {
    block_t *b = &blocks[i];
    if (b->log_id == id && off >= b->off && off - b->off < b->len)
      return b;
  }
  return NULL;
}

/*
 * The block to fill next, emptied, with its buffer: an empty one, else the
 * least recently used. NULL when there is no memory for its buffer.
 */
static block_t *block_victim(void) {
  block_t *v = &blocks[0];
  for (int i = 1; i < NBLOCKS; i++) {
    if (blocks[i].log_id == 0 && v->log_id != 0)
      v = &blocks[i];
    else if ((blocks[i].log_id == 0) == (v->log_id == 0) &&
             (uint32_t)(block_clock - blocks[i].used) >
                 (uint32_t)(block_clock - v->used))
      v = &blocks[i];
  }
  v->log_id = 0;
  v->len = 0;
  if (v->buf == NULL) {
    void *p = mmap(NULL, BLOCK_LEN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return NULL;
    v->buf = p;
  }
  return v;
}

/*
 * Copies a record just written at log->size into a block, for the readers
 * that wait for it: into the block that ends where it starts when it fits
 * there, else into a fresh block. A record larger than a block is left to
 * the file.
 */
static void blocks_seed(jw_outlog_t *log, const unsigned char *hdr,
                        const char *payload, uint32_t len) {
  block_t *b = NULL;
  size_t need = HDR_LEN + (size_t)len;

  if (need > BLOCK_LEN)
    return;
  for (int i = 0; i < NBLOCKS && b == NULL; i++) {
    block_t *c = &blocks[i];
    if (c->log_id == log->id && c->off + c->len == log->size &&
        c->len + need <= BLOCK_LEN)
      b = c;
  }
  if (b == NULL) {
    if ((b = block_victim()) == NULL)
      return;
    b->log_id = log->id;
    b->off = log->size;
  }
  memcpy(b->buf + b->len, hdr, HDR_LEN);
  memcpy(b->buf + b->len + HDR_LEN, payload, len);
  b->len += (uint32_t)need;
  b->used = ++block_clock;
}

static int write_record(jw_outlog_t *log, jw_stream_t stream, const char *buf,
                        uint32_t len) {
  unsigned char hdr[HDR_LEN];
  struct iovec iov[2];
  uint64_t off = log->size;
  size_t left = HDR_LEN + (size_t)len;
  int niov = 2;
  struct iovec *v = iov;

  hdr[0] = (unsigned char)stream;
  hdr[1] = (unsigned char)(len & 0xff);
  hdr[2] = (unsigned char)((len >> 8) & 0xff);
  hdr[3] = (unsigned char)((len >> 16) & 0xff);
  hdr[4] = (unsigned char)((len >> 24) & 0xff);
  iov[0].iov_base = hdr;
  iov[0].iov_len = HDR_LEN;
  iov[1].iov_base = (void *)buf;
  iov[1].iov_len = len;

  while (left > 0) {
    ssize_t n = pwritev(log->fd, v, niov, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = n < 0 ? -errno : -ENOSPC;
      /* Cut the partial record so that readers never see half of one. */
      while (ftruncate(log->fd, (off_t)log->size) < 0 && errno == EINTR)
        ;
      return err;
    }
    off += (uint64_t)n;
    left -= (size_t)n;
    while (niov > 0 && (size_t)n >= v->iov_len) {
      n -= (ssize_t)v->iov_len;
      v++;
      niov--;
    }
    if (niov > 0) {
      v->iov_base = (char *)v->iov_base + n;
      v->iov_len -= (size_t)n;
    }
  }
  if (log->waiting > 0)
    blocks_seed(log, hdr, buf, len);
  jw__outidx_note(&log->idx, log->size, log->bytes);
  log->size = off;
  log->bytes += len;
  return 0;
}

int jw_outlog_append(jw_outlog_t *log, jw_stream_t stream, const void *buf,
                     size_t len) {
  const char *p = buf;
  int err = 0;

  if (log == NULL || (stream != JW_STDOUT && stream != JW_STDERR) ||
      (buf == NULL && len > 0))
    return -EINVAL;
  if (log->finished)
    return JW_ECLOSED;
  if (log->max_bytes > 0 && len > 0 && log->bytes + len > log->max_bytes) {
    size_t room =
        log->bytes < log->max_bytes ? (size_t)(log->max_bytes - log->bytes) : 0;
    log->dropped += len - room;
    len = room;
    err = JW_ELIMIT;
  }
  while (len > 0) {
    uint32_t n = len > MAX_RECORD ? MAX_RECORD : (uint32_t)len;
    int werr = write_record(log, stream, p, n);
    if (werr < 0) {
      log->dropped += len;
      err = werr;
      break;
    }
    p += n;
    len -= n;
  }
  (void)notify_readers(log);
  return err;
}

/*
 * A finished log without readers gives its descriptor back, so that a
 * server keeping thousands of finished jobs does not keep thousands of
 * open files. The first reader opens the file again, read-only.
 */
static void maybe_release_fd(jw_outlog_t *log) {
  if (log->finished && jw__list_empty(&log->readers) && log->fd >= 0) {
    close(log->fd);
    log->fd = -1;
  }
}

void jw_outlog_finish(jw_outlog_t *log) {
  if (log == NULL || log->finished)
    return;
  log->finished = 1;
  if (notify_readers(log))
    return;
  maybe_release_fd(log);
}

uint64_t jw_outlog_bytes(const jw_outlog_t *log) { return log->bytes; }

uint64_t jw_outlog_dropped(const jw_outlog_t *log) { return log->dropped; }

uint64_t jw_outlog_disk_bytes(const jw_outlog_t *log) { return log->size; }

void jw_outlog_drop(jw_outlog_t *log, uint64_t n) {
  if (log != NULL)
    log->dropped += n;
}

void jw_outlog_set_max(jw_outlog_t *log, uint64_t max_bytes) {
  if (log != NULL)
    log->max_bytes = max_bytes;
}

void jw_outlog_close(jw_outlog_t *log, int unlink_file) {
  if (log == NULL)
    return;
  JW__CHECK(!log->closed, "jw_outlog_close: log closed twice");
  log->closed = 1;
  if (unlink_file) {
    unlink(log->path);
    log->unlinked = 1;
  }
  if (!log->finished) {
    log->finished = 1;
    if (notify_readers(log))
      return;
  }
  if (!maybe_free(log))
    maybe_release_fd(log);
}

/*
 * A log with records but no index (jw_outlog_reopen indexes the records it
 * walks, but keeps none when it had no memory for them): the first seek
 * or tail indexes it, one walk over its headers.
 */
static void ensure_index(jw_outlog_t *log) {
  if (log->idx.n == 0 && log->size > 0)
    (void)jw__outidx_build(&log->idx, log->fd, log->size);
}

/*
 * Puts the reader at output byte off: at the end when off is past it (the
 * next byte written), else in the middle of the record that holds it.
 */
static int reader_seek(jw_outlog_reader_t *r, uint64_t off) {
  jw_outlog_t *log = r->log;
  jw__outidx_pos_t pos;
  int err;
  if (off >= log->bytes) {
    r->file_off = log->size;
    r->rec_left = 0;
    r->consumed = log->bytes;
    return 0;
  }
  ensure_index(log);
  err = jw__outidx_locate(&log->idx, log->fd, log->size, off, &pos);
  if (err < 0)
    return err;
  r->file_off = pos.file_off;
  r->rec_left = pos.rec_left;
  r->rec_stream = pos.stream == JW_STDERR ? JW_STDERR : JW_STDOUT;
  r->consumed = off;
  return 0;
}

int jw_outlog_reader_open(jw_outlog_t *log, jw_outlog_notify_cb notify_cb,
                          void *data, jw_outlog_reader_t **out) {
  return jw_outlog_reader_open_at(log, 0, notify_cb, data, out);
}

int jw_outlog_reader_open_at(jw_outlog_t *log, uint64_t offset,
                             jw_outlog_notify_cb notify_cb, void *data,
                             jw_outlog_reader_t **out) {
  jw_outlog_reader_t *r;
  int err;

  if (log == NULL || out == NULL)
    return -EINVAL;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return -ENOMEM;
  if (log->fd < 0) {
    log->fd = open(log->path, O_RDONLY | O_CLOEXEC);
    if (log->fd < 0) {
      err = -errno;
      free(r);
      return err;
    }
  }
  r->log = log;
  r->cb = notify_cb;
  r->data = data;
  jw__list_insert_tail(&log->readers, &r->node);
  thread_readers++;
  if (offset > 0 && (err = reader_seek(r, offset)) < 0) {
    jw_outlog_reader_close(r);
    return err;
  }
  *out = r;
  return 0;
}

int jw_outlog_reader_tail(jw_outlog_reader_t *reader, uint32_t nlines) {
  jw_outlog_t *log;
  uint64_t off;
  int err;

  if (reader == NULL || reader->closed)
    return -EINVAL;
  log = reader->log;
  ensure_index(log);
  err = jw__outidx_tail(&log->idx, log->fd, log->size, log->bytes,
                        reader->consumed, nlines, &off);
  if (err < 0)
    return err;
  return off > reader->consumed ? reader_seek(reader, off) : 0;
}

/* Reads exactly len bytes at off, or fails. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off) {
  char *p = buf;
  while (len > 0) {
    ssize_t n;
    reader_preads++;
    n = pread(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

/*
 * Copies len bytes of the log's file at off (all below log->size) into dst,
 * from the thread's blocks, filling one with a single pread when none
 * holds them.
 */
static int log_read(jw_outlog_t *log, char *dst, size_t len, uint64_t off) {
  while (len > 0) {
    block_t *b = block_find(log->id, off);
    size_t k;
    if (b == NULL) {
      uint64_t fill = log->size - off;
      int err;
      if (len >= DIRECT_MIN || (b = block_victim()) == NULL)
        return pread_full(log->fd, dst, len, off);
      if (fill > BLOCK_LEN)
        fill = BLOCK_LEN;
      if ((err = pread_full(log->fd, b->buf, (size_t)fill, off)) < 0)
        return err;
      b->log_id = log->id;
      b->off = off;
      b->len = (uint32_t)fill;
    }
    b->used = ++block_clock;
    k = (size_t)(b->off + b->len - off);
    if (k > len)
      k = len;
    memcpy(dst, b->buf + (off - b->off), k);
    dst += k;
    off += k;
    len -= k;
  }
  return 0;
}

ssize_t jw_outlog_read(jw_outlog_reader_t *reader, void *buf, size_t len,
                       jw_stream_t *stream) {
  jw_outlog_t *log;
  char *out = buf;
  size_t n = 0;
  int err;

  if (reader == NULL || buf == NULL || stream == NULL || len == 0)
    return -EINVAL;
  log = reader->log;
  if (reader->closed)
    return JW_ECLOSED;
  if (len > SSIZE_MAX)
    len = SSIZE_MAX;

  while (n < len) {
    size_t want;
    if (reader->rec_left == 0) {
      unsigned char hdr[HDR_LEN];
      if (reader->file_off + HDR_LEN > log->size)
        break;
      err = log_read(log, (char *)hdr, HDR_LEN, reader->file_off);
      if (err < 0)
        goto fail;
      reader->file_off += HDR_LEN;
      reader->rec_stream = hdr[0] == JW_STDERR ? JW_STDERR : JW_STDOUT;
      reader->rec_left = (uint32_t)hdr[1] | (uint32_t)hdr[2] << 8 |
                         (uint32_t)hdr[3] << 16 | (uint32_t)hdr[4] << 24;
      continue;
    }
    /* A change of stream ends this read; the record waits for the next. */
    if (n > 0 && reader->rec_stream != *stream)
      break;
    *stream = reader->rec_stream;
    want = len - n < reader->rec_left ? len - n : reader->rec_left;
    err = log_read(log, out + n, want, reader->file_off);
    if (err < 0)
      goto fail;
    reader->file_off += want;
    reader->rec_left -= (uint32_t)want;
    n += want;
  }
  if (n > 0) {
    reader->consumed += n;
    return (ssize_t)n;
  }
  if (log->finished)
    return 0;
  if (!reader->want_notify) {
    reader->want_notify = 1;
    log->waiting++;
  }
  return JW_EAGAIN;

fail:
  if (n > 0) {
    reader->consumed += n;
    return (ssize_t)n;
  }
  return err;
}

uint64_t jw_outlog_reader_dropped(const jw_outlog_reader_t *reader) {
  return reader->log->dropped;
}

int jw_outlog_reader_unlinked(const jw_outlog_reader_t *reader) {
  return reader->log->unlinked;
}

uint64_t jw_outlog_reader_offset(const jw_outlog_reader_t *reader) {
  return reader->consumed;
}

uint64_t jw__outlog_reader_offset(const jw_outlog_reader_t *reader) {
  return jw_outlog_reader_offset(reader);
}

uint64_t jw__outlog_reader_preads(void) { return reader_preads; }

void jw_outlog_reader_close(jw_outlog_reader_t *reader) {
  jw_outlog_t *log;

  if (reader == NULL || reader->closed)
    return;
  log = reader->log;
  if (reader->want_notify) {
    reader->want_notify = 0;
    log->waiting--;
  }
  if (thread_readers > 0 && --thread_readers == 0)
    blocks_drop(0);
  if (log->notifying > 0) {
    reader->closed = 1;
    log->need_sweep = 1;
    return;
  }
  jw__list_remove(&reader->node);
  free(reader);
  if (!maybe_free(log))
    maybe_release_fd(log);
}

int jw_outlog_reopen(const char *path, jw_outlog_t **out, uint64_t *cut) {
  jw_outlog_t *log;
  struct stat st;
  uint64_t off = 0;
  int err;

  if (path == NULL || out == NULL)
    return -EINVAL;
  log = calloc(1, sizeof(*log));
  if (log == NULL || (log->path = strdup(path)) == NULL) {
    free(log);
    return -ENOMEM;
  }
  jw__list_init(&log->readers);
  log->id = ++last_log_id;
  log->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (log->fd < 0 || fstat(log->fd, &st) < 0) {
    err = -errno;
    goto fail;
  }
  /* Whole records only: the first one that does not fit ends the log. */
  while (off + HDR_LEN <= (uint64_t)st.st_size) {
    unsigned char hdr[HDR_LEN];
    uint32_t len;
    if ((err = pread_full(log->fd, hdr, HDR_LEN, off)) < 0)
      goto fail;
    len = (uint32_t)hdr[1] | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3] << 16 |
          (uint32_t)hdr[4] << 24;
    if ((hdr[0] != JW_STDOUT && hdr[0] != JW_STDERR) || len > MAX_RECORD ||
        off + HDR_LEN + len > (uint64_t)st.st_size)
      break;
    /* The walk over the headers indexes the log as appends would have. */
    jw__outidx_note(&log->idx, off, log->bytes);
    off += HDR_LEN + (uint64_t)len;
    log->bytes += len;
  }
  if (off < (uint64_t)st.st_size) {
    while ((err = ftruncate(log->fd, (off_t)off)) < 0 && errno == EINTR)
      ;
    if (err < 0) {
      err = -errno;
      goto fail;
    }
  }
  if (cut != NULL)
    *cut = (uint64_t)st.st_size - off;
  log->size = off;
  *out = log;
  return 0;

fail:
  if (log->fd >= 0)
    close(log->fd);
  jw__outidx_free(&log->idx);
  free(log->path);
  free(log);
  return err;
}
