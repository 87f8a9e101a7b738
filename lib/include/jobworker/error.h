/*
 * Error codes of libjobworker.
 *
 * Functions return 0 or a negative code. System errors pass through as
 * -errno (the same values as libuv's UV_E* on Linux); the project's own
 * codes live in a range of their own below JW_ERR_BASE.
 */
#ifndef JOBWORKER_ERROR_H
#define JOBWORKER_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define JW_ERR_BASE (-30000)

enum jw_error {
  /* No job with that id. */
  JW_ENOTFOUND = JW_ERR_BASE - 1,
  /* The job belongs to another owner. */
  JW_EOWNER = JW_ERR_BASE - 2,
  /* The object is closing or closed; the call did nothing. */
  JW_ECLOSED = JW_ERR_BASE - 3,
  /* Nothing to read yet; the notify callback fires when there is. */
  JW_EAGAIN = JW_ERR_BASE - 4,
  /* A configured limit was reached. */
  JW_ELIMIT = JW_ERR_BASE - 5,
  /* The request was canceled before it completed. */
  JW_ECANCELED = JW_ERR_BASE - 6,
  /* Malformed input (a bad job spec, a bad message). */
  JW_EINVAL = JW_ERR_BASE - 7,
  /* A TLS failure; the OpenSSL error queue says more. */
  JW_ETLS = JW_ERR_BASE - 8,
  /* An HTTP/2 protocol failure. */
  JW_EHTTP2 = JW_ERR_BASE - 9,
  /* The peer or the configuration failed verification. */
  JW_EVERIFY = JW_ERR_BASE - 10,
  /* The host cannot do what was asked (no cgroup controller for a limit). */
  JW_EUNSUPPORTED = JW_ERR_BASE - 11,
};

/*
 * Returns a static English description of err: the project's own codes,
 * or strerror(-err) for a system error. Never returns NULL.
 */
const char *jw_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_ERROR_H */
