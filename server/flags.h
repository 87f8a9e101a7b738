/*
 * teleportd's configuration: command-line flags, each with an environment
 * variable twin and a key of the same name in the --config file (a flag
 * wins over its variable, which wins over the file).
 */
#ifndef TELEPORTD_FLAGS_H
#define TELEPORTD_FLAGS_H

#include <stdbool.h>
#include <stdint.h>

#include "conffile.h"
#include "jobworker/cgroup.h"

typedef enum {
  JW_LOG_DEBUG = 0,
  JW_LOG_INFO,
  JW_LOG_WARN,
  JW_LOG_ERROR
} jw_log_level_t;

/* The longest --metrics-cn value. */
#define JW_METRICS_CN_MAX 4096

typedef struct {
  const char *addr;
  const char *cacert;
  const char *cert;
  const char *key;
  const char *data_dir;
  uint64_t stop_timeout_ms;
  uint32_t max_connections;
  jw_log_level_t log_level;
  /* Limits a job gets where its request says 0, and the most it may ask. */
  jw_limits_t default_limits;
  jw_limits_t max_limits;
  /* The block device io limits apply to: "MAJ:MIN" or a path; NULL: the
   * data directory's disk. */
  const char *io_device;
  bool allow_isolation;
  /* --check: check flags, files and data directory, then exit. */
  bool check;
  bool durable;  /* job records kept in data_dir across restarts */
  bool keep_env; /* env values written into them too */
  /* Whether --default-pids was given (else a share of the kernel's max). */
  bool default_pids_set;
  /* The uids allocated to clients' jobs, and the CN -> account file. */
  uint32_t job_uid_first, job_uid_last;
  const char *users_file;
  /* A CRL whose revoked client certificates are refused; NULL: none. */
  const char *crl;
  /* CNs allowed to GET /metrics, separated by commas; NULL/"": none. */
  const char *metrics_cn;
  /*
   * Server limits (docs/protocol.md#limits). For the job limits 0 means
   * none; the others are at least 1.
   */
  uint64_t max_jobs;                   /* running jobs in all */
  uint64_t max_jobs_per_client;        /* running jobs of one client CN */
  uint64_t max_output_bytes;           /* output kept on disk per job */
  uint64_t max_finished_per_client;    /* finished jobs kept per client */
  uint64_t max_request_bytes;          /* one request message */
  uint64_t max_args;                   /* JobRequest.args entries */
  uint64_t max_env;                    /* JobRequest.env entries */
  uint64_t max_request_strings;        /* string bytes of one request */
  uint64_t max_disk_per_client;        /* log bytes on disk of one client */
  uint64_t max_streams;                /* concurrent streams per connection */
  uint64_t handshake_timeout_ms;       /* TLS handshake */
  uint64_t request_timeout_ms;         /* a request arriving in full */
  uint64_t idle_timeout_ms;            /* a connection nothing happens on */
  uint64_t max_connections_per_client; /* connections of one client CN */
  uint64_t max_stop_timeout_ms;        /* the longest grace a Stop asks */
  char data_dir_buf[4096];
  /* The --config file given, or NULL; its settings point into its text. */
  const char *config;
  jw_conffile_t config_file;
} jw_config_t;

/*
 * Parses argv and the environment into cfg. Returns 0 to run, 1 when
 * --help or --version was printed (exit 0), or 2 after printing a usage
 * error to stderr (exit 2).
 */
int jw_flags_parse(jw_config_t *cfg, int argc, char **argv);

#endif /* TELEPORTD_FLAGS_H */
