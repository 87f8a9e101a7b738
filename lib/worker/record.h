/*
 * A job's durable record: what jw_supervisor keeps of a job in its data
 * directory beside the job's output log ("<id>.rec" next to "<id>.log"),
 * so that a restarted server knows its jobs again.
 *
 * The file is [8 bytes magic "JWJOBREC"][u32 version][u32 body length]
 * [u64 FNV-1a 64 of the body][body], all little endian. The body holds the
 * fields of jw__record_t in a fixed order (strings as u32 length and
 * bytes). A record is written whole to "<id>.rec.tmp" and renamed over
 * "<id>.rec" (docs/operations.md, "Durability", says why), so a crash at
 * any instant leaves the old record or the new one; the checksum catches
 * what a lost power or a bad disk leaves instead.
 *
 * Decoding checks every length and count against the bytes there are and
 * against the caps below, and refuses anything else: a record is either
 * read whole or refused with a reason, whatever the file holds.
 */
#ifndef JW_WORKER_RECORD_H
#define JW_WORKER_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker/supervisor.h"

#define JW__REC_MAGIC "JWJOBREC"
#define JW__REC_VERSION 1u
#define JW__REC_HDR 24
/* The largest body read or written: far above what a request may carry. */
#define JW__REC_MAX_BODY (16u * 1024 * 1024)
/* The most args, and the most env entries, a record holds. */
#define JW__REC_MAX_ITEMS 65536u
/* The longest cgroup name ("cg-" and 32 hex digits today). */
#define JW__REC_MAX_CG_NAME 64u

typedef struct {
  char id[JW_ID_LEN + 1];
  const char *owner;
  const char *command;
  const char *const *args;
  size_t nargs;
  const char *working_dir; /* "": inherited */
  const char *const *env;  /* only with keep_env */
  size_t nenv;
  jw_limits_t limits;
  uint32_t isolation;
  uint32_t uid;
  uint32_t gid;
  jw_proc_status_t proc; /* state RUNNING while the job was not final */
  uint64_t output_bytes;
  uint64_t output_dropped;
  jw_usage_t usage;
  jw_end_reason_t end_reason;
  const char *cg_name; /* the job's cgroup, to kill it by; "": none */
  /*
   * The start time of proc.pid (field 22 of /proc/PID/stat), so that a
   * pid the kernel has since given to another process is never killed;
   * 0: unknown (then the pid is not killed).
   */
  uint64_t pid_start;
  uint64_t age_seq; /* the order jobs were started in */
  uint64_t fin_seq; /* the order they became final in; 0 while running */
  void *mem_;       /* what jw__record_decode allocated */
} jw__record_t;

/*
 * Encodes rec (header and body) into a malloc'd buffer. Returns 0 with
 * *out and *outlen set, -E2BIG when it would pass a cap, -EINVAL for a
 * bad id or cgroup name or too many args or env entries, or -ENOMEM.
 */
int jw__record_encode(const jw__record_t *rec, unsigned char **out,
                      size_t *outlen);

/*
 * Decodes len bytes of a record file into rec (its strings allocated in
 * one block: free with jw__record_free). Returns 0, or -EBADMSG (torn,
 * corrupt or malformed), -EPROTONOSUPPORT (a newer version) or -ENOMEM;
 * *why, when not NULL, gets a static phrase saying what was wrong.
 */
int jw__record_decode(const unsigned char *buf, size_t len, jw__record_t *rec,
                      const char **why);

/* Frees what jw__record_decode allocated (rec->mem_). */
void jw__record_free(jw__record_t *rec);

/*
 * Writes rec as dir/<id>.rec crash-safely: the whole record to
 * dir/<id>.rec.tmp, then renamed over the old one. No fsync (the caller
 * batches those: jw__record_sync). Returns 0 or -errno.
 */
int jw__record_write(const char *dir, const jw__record_t *rec);

/*
 * Reads and decodes the record file at path (at most JW__REC_HDR +
 * JW__REC_MAX_BODY bytes). Returns as jw__record_decode, or -errno.
 */
int jw__record_read(const char *path, jw__record_t *rec, const char **why);

/*
 * fsyncs dir/<id>.rec for each of n ids (and dir/<id>.log where with_log
 * is set), then dir itself. Blocks: for the thread pool. Returns 0 or the
 * first -errno (the others are still tried).
 */
typedef struct {
  char id[JW_ID_LEN + 1];
  int with_log;
} jw__record_sync_t;
int jw__record_sync(const char *dir, const jw__record_sync_t *ids, size_t n);

/* "<dir>/<id>.rec", malloc'd, or NULL. */
char *jw__record_path(const char *dir, const char *id);

/*
 * Whether name is a record's file name ("<id>.rec"); with tmp, whether it
 * is a record's temporary file ("<id>.rec.tmp").
 */
int jw__record_is_name(const char *name, int tmp);

/* The start time of pid (field 22 of /proc/PID/stat), or 0. */
uint64_t jw__record_pid_start(int pid);

#endif /* JW_WORKER_RECORD_H */
