/*
 * GetOutput for the tests: a reader of the job's log copied to two fds.
 * Only the public API is used; it is not exported (supervisor_int.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "fs.h"
#include "supervisor_int.h"

#define COPY_BUF_SIZE (64 * 1024)

ssize_t jw__supervisor_get_output(jw_supervisor_t *sup, const char *id,
                                  const char *owner, int out_fd, int err_fd) {
  jw_outlog_reader_t *r;
  jw_stream_t stream;
  ssize_t total = 0;
  char *buf;
  int err;

  if (sup == NULL)
    return JW_EINVAL;
  buf = malloc(COPY_BUF_SIZE);
  if (buf == NULL)
    return -ENOMEM;
  err = jw_supervisor_subscribe(sup, id, owner, NULL, NULL, &r);
  if (err < 0) {
    free(buf);
    return err;
  }
  for (;;) {
    ssize_t n = jw_outlog_read(r, buf, COPY_BUF_SIZE, &stream);
    if (n == 0 || n == JW_EAGAIN)
      break;
    if (n < 0) {
      total = n;
      break;
    }
    err = jw__write_all(stream == JW_STDERR ? err_fd : out_fd, buf, (size_t)n);
    if (err < 0) {
      total = err;
      break;
    }
    total += n;
  }
  jw_outlog_reader_close(r);
  free(buf);
  return total;
}
