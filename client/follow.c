/*
 * Following a job's output: GetOutput's messages become write(2)s to fd 1
 * and fd 2, byte for byte. The writes block: a slow reader of our stdout
 * holds the server back through HTTP/2 flow control, which is what we want
 * (nothing piles up here). Ctrl-C cancels the call and leaves the job
 * running; a reader that went away (EPIPE) ends the stream quietly.
 */
#include <errno.h>
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
}

static void on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                   void *data) {
  follow_t *f = data;
  Jobworker__V1__JobOutput *out;
  int fd, err;

  if (f->cancel_pending || f->interrupted)
    return;
  out = jobworker__v1__job_output__unpack(NULL, len, msg);
  if (out == NULL) {
    f->bad_message = true;
    cancel_soon(f);
    return;
  }
  fd = out->stream == JOBWORKER__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR
           ? STDERR_FILENO
           : STDOUT_FILENO;
  err = write_all(fd, out->data.data, out->data.len);
  jobworker__v1__job_output__free_unpacked(out, NULL);
  if (err == 0)
    return;
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

int cli_follow_output(cli_session_t *s, const char *id) {
  Jobworker__V1__GetOutputRequest req = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  char path[128];
  uint8_t *buf;
  size_t len;
  follow_t f;
  int err, rc;

  memset(&f, 0, sizeof(f));
  f.s = s;
  f.id = id;

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

  req.id = (char *)id;
  len = jobworker__v1__get_output_request__get_packed_size(&req);
  buf = malloc(len ? len : 1);
  if (buf == NULL) {
    fprintf(stderr, "teleport: out of memory\n");
    rc = CLI_EXIT_FAIL;
    goto close;
  }
  jobworker__v1__get_output_request__pack(&req, buf);
  cli_method_path(path, sizeof(path), "GetOutput");
  err = jw_rpc_client_call(s->client, path, buf, len, 0, on_msg, on_done, &f,
                           &f.call);
  free(buf);
  if (err != 0) {
    fprintf(stderr, "teleport: cannot ask %s for the output: %s\n",
            s->conn->addr_norm,
            err <= JW_ERR_BASE ? jw_strerror(err) : uv_strerror(err));
    rc = CLI_EXIT_FAIL;
    goto close;
  }
  if (f.done)
    f.call = NULL;
  else if (f.interrupted)
    jw_rpc_ccall_cancel(f.call); /* Ctrl-C came before the call existed. */
  if (!cli_session_run_until(s, &f.done)) {
    rc = CLI_EXIT_FAIL;
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
  } else if (f.status == JW_GRPC_OK) {
    rc = CLI_EXIT_OK;
  } else if (f.interrupted) {
    detach_note(&f);
    rc = CLI_EXIT_DETACHED;
  } else {
    cli_report_status(s, "GetOutput", id, f.status, f.message);
    rc = CLI_EXIT_FAIL;
  }

close:
  uv_close((uv_handle_t *)&f.sigint, on_handle_closed);
  uv_close((uv_handle_t *)&f.cancel_timer, on_handle_closed);
  cli_session_run_until(s, &f.handles_closed);
  free(f.message);
  return rc;
}
