/*
 * The Unix user each client's jobs run as: teleportd's policy on top of
 * the worker library's credentials (jw_job_spec_t.creds.set_ids).
 *
 * A client (certificate CN) listed in the users file runs its jobs as
 * the account named there, or is refused ("CN -"). Any other client gets
 * a uid of its own from the configured range, allocated the first time
 * it starts a job and recorded in the data directory, so that it keeps
 * that uid across restarts; its gid is the same number. When teleportd
 * is not root every job runs as teleportd's own user.
 */
#ifndef JOBWORKER_USERS_H
#define JOBWORKER_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The allocation table's name in the data directory. */
#define JW_USERS_TABLE "job-uids"

/* The most uids a --job-uid-range may span. */
#define JW_USERS_MAX_RANGE (1u << 20)

typedef struct jw_users_s jw_users_t;

typedef struct {
  const char *data_dir;   /* where JW_USERS_TABLE lives (required) */
  uid_t first, last;      /* the range allocated uids come from */
  const char *users_file; /* "CN ACCOUNT" lines; NULL: none */
  /*
   * Whether jobs may run as other users (teleportd is root). Without it
   * every job keeps teleportd's own credentials, and a users file may only
   * refuse clients or name teleportd's own account.
   */
  bool privileged;
} jw_users_options_t;

/* What a client's job runs as. */
typedef struct {
  bool set_ids; /* false: teleportd's own credentials */
  uid_t uid;
  gid_t gid;
} jw_user_t;

/*
 * Reads the users file and the allocation table. Returns 0, or a negative
 * code after writing a message that names the file (and the line) into
 * errbuf: -errno for a file that cannot be read, JW_EINVAL for a
 * malformed one or a bad range.
 */
int jw_users_open(const jw_users_options_t *opts, jw_users_t **out,
                  char *errbuf, size_t errlen);

/*
 * The user cn's jobs run as. Returns 0, JW_EOWNER when the users file
 * refuses cn, JW_ELIMIT when cn needs a new uid and the range has none
 * left, JW_EINVAL for a cn too long to record, or -errno when the new
 * allocation cannot be recorded (nothing is allocated then).
 */
int jw_users_lookup(jw_users_t *u, const char *cn, jw_user_t *out);

/* The number of uids allocated so far. */
size_t jw_users_allocated(const jw_users_t *u);

void jw_users_free(jw_users_t *u);

#endif /* JOBWORKER_USERS_H */
