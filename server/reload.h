/*
 * teleportd's reload (SIGHUP): check the binary it was started from with
 * the same flags (`--check`), then hand the listening socket and every
 * running job over an execve(2) of that binary, which adopts them.
 *
 * The state crosses the exec in a memfd named by TELEPORTD_RELOAD_FD
 * (docs/operations.md, "Reload"):
 *
 *   [8 bytes "JWRELOAD"][u32 version = 1][u32 njobs][i32 listen_fd]
 *   [u32 0] then njobs entries of RELOAD_ENTRY bytes:
 *   [32 bytes id][i32 pid][i32 pidfd][i32 out_fd][i32 err_fd]
 *   [i32 status_fd][i32 reaped][i32 wstatus][u32 stop_reason]
 *   [u64 kill_in_ms]
 *
 * in the host's byte order (the exec is on the same host). A state whose
 * size is not exactly that, whose version is another, with more than
 * JW_RELOAD_MAX_JOBS jobs, or naming a descriptor that is not open, is
 * refused whole.
 */
#ifndef TELEPORTD_RELOAD_H
#define TELEPORTD_RELOAD_H

#include <stddef.h>
#include <uv.h>

#include "jobworker/supervisor.h"

#define JW_RELOAD_ENV "TELEPORTD_RELOAD_FD"
#define JW_RELOAD_VERSION 1u
/* The most jobs a state may carry (--max-jobs' own maximum). */
#define JW_RELOAD_MAX_JOBS 1000000u
/* How long `teleportd --check` may take, and how much of its stderr is kept. */
#define JW_RELOAD_CHECK_TIMEOUT_MS 30000
#define JW_RELOAD_CHECK_STDERR_MAX 2048

typedef struct {
  int listen_fd; /* -1: none */
  jw_job_handover_t *jobs;
  size_t njobs;
} jw_reload_state_t;

/*
 * The absolute path of the running binary, for a reload to exec (a new
 * binary installed there takes over). Returns 0 or -errno.
 */
int jw_reload_self_path(char *buf, size_t size);

/*
 * Takes the state a reloading predecessor left (JW_RELOAD_ENV), and
 * unsets the variable. Returns 0 with st->listen_fd -1 when there is
 * none, 1 with st filled (free with jw_reload_state_free), or -1 with why
 * in errbuf (every descriptor the state names is closed then, as far as
 * its length holds them).
 */
int jw_reload_take(jw_reload_state_t *st, char *errbuf, size_t errlen);

void jw_reload_state_free(jw_reload_state_t *st);

typedef struct jw_reload_check_s jw_reload_check_t;

/*
 * Runs `path --check argv[1..]` and calls done from the loop once it ended
 * (or was killed after JW_RELOAD_CHECK_TIMEOUT_MS): ok, or why not (its
 * stderr, cut to JW_RELOAD_CHECK_STDERR_MAX). Returns 0 or a libuv error.
 */
int jw_reload_check(uv_loop_t *loop, const char *path, char *const *argv,
                    void (*done)(int ok, const char *why, void *data),
                    void *data);

/*
 * Writes the state into a memfd and execs path with argv and the
 * environment plus JW_RELOAD_ENV, the signals blocked. Returns only on failure:
 * -errno, with errbuf saying which step failed (the descriptors are still
 * open).
 */
int jw_reload_exec(const char *path, char *const *argv,
                   const jw_reload_state_t *st, char *errbuf, size_t errlen);

/*
 * Blocks SIGTERM, SIGINT and SIGHUP (the exec keeps them blocked and
 * pending), and unblocks them: the next image calls the latter once their
 * handlers are installed, and any that came meanwhile is delivered.
 */
void jw_reload_block_signals(void);
void jw_reload_unblock_signals(void);

#endif /* TELEPORTD_RELOAD_H */
