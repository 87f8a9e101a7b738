/*
 * A job's durable record: what jw_supervisor keeps of a job in its data
 * directory beside the job's output log ("<id>.log"), so that a restarted
 * server knows its jobs again.
 *
 * A record is [8 bytes magic "JWJOBREC"][u32 version][u32 body length]
 * [u64 FNV-1a 64 of the body][body], all little endian. The body holds the
 * fields of jw__record_t in a fixed order (strings as u32 length and
 * bytes). Records are appended to one journal in the data directory
 * (JW__JOURNAL); a later record of a job replaces its earlier ones, and a
 * removal entry ends them (docs/operations.md, "Durability", says why a
 * journal). A crash at any instant leaves a job's old record or its new
 * one: a torn append is a tail whose checksum fails, and it is skipped.
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

/* A journal entry saying that the job id has no record any more. */
#define JW__DEL_MAGIC "JWJOBDEL"
#define JW__DEL_LEN (JW__REC_HDR + JW_ID_LEN)
void jw__record_encode_del(const char *id, unsigned char out[JW__DEL_LEN]);

/* The journal's file in the data directory, and its rewrite's. */
#define JW__JOURNAL JW_SUPERVISOR_JOURNAL
#define JW__JOURNAL_TMP JW_SUPERVISOR_JOURNAL ".tmp"

typedef struct {
  /* A whole record, decoded: *rec is the callee's (jw__record_free). */
  void (*on_record)(jw__record_t *rec, void *data);
  /* A removal: the job's earlier records no longer count. */
  void (*on_delete)(const char *id, void *data);
  /* A stretch at off that is no entry (torn, damaged): skipped. */
  void (*on_bad)(uint64_t off, int err, const char *why, void *data);
  void *data;
} jw__journal_visitor_t;

/*
 * Walks len bytes of a journal (entries one after the other: records as
 * jw__record_encode makes them, removals as jw__record_encode_del), in
 * order. A stretch that is not a whole entry (a tail a crash tore, a
 * damaged block) is reported and skipped up to the next entry. Never reads
 * outside buf. Returns 0 or -ENOMEM.
 */
int jw__journal_parse(const unsigned char *buf, size_t len,
                      const jw__journal_visitor_t *v);

/* The start time of pid (field 22 of /proc/PID/stat), or 0. */
uint64_t jw__record_pid_start(int pid);

#endif /* JW_WORKER_RECORD_H */
