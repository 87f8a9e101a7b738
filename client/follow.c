/*
 * Following a job's output: GetOutput's messages become write(2)s to fd 1
 * and fd 2, byte for byte. The writes block: a slow reader of our stdout
 * holds the server back through HTTP/2 flow control, which is what we want
 * (nothing piles up here). Ctrl-C cancels the call and leaves the job
 * running; a reader that went away (EPIPE) ends the stream quietly.
 *
 * A lost connection is not the end: we connect again and ask for the
 * output from the byte after the last one written. Every byte's place in
 * the job's output is known (the first message of a stream carries its
 * offset, the rest follow on), so bytes a resumed stream repeats are
 * skipped and a gap is reported: what reaches fd 1 and fd 2 is the job's
 * output exactly, whichever way the server came back.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
  cli_session_t *s;
  const char *id;
  jw_rpc_ccall_t *call;
  uv_signal_t sigint;
  uv_timer_t cancel_timer;
  int handles_open;
  bool handles_closed;
  bool done;
  int status;
  char *message;
  bool interrupted;
  bool broken_pipe;
  bool bad_message;
  int write_err;
  int write_fd;
  bool cancel_pending;
  /* The offset of the next byte this stream's next message starts at. */
  uint64_t pos;
  bool pos_known;
  /* The offset after the last byte written, once anything was. */
  uint64_t next;
  bool next_known;
  uint64_t gap_bytes;
  cli_follow_opts_t *opts;
} follow_t;

/* Writes all of buf to fd; returns 0 or -errno. */
static int write_all(int fd, const uint8_t *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* Someone handed us a non-blocking descriptor: wait until it drains. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
          return -errno;
        continue;
      }
      return -errno;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void on_cancel_timer(uv_timer_t *t) {
  follow_t *f = t->data;

  if (f->call != NULL)
    jw_rpc_ccall_cancel(f->call);
}

/*
 * Cancels from a callback of its own rather than from inside on_msg, so
 * the library is never asked to free a call it is still delivering.
 */
static void cancel_soon(follow_t *f) {
  if (f->cancel_pending)
    return;
  f->cancel_pending = true;
  uv_timer_start(&f->cancel_timer, on_cancel_timer, 0, 0);
}

static void detach_note(const follow_t *f) {
  fprintf(stderr,
          "teleport: detached; job %s keeps running ('teleport stop %s' "
          "stops it)\n",
          f->id, f->id);
}

static void on_sigint(uv_signal_t *h, int signum) {
  follow_t *f = h->data;

  if (f->interrupted) {
    /* A second Ctrl-C: the server is slow to let go; go now. */
    detach_note(f);
    _exit(CLI_EXIT_DETACHED);
  }
  f->interrupted = true;
  if (f->call != NULL)
    jw_rpc_ccall_cancel(f->call);
  uv_stop(&f->s->loop);
}

static void on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                   void *data) {
  follow_t *f = data;
  Jobworker__V1__JobOutput *out;
  const uint8_t *bytes;
  size_t n;
  int fd, err;

  if (f->cancel_pending || f->interrupted)
    return;
  out = jobworker__v1__job_output__unpack(NULL, len, msg);
  if (out == NULL) {
    f->bad_message = true;
    cancel_soon(f);
    return;
  }
  if (out->dropped_bytes > f->opts->dropped)
    f->opts->dropped = out->dropped_bytes;
  bytes = out->data.data;
  n = out->data.len;
  if (n == 0) {
    jobworker__v1__job_output__free_unpacked(out, NULL);
    return;
  }
  if (!f->pos_known) {
    f->pos = out->offset;
    f->pos_known = true;
  }
  if (f->next_known && f->pos < f->next) {
    /* A resumed stream repeating what was written: skip it. */
    uint64_t skip = f->next - f->pos;
    if (skip >= n) {
      f->pos += n;
      jobworker__v1__job_output__free_unpacked(out, NULL);
      return;
    }
    bytes += skip;
    n -= (size_t)skip;
    f->pos += skip;
  } else if (f->next_known && f->pos > f->next) {
    f->gap_bytes += f->pos - f->next;
  }
  fd = out->stream == JOBWORKER__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
           ? STDERR_FILENO
           : STDOUT_FILENO;
  err = write_all(fd, bytes, n);
  jobworker__v1__job_output__free_unpacked(out, NULL);
  f->pos += n;
  if (err == 0) {
    f->next = f->pos;
    f->next_known = true;
    f->opts->received += n;
    cli_session_progress(f->s);
    return;
  }
  if (err == -EPIPE) {
    f->broken_pipe = true;
  } else {
    f->write_err = err;
    f->write_fd = fd;
  }
  cancel_soon(f);
}

static void on_done(jw_rpc_ccall_t *call, int grpc_status, const char *message,
                    void *data) {
  follow_t *f = data;

  f->call = NULL;
  f->status = grpc_status;
  f->message = strdup(message != NULL ? message : "");
  f->done = true;
  uv_stop(&f->s->loop);
}

static void on_handle_closed(uv_handle_t *h) {
  follow_t *f = h->data;

  if (--f->handles_open == 0) {
    f->handles_closed = true;
    uv_stop(&f->s->loop);
  }
}

/*
 * Starts one GetOutput call: from the byte after the last one written when
 * anything was, else where the options say. Returns 0 or a library code.
 */
static int start_call(follow_t *f) {
  Jobworker__V1__GetOutputRequest req = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  char path[128];
  uint8_t *buf;
  size_t len;
  int err;

  req.id = (char *)f->id;
  req.no_follow = f->opts->no_follow;
  if (f->next_known) {
    req.offset = f->next;
  } else {
    req.offset = f->opts->from;
    req.tail_lines = f->opts->tail;
  }
  len = jobworker__v1__get_output_request__get_packed_size(&req);
  buf = malloc(len ? len : 1);
  if (buf == NULL)
    return UV_ENOMEM;
  jobworker__v1__get_output_request__pack(&req, buf);
  cli_method_path(path, sizeof(path), "GetOutput");
  f->done = false;
  f->pos_known = false;
  free(f->message);
  f->message = NULL;
  err = f->s->client != NULL
            ? jw_rpc_client_call(f->s->client, path, buf, len, 0, on_msg,
                                 on_done, f, &f->call)
            : UV_ENOTCONN;
  free(buf);
  if (err == 0 && f->done)
    f->call = NULL;
  return err;
}

int cli_follow_output(cli_session_t *s, const char *id,
                      cli_follow_opts_t *opts) {
  follow_t f;
  int err, rc;

  memset(&f, 0, sizeof(f));
  f.s = s;
  f.id = id;
  f.opts = opts;
  opts->dropped = 0;
  opts->received = 0;

  /* Whatever stdio holds must come out before the job's raw bytes. */
  fflush(stdout);

  uv_signal_init(&s->loop, &f.sigint);
  f.sigint.data = &f;
  uv_timer_init(&s->loop, &f.cancel_timer);
  f.cancel_timer.data = &f;
  f.handles_open = 2;
  uv_signal_start(&f.sigint, on_sigint, SIGINT);
  /* The signal watcher must not keep the loop alive on its own. */
  uv_unref((uv_handle_t *)&f.sigint);
  s->abort = &f.interrupted;

  for (;;) {
    err = start_call(&f);
    if (err == 0) {
      if (f.interrupted && f.call != NULL)
        jw_rpc_ccall_cancel(f.call); /* Ctrl-C came before the call. */
      if (!cli_session_run_until(s, &f.done)) {
        rc = CLI_EXIT_FAIL;
        goto close;
      }
    }
    if (f.broken_pipe || f.write_err != 0 || f.bad_message || f.interrupted)
      break;
    if (!cli_session_worth_again(s, err == 0, f.status))
      break;
    if (err == UV_ENOMEM) {
      fprintf(stderr, "teleport: out of memory\n");
      rc = CLI_EXIT_FAIL;
      goto close;
    }
    /* The connection failed under the stream: resume on a new one. */
    rc = cli_session_reconnect(s, err == 0 ? f.message : cli_call_error(err));
    if (rc == CLI_EXIT_DETACHED)
      break;
    if (rc != CLI_EXIT_OK)
      goto close;
  }

  if (f.broken_pipe) {
    rc = CLI_EXIT_PIPE;
  } else if (f.write_err != 0) {
    fprintf(stderr, "teleport: cannot write the job's output to %s: %s\n",
            f.write_fd == STDERR_FILENO ? "stderr" : "stdout",
            strerror(-f.write_err));
    rc = CLI_EXIT_FAIL;
  } else if (f.bad_message) {
    fprintf(stderr,
            "teleport: the server sent output that is not a valid JobOutput "
            "message\n");
    rc = CLI_EXIT_FAIL;
  } else if (f.interrupted) {
    detach_note(&f);
    rc = CLI_EXIT_DETACHED;
  } else if (f.status == JW_GRPC_OK) {
    rc = CLI_EXIT_OK;
  } else {
    cli_report_status(s, "GetOutput", id, f.status, f.message);
    rc = CLI_EXIT_FAIL;
  }
  if (f.gap_bytes > 0)
    fprintf(stderr,
            "teleport: the server skipped %" PRIu64
            " bytes of job %s's output on resuming it\n",
            f.gap_bytes, id);

close:
  s->abort = NULL;
  uv_close((uv_handle_t *)&f.sigint, on_handle_closed);
  uv_close((uv_handle_t *)&f.cancel_timer, on_handle_closed);
  cli_session_run_until(s, &f.handles_closed);
  free(f.message);
  return rc;
}
