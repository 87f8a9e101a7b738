/*
 * The outlog's sparse index and the scans over its records (see
 * outlog_index_int.h). The record format is outlog.c's: [1 byte stream]
 * [4 bytes payload length, little endian][payload].
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobworker/outlog.h"
#include "outlog_index_int.h"

#define HDR_LEN JW_OUTLOG_RECORD_HDR
/* The buffer of one scan: many small records per read, bounded memory. */
#define SCAN_BUF (64u * 1024)

void jw__outidx_note(jw__outidx_t *idx, uint64_t file_off, uint64_t out_off) {
  if (idx->step == 0)
    idx->step = JW__OUTIDX_STEP;
  /*
   * The first entry is always the log's start, whatever record is noted
   * first (a log opened again from its file and appended to before any
   * seek): every lookup then finds a segment that starts at or before its
   * target, and every byte is in some segment.
   */
  if (idx->n == 0 && file_off != 0) {
    jw__outidx_note(idx, 0, 0);
    if (idx->n == 0)
      return; /* no memory: no index, lookups scan from the start */
  }
  if (idx->n > 0 && file_off - idx->v[idx->n - 1].file_off < idx->step)
    return;
  if (idx->n == JW__OUTIDX_MAX) {
    /* Full: keep every other entry, and make the step twice as long. */
    size_t i, k = 0;
    for (i = 0; i < idx->n; i += 2)
      idx->v[k++] = idx->v[i];
    idx->n = k;
    idx->step *= 2;
    if (file_off - idx->v[idx->n - 1].file_off < idx->step)
      return;
  }
  if (idx->n == idx->cap) {
    size_t cap = idx->cap ? idx->cap * 2 : 16;
    jw__outidx_ent_t *v;
    if (cap > JW__OUTIDX_MAX)
      cap = JW__OUTIDX_MAX;
    v = realloc(idx->v, cap * sizeof(*v));
    /* Without memory the index is only sparser: lookups scan further. */
    if (v == NULL)
      return;
    idx->v = v;
    idx->cap = cap;
  }
  idx->v[idx->n].file_off = file_off;
  idx->v[idx->n].out_off = out_off;
  idx->n++;
}

void jw__outidx_free(jw__outidx_t *idx) {
  free(idx->v);
  memset(idx, 0, sizeof(*idx));
}

/* A window of the file, read in chunks. */
typedef struct {
  int fd;
  unsigned char *buf;
  uint64_t at; /* file offset of buf[0] */
  size_t len;  /* bytes valid in buf */
  int err;
} rbuf_t;

/*
 * Makes file bytes [off, off + n) available (n <= SCAN_BUF, off + n <=
 * limit) and returns them, reading ahead up to limit; NULL on an error
 * (b->err).
 */
static const unsigned char *rb_get(rbuf_t *b, uint64_t off, size_t n,
                                   uint64_t limit) {
  size_t want, got = 0;
  if (off >= b->at && off + n <= b->at + b->len)
    return b->buf + (off - b->at);
  want = limit - off < SCAN_BUF ? (size_t)(limit - off) : SCAN_BUF;
  while (got < want) {
    ssize_t r = pread(b->fd, b->buf + got, want - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  b->at = off;
  b->len = got;
  if (got < n) {
    b->err = -EIO;
    return NULL;
  }
  return b->buf;
}

static int rb_init(rbuf_t *b, int fd) {
  memset(b, 0, sizeof(*b));
  b->fd = fd;
  /* Zeroed: a short read can never leave a header read from garbage. */
  b->buf = calloc(1, SCAN_BUF);
  return b->buf != NULL ? 0 : -ENOMEM;
}

static uint32_t rec_len(const unsigned char *h) {
  return (uint32_t)h[1] | (uint32_t)h[2] << 8 | (uint32_t)h[3] << 16 |
         (uint32_t)h[4] << 24;
}

/* The records from entry k on to the next entry (or the end). */
typedef struct {
  uint64_t f, o;       /* the first record's file offset, its output offset */
  uint64_t fend, oend; /* where the next segment starts */
} seg_t;

static size_t nsegs(const jw__outidx_t *idx) { return idx->n > 0 ? idx->n : 1; }

static seg_t seg_of(const jw__outidx_t *idx, size_t k, uint64_t size,
                    uint64_t bytes) {
  seg_t s = {0, 0, size, bytes};
  if (idx->n == 0)
    return s;
  s.f = idx->v[k].file_off;
  s.o = idx->v[k].out_off;
  if (k + 1 < idx->n) {
    s.fend = idx->v[k + 1].file_off;
    s.oend = idx->v[k + 1].out_off;
  }
  return s;
}

/* The last segment whose output starts at or before off. */
static size_t seg_find(const jw__outidx_t *idx, uint64_t off) {
  size_t lo = 0, hi = idx->n;
  if (idx->n == 0)
    return 0;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (idx->v[mid].out_off <= off)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

int jw__outidx_locate(const jw__outidx_t *idx, int fd, uint64_t size,
                      uint64_t target, jw__outidx_pos_t *pos) {
  seg_t s = seg_of(idx, seg_find(idx, target), size, 0);
  uint64_t f = s.f, o = s.o;
  rbuf_t b;
  int err = rb_init(&b, fd);
  if (err < 0)
    return err;
  err = -EIO;
  while (f + HDR_LEN <= size) {
    const unsigned char *h = rb_get(&b, f, HDR_LEN, size);
    uint32_t len;
    if (h == NULL) {
      err = b.err;
      break;
    }
    len = rec_len(h);
    if (target < o + len) {
      pos->file_off = f + HDR_LEN + (target - o);
      pos->rec_left = (uint32_t)(o + len - target);
      pos->stream = h[0] == JW_STDERR ? JW_STDERR : JW_STDOUT;
      err = 0;
      break;
    }
    f += HDR_LEN + (uint64_t)len;
    o += len;
  }
  free(b.buf);
  return err;
}

int jw__outidx_build(jw__outidx_t *idx, int fd, uint64_t size) {
  uint64_t f = 0, o = 0;
  rbuf_t b;
  int err = rb_init(&b, fd);
  if (err < 0)
    return err;
  while (f + HDR_LEN <= size) {
    const unsigned char *h = rb_get(&b, f, HDR_LEN, size);
    if (h == NULL) {
      err = b.err;
      break;
    }
    jw__outidx_note(idx, f, o);
    o += rec_len(h);
    f += HDR_LEN + (uint64_t)rec_len(h);
  }
  free(b.buf);
  return err;
}

/* Newlines counted in one scan, or the kth of them found. */
typedef struct {
  uint64_t count;
  uint64_t kth; /* 0: count them all */
  uint64_t pos; /* the kth's output offset */
} nl_t;

/*
 * Counts the newlines of output bytes [lo, hi) of segment s into c (or
 * finds the c->kth). Returns 1 when the kth was found, 0, or -errno.
 */
static int scan_nl(rbuf_t *b, const seg_t *s, uint64_t lo, uint64_t hi,
                   nl_t *c) {
  uint64_t f = s->f, o = s->o;
  while (f + HDR_LEN <= s->fend && o < hi) {
    const unsigned char *h = rb_get(b, f, HDR_LEN, s->fend);
    uint32_t len;
    if (h == NULL)
      return b->err;
    len = rec_len(h);
    if (o + len > lo) {
      uint64_t a = lo > o ? lo : o;
      uint64_t z = hi < o + len ? hi : o + len;
      while (a < z) {
        size_t want = z - a < SCAN_BUF ? (size_t)(z - a) : SCAN_BUF;
        const unsigned char *p =
            rb_get(b, f + HDR_LEN + (a - o), want, s->fend);
        const unsigned char *q = p, *end = p + want;
        if (p == NULL)
          return b->err;
        while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
          c->count++;
          if (c->kth != 0 && c->count == c->kth) {
            c->pos = a + (uint64_t)(q - p);
            return 1;
          }
          q++;
        }
        a += want;
      }
    }
    f += HDR_LEN + (uint64_t)len;
    o += len;
  }
  return 0;
}

int jw__outidx_tail(const jw__outidx_t *idx, int fd, uint64_t size,
                    uint64_t bytes, uint64_t from, uint32_t nlines,
                    uint64_t *out) {
  /*
   * The newline of the last line (the last byte, when it is one) ends it
   * rather than starting another: the lines begin after the nlines-th
   * newline before it, counted back from the end.
   */
  uint64_t hi = bytes > 0 ? bytes - 1 : 0, need = nlines;
  size_t k;
  rbuf_t b;
  int err;

  *out = from < bytes ? from : bytes;
  if (nlines == 0 || hi <= from)
    return 0;
  if ((err = rb_init(&b, fd)) < 0)
    return err;
  k = seg_find(idx, hi - 1);
  for (;;) {
    seg_t s = seg_of(idx, k, size, bytes);
    uint64_t lo = from > s.o ? from : s.o;
    uint64_t top = hi < s.oend ? hi : s.oend;
    nl_t c = {0, 0, 0};
    if ((err = scan_nl(&b, &s, lo, top, &c)) < 0)
      break;
    if (c.count >= need) {
      c.kth = c.count - need + 1;
      c.count = 0;
      err = scan_nl(&b, &s, lo, top, &c);
      if (err == 1) {
        *out = c.pos + 1;
        err = 0;
      } else if (err == 0) {
        err = -EIO; /* the file changed under us */
      }
      break;
    }
    need -= c.count;
    if (s.o <= from || k == 0 || k >= nsegs(idx))
      break;
    k--;
  }
  free(b.buf);
  return err;
}
