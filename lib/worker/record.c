/*
 * Job records: the file format (record.h) and its crash-safe write.
 *
 * The encoder and the decoder walk the same field list in the same order;
 * the decoder is a cursor that fails closed: every read checks the bytes
 * left first, every count is capped before anything is allocated for it,
 * and what is left over after the last field is an error too.
 */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "hash.h"

/* ---- encoding --------------------------------------------------------- */

typedef struct {
  unsigned char *p;
  size_t len;
  size_t cap;
  int err;
} wbuf_t;

static void put(wbuf_t *b, const void *src, size_t n) {
  if (b->err || n == 0)
    return;
  if (b->len + n > JW__REC_HDR + (size_t)JW__REC_MAX_BODY) {
    b->err = -E2BIG;
    return;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    unsigned char *np;
    while (cap < b->len + n)
      cap *= 2;
    if ((np = realloc(b->p, cap)) == NULL) {
      b->err = -ENOMEM;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
}

static void put_u64(wbuf_t *b, uint64_t v) {
  unsigned char le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (unsigned char)(v >> (8 * i));
  put(b, le, 8);
}

static void put_u32(wbuf_t *b, uint32_t v) {
  unsigned char le[4];
  for (int i = 0; i < 4; i++)
    le[i] = (unsigned char)(v >> (8 * i));
  put(b, le, 4);
}

static void put_str(wbuf_t *b, const char *s) {
  size_t n = s != NULL ? strlen(s) : 0;
  if (n > JW__REC_MAX_BODY) {
    b->err = -E2BIG;
    return;
  }
  put_u32(b, (uint32_t)n);
  put(b, s, n);
}

static int is_hex_id(const char *id) {
  for (size_t i = 0; i < JW_ID_LEN; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return id[JW_ID_LEN] == '\0';
}

static int is_cg_name(const char *s, size_t n) {
  if (n > JW__REC_MAX_CG_NAME)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
          s[i] == '-'))
      return 0;
  return 1;
}

int jw__record_encode(const jw__record_t *r, unsigned char **out,
                      size_t *outlen) {
  wbuf_t b = {0};
  size_t i;
  uint64_t h;

  if (!is_hex_id(r->id) || r->nargs > JW__REC_MAX_ITEMS ||
      r->nenv > JW__REC_MAX_ITEMS ||
      (r->cg_name != NULL && !is_cg_name(r->cg_name, strlen(r->cg_name))))
    return -EINVAL;
  put(&b, JW__REC_MAGIC, 8);
  put_u32(&b, JW__REC_VERSION);
  put_u32(&b, 0); /* the body's length, below */
  put_u64(&b, 0); /* its checksum, below */
  put(&b, r->id, JW_ID_LEN);
  put_str(&b, r->owner);
  put_str(&b, r->command);
  put_u32(&b, (uint32_t)r->nargs);
  for (i = 0; i < r->nargs; i++)
    put_str(&b, r->args[i]);
  put_str(&b, r->working_dir);
  put_u32(&b, (uint32_t)r->nenv);
  for (i = 0; i < r->nenv; i++)
    put_str(&b, r->env[i]);
  put_u64(&b, (uint64_t)r->limits.memory_bytes);
  put_u64(&b, (uint64_t)r->limits.cpu_millis);
  put_u64(&b, (uint64_t)r->limits.io_read_bps);
  put_u64(&b, (uint64_t)r->limits.io_write_bps);
  put_u64(&b, (uint64_t)r->limits.pids);
  put_u32(&b, r->isolation);
  put_u32(&b, r->uid);
  put_u32(&b, r->gid);
  put_u32(&b, (uint32_t)r->proc.state);
  put_u32(&b, (uint32_t)r->proc.pid);
  put_u32(&b, (uint32_t)r->proc.exit_code);
  put_u32(&b, (uint32_t)r->proc.signal);
  put_u64(&b, (uint64_t)r->proc.started_at_ns);
  put_u64(&b, (uint64_t)r->proc.ended_at_ns);
  put_u64(&b, r->output_bytes);
  put_u64(&b, r->output_dropped);
  put_u64(&b, r->usage.cpu_usage_ns);
  put_u64(&b, r->usage.memory_peak_bytes);
  put_u32(&b, r->usage.oom_killed ? 1 : 0);
  put_u32(&b, (uint32_t)r->end_reason);
  put_str(&b, r->cg_name);
  put_u64(&b, r->pid_start);
  put_u64(&b, r->age_seq);
  put_u64(&b, r->fin_seq);
  if (b.err) {
    free(b.p);
    return b.err;
  }
  h = jw__fnv1a64(b.p + JW__REC_HDR, b.len - JW__REC_HDR);
  for (i = 0; i < 4; i++)
    b.p[12 + i] = (unsigned char)((b.len - JW__REC_HDR) >> (8 * i));
  for (i = 0; i < 8; i++)
    b.p[16 + i] = (unsigned char)(h >> (8 * i));
  *out = b.p;
  *outlen = b.len;
  return 0;
}

/* ---- decoding --------------------------------------------------------- */

typedef struct {
  const unsigned char *p;
  size_t left;
  int bad;
  /* Where the decoded strings and arrays go (sized before the walk). */
  char *arena;
  size_t arena_left;
} rbuf_t;

static int get(rbuf_t *b, void *dst, size_t n) {
  if (b->bad || b->left < n) {
    b->bad = 1;
    if (dst != NULL)
      memset(dst, 0, n);
    return -1;
  }
  if (dst != NULL)
    memcpy(dst, b->p, n);
  b->p += n;
  b->left -= n;
  return 0;
}

static uint64_t get_u64(rbuf_t *b) {
  unsigned char le[8];
  uint64_t v = 0;
  if (get(b, le, 8) < 0)
    return 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)le[i] << (8 * i);
  return v;
}

static uint32_t get_u32(rbuf_t *b) {
  unsigned char le[4];
  uint32_t v = 0;
  if (get(b, le, 4) < 0)
    return 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)le[i] << (8 * i);
  return v;
}

/* Takes arena space for n bytes (aligned for pointers), or NULL. */
static void *take(rbuf_t *b, size_t n) {
  size_t a = (n + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
  void *p;
  if (b->bad || a < n || a > b->arena_left) {
    b->bad = 1;
    return NULL;
  }
  p = b->arena;
  b->arena += a;
  b->arena_left -= a;
  return p;
}

/*
 * A string: its bytes must be there, hold no NUL, and fit the arena,
 * which was sized for every byte of the body plus one NUL per string.
 */
static const char *get_str(rbuf_t *b, size_t *lenp) {
  uint32_t n = get_u32(b);
  char *s;
  if (b->bad || n > b->left || memchr(b->p, '\0', n) != NULL) {
    b->bad = 1;
    return NULL;
  }
  if ((s = take(b, (size_t)n + 1)) == NULL)
    return NULL;
  memcpy(s, b->p, n);
  s[n] = '\0';
  b->p += n;
  b->left -= n;
  if (lenp != NULL)
    *lenp = n;
  return s;
}

/* A count of strings, capped, then the strings into a NULL-ended array. */
static const char *const *get_strs(rbuf_t *b, size_t *countp) {
  uint32_t n = get_u32(b);
  const char **v;
  /* Each string takes 4 bytes at least: more than that cannot be there. */
  if (b->bad || n > JW__REC_MAX_ITEMS || n > b->left / 4) {
    b->bad = 1;
    return NULL;
  }
  if ((v = take(b, ((size_t)n + 1) * sizeof(char *))) == NULL)
    return NULL;
  for (uint32_t i = 0; i < n; i++)
    if ((v[i] = get_str(b, NULL)) == NULL)
      return NULL;
  v[n] = NULL;
  *countp = n;
  return v;
}

static int fail(const char **why, const char *what, int err) {
  if (why != NULL)
    *why = what;
  return err;
}

int jw__record_decode(const unsigned char *buf, size_t len, jw__record_t *r,
                      const char **why) {
  rbuf_t b;
  uint32_t version, blen, v;
  uint64_t sum = 0;
  size_t arena, n;
  const char *s;

  memset(r, 0, sizeof(*r));
  if (len < JW__REC_HDR || memcmp(buf, JW__REC_MAGIC, 8) != 0)
    return fail(why, "not a job record (no header)", -EBADMSG);
  version = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
            (uint32_t)buf[11] << 24;
  blen = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16 |
         (uint32_t)buf[15] << 24;
  for (int i = 0; i < 8; i++)
    sum |= (uint64_t)buf[16 + i] << (8 * i);
  if (version != JW__REC_VERSION)
    return fail(why, "a record version this build does not know",
                version > JW__REC_VERSION ? -EPROTONOSUPPORT : -EBADMSG);
  if (blen > JW__REC_MAX_BODY || blen != len - JW__REC_HDR)
    return fail(why, "truncated or oversized record", -EBADMSG);
  if (jw__fnv1a64(buf + JW__REC_HDR, blen) != sum)
    return fail(why, "checksum mismatch", -EBADMSG);

  /*
   * A string of n bytes takes n + 4 of the body and at most n + 8 of the
   * arena; the two arrays a pointer per string and one more each: five
   * times the body bounds it all.
   */
  arena = (size_t)blen * 5 + 64;
  r->mem_ = malloc(arena);
  if (r->mem_ == NULL)
    return fail(why, "out of memory", -ENOMEM);
  b.p = buf + JW__REC_HDR;
  b.left = blen;
  b.bad = 0;
  b.arena = r->mem_;
  b.arena_left = arena;

  get(&b, r->id, JW_ID_LEN);
  r->id[JW_ID_LEN] = '\0';
  r->owner = get_str(&b, NULL);
  r->command = get_str(&b, NULL);
  r->args = get_strs(&b, &r->nargs);
  r->working_dir = get_str(&b, NULL);
  r->env = get_strs(&b, &r->nenv);
  r->limits.memory_bytes = (int64_t)get_u64(&b);
  r->limits.cpu_millis = (int64_t)get_u64(&b);
  r->limits.io_read_bps = (int64_t)get_u64(&b);
  r->limits.io_write_bps = (int64_t)get_u64(&b);
  r->limits.pids = (int64_t)get_u64(&b);
  r->isolation = get_u32(&b);
  r->uid = get_u32(&b);
  r->gid = get_u32(&b);
  v = get_u32(&b);
  r->proc.state = (jw_proc_state_t)v;
  r->proc.pid = (int)get_u32(&b);
  r->proc.exit_code = (int)get_u32(&b);
  r->proc.signal = (int)get_u32(&b);
  r->proc.started_at_ns = (int64_t)get_u64(&b);
  r->proc.ended_at_ns = (int64_t)get_u64(&b);
  r->output_bytes = get_u64(&b);
  r->output_dropped = get_u64(&b);
  r->usage.cpu_usage_ns = get_u64(&b);
  r->usage.memory_peak_bytes = get_u64(&b);
  r->usage.oom_killed = get_u32(&b) != 0;
  r->end_reason = (jw_end_reason_t)get_u32(&b);
  s = get_str(&b, &n);
  r->cg_name = s;
  r->pid_start = get_u64(&b);
  r->age_seq = get_u64(&b);
  r->fin_seq = get_u64(&b);

  if (b.bad) {
    jw__record_free(r);
    return fail(why, "malformed record body", -EBADMSG);
  }
  if (b.left != 0) {
    jw__record_free(r);
    return fail(why, "bytes after the last field", -EBADMSG);
  }
  if (!is_hex_id(r->id) || r->command[0] == '\0' || !is_cg_name(s, n) ||
      v < JW_PROC_RUNNING || v > JW_PROC_STOPPED ||
      (unsigned)r->end_reason > JW_END_SERVER_CRASH || r->proc.pid < 0 ||
      r->limits.memory_bytes < 0 || r->limits.cpu_millis < 0 ||
      r->limits.io_read_bps < 0 || r->limits.io_write_bps < 0 ||
      r->limits.pids < 0) {
    jw__record_free(r);
    return fail(why, "a field out of range", -EBADMSG);
  }
  return 0;
}

void jw__record_free(jw__record_t *r) {
  free(r->mem_);
  memset(r, 0, sizeof(*r));
}

/* ---- the journal ------------------------------------------------------ */

void jw__record_encode_del(const char *id,
                           unsigned char out[JW__REC_HDR + JW_ID_LEN]) {
  uint64_t h = jw__fnv1a64(id, JW_ID_LEN);
  memcpy(out, JW__DEL_MAGIC, 8);
  for (int i = 0; i < 4; i++)
    out[8 + i] = (unsigned char)(JW__REC_VERSION >> (8 * i));
  for (int i = 0; i < 4; i++)
    out[12 + i] = (unsigned char)((uint32_t)JW_ID_LEN >> (8 * i));
  for (int i = 0; i < 8; i++)
    out[16 + i] = (unsigned char)(h >> (8 * i));
  memcpy(out + JW__REC_HDR, id, JW_ID_LEN);
}

/*
 * The length of the entry at p (header and body) when its header and
 * checksum hold, else 0 with *why set. Decoding the body is the caller's.
 */
static size_t entry_len(const unsigned char *p, size_t left, int *del,
                        const char **why) {
  uint32_t blen;
  uint64_t sum = 0;
  if (left < JW__REC_HDR) {
    *why = "torn entry (cut short)";
    return 0;
  }
  *del = memcmp(p, JW__DEL_MAGIC, 8) == 0;
  if (!*del && memcmp(p, JW__REC_MAGIC, 8) != 0) {
    *why = "not an entry (bad magic)";
    return 0;
  }
  blen = (uint32_t)p[12] | (uint32_t)p[13] << 8 | (uint32_t)p[14] << 16 |
         (uint32_t)p[15] << 24;
  for (int i = 0; i < 8; i++)
    sum |= (uint64_t)p[16 + i] << (8 * i);
  if (blen > JW__REC_MAX_BODY || blen > left - JW__REC_HDR) {
    *why = "torn entry (cut short)";
    return 0;
  }
  if (jw__fnv1a64(p + JW__REC_HDR, blen) != sum) {
    *why = "checksum mismatch";
    return 0;
  }
  if (*del && (blen != JW_ID_LEN || p[8] != JW__REC_VERSION || p[9] != 0 ||
               p[10] != 0 || p[11] != 0)) {
    *why = "malformed removal";
    return 0;
  }
  return JW__REC_HDR + (size_t)blen;
}

int jw__journal_parse(const unsigned char *buf, size_t len,
                      const jw__journal_visitor_t *v) {
  size_t off = 0;
  while (off < len) {
    const char *why = NULL;
    int del = 0, err;
    size_t n = entry_len(buf + off, len - off, &del, &why);
    jw__record_t rec;
    if (n > 0 && del) {
      char id[JW_ID_LEN + 1];
      memcpy(id, buf + off + JW__REC_HDR, JW_ID_LEN);
      id[JW_ID_LEN] = '\0';
      if (is_hex_id(id)) {
        v->on_delete(id, v->data);
        off += n;
        continue;
      }
      why = "malformed removal";
      n = 0;
    }
    if (n > 0) {
      err = jw__record_decode(buf + off, n, &rec, &why);
      if (err == -ENOMEM)
        return err;
      if (err == 0) {
        v->on_record(&rec, v->data);
        off += n;
        continue;
      }
    }
    /*
     * A torn or damaged stretch: skipped up to the next entry's magic, so
     * that one bad block costs the entries in it and no others.
     */
    {
      const unsigned char *next =
          len - off > 1 ? memmem(buf + off + 1, len - off - 1, "JWJOB", 5)
                        : NULL;
      v->on_bad((uint64_t)off, -EBADMSG, why, v->data);
      if (next == NULL)
        break;
      off = (size_t)(next - buf);
    }
  }
  return 0;
}

uint64_t jw__record_pid_start(int pid) {
  char path[64], buf[1024];
  unsigned long long start = 0;
  ssize_t n;
  int fd;
  char *p;

  if (pid <= 0)
    return 0;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  /* The command (field 2) may hold spaces and ')': skip to the last ')'. */
  p = strrchr(buf, ')');
  if (p == NULL)
    return 0;
  p++;
  /* Fields 3..21 come before the start time (field 22). */
  for (int field = 3; field <= 22; field++) {
    while (*p == ' ')
      p++;
    if (*p == '\0')
      return 0;
    if (field == 22) {
      if (sscanf(p, "%llu", &start) != 1)
        return 0;
      break;
    }
    while (*p != ' ' && *p != '\0')
      p++;
  }
  return (uint64_t)start;
}
