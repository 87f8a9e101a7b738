/*
 * teleportd's reload: the check of the next binary, the state handed over
 * the execve(2) and taking it back (reload.h has the state's format).
 */
#include "reload.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define RELOAD_MAGIC "JWRELOAD"
#define RELOAD_HDR 24
#define RELOAD_ENTRY (JW_ID_LEN + 8 * 4 + 8)
/* Arguments a reload passes on: teleportd's flags are far fewer. */
#define RELOAD_MAX_ARGS 1024

int jw_reload_self_path(char *buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n < 0)
    return -errno;
  if ((size_t)n >= size - 1)
    return -ENAMETOOLONG;
  buf[n] = '\0';
  return 0;
}

/* ---- The state -------------------------------------------------------- */

static void put_i32(unsigned char **p, int32_t v) {
  memcpy(*p, &v, 4);
  *p += 4;
}

static int32_t get_i32(const unsigned char **p) {
  int32_t v;
  memcpy(&v, *p, 4);
  *p += 4;
  return v;
}

void jw_reload_state_free(jw_reload_state_t *st) {
  free(st->jobs);
  st->jobs = NULL;
  st->njobs = 0;
}

/* Whether fd is open; -1 (none) counts as fine. */
static int fd_ok(int fd) {
  return fd == -1 || (fd >= 3 && fcntl(fd, F_GETFD) >= 0);
}

/*
 * A refused state's descriptors are nobody's: closes each one it names
 * (the listening socket, every job's), as far as its length holds them.
 */
static void close_named(const unsigned char *buf, size_t len) {
  const unsigned char *p;
  if (buf == NULL || len < RELOAD_HDR)
    return;
  p = buf + 16;
  int32_t lfd = get_i32(&p);
  if (lfd >= 3 && fcntl(lfd, F_GETFD) >= 0)
    close(lfd);
  for (p = buf + RELOAD_HDR; p + RELOAD_ENTRY <= buf + len;) {
    const unsigned char *q = p + JW_ID_LEN + 4; /* past the id and pid */
    for (int k = 0; k < 4; k++) {
      int32_t fd = get_i32(&q);
      if (fd >= 3 && fcntl(fd, F_GETFD) >= 0)
        close(fd);
    }
    p += RELOAD_ENTRY;
  }
}

int jw_reload_take(jw_reload_state_t *st, char *errbuf, size_t errlen) {
  const char *v = getenv(JW_RELOAD_ENV);
  unsigned char *buf = NULL;
  const unsigned char *p;
  struct stat sb;
  uint32_t version, n;
  char *end;
  long fd;
  size_t i;

  memset(st, 0, sizeof(*st));
  st->listen_fd = -1;
  if (v == NULL)
    return 0;
  errno = 0;
  fd = strtol(v, &end, 10);
  unsetenv(JW_RELOAD_ENV);
  if (errno != 0 || *end != '\0' || fd < 3 || fd > INT32_MAX ||
      fstat((int)fd, &sb) != 0) {
    snprintf(errbuf, errlen, "%s is not an open descriptor", JW_RELOAD_ENV);
    return -1;
  }
  if (sb.st_size < RELOAD_HDR ||
      sb.st_size > RELOAD_HDR + (off_t)JW_RELOAD_MAX_JOBS * RELOAD_ENTRY ||
      (buf = malloc((size_t)sb.st_size)) == NULL ||
      pread((int)fd, buf, (size_t)sb.st_size, 0) != sb.st_size) {
    snprintf(errbuf, errlen, "cannot read the reload state (%lld bytes)",
             (long long)sb.st_size);
    free(buf);
    buf = NULL;
    goto fail;
  }
  p = buf + 8;
  version = (uint32_t)get_i32(&p);
  n = (uint32_t)get_i32(&p);
  st->listen_fd = get_i32(&p);
  if (memcmp(buf, RELOAD_MAGIC, 8) != 0 || version != JW_RELOAD_VERSION) {
    snprintf(errbuf, errlen, "reload state of another format or version %u",
             (unsigned)version);
    goto fail;
  }
  if (n > JW_RELOAD_MAX_JOBS ||
      (off_t)RELOAD_HDR + (off_t)n * RELOAD_ENTRY != sb.st_size) {
    snprintf(errbuf, errlen, "reload state of %u jobs has the wrong size",
             (unsigned)n);
    goto fail;
  }
  p = buf + RELOAD_HDR;
  st->jobs = calloc(n > 0 ? n : 1, sizeof(*st->jobs));
  if (st->jobs == NULL) {
    snprintf(errbuf, errlen, "out of memory");
    goto fail;
  }
  for (i = 0; i < n; i++) {
    jw_job_handover_t *h = &st->jobs[i];
    uint64_t ms;
    memcpy(h->id, p, JW_ID_LEN);
    h->id[JW_ID_LEN] = '\0';
    p += JW_ID_LEN;
    h->proc.pid = get_i32(&p);
    h->proc.pidfd = get_i32(&p);
    h->proc.out_fd = get_i32(&p);
    h->proc.err_fd = get_i32(&p);
    h->proc.status_fd = get_i32(&p);
    h->proc.reaped = get_i32(&p);
    h->proc.wstatus = get_i32(&p);
    h->stop_reason = (jw_end_reason_t)get_i32(&p);
    h->proc.stop_requested = h->stop_reason != JW_END_NONE;
    memcpy(&ms, p, 8);
    p += 8;
    h->proc.kill_in_ms = ms;
    st->njobs = i + 1;
    if (!fd_ok(h->proc.pidfd) || !fd_ok(h->proc.out_fd) ||
        !fd_ok(h->proc.err_fd) || !fd_ok(h->proc.status_fd)) {
      snprintf(errbuf, errlen, "reload state names a closed descriptor");
      goto fail;
    }
  }
  if (!fd_ok(st->listen_fd) || st->listen_fd < 0) {
    snprintf(errbuf, errlen, "reload state has no listening socket");
    goto fail;
  }
  free(buf);
  close((int)fd);
  return 1;

fail:
  close_named(buf, (size_t)sb.st_size);
  st->listen_fd = -1;
  jw_reload_state_free(st);
  free(buf);
  close((int)fd);
  return -1;
}

int jw_reload_exec(const char *path, char *const *argv,
                   const jw_reload_state_t *st, char *errbuf, size_t errlen) {
  size_t size = RELOAD_HDR + st->njobs * RELOAD_ENTRY, nenv = 0;
  unsigned char *buf, *p;
  char var[64], **envp;
  int fd, err;

  if (st->njobs > JW_RELOAD_MAX_JOBS) {
    snprintf(errbuf, errlen, "too many jobs to hand over");
    return -E2BIG;
  }
  if ((buf = calloc(1, size)) == NULL) {
    snprintf(errbuf, errlen, "out of memory");
    return -ENOMEM;
  }
  memcpy(buf, RELOAD_MAGIC, 8);
  p = buf + 8;
  put_i32(&p, (int32_t)JW_RELOAD_VERSION);
  put_i32(&p, (int32_t)st->njobs);
  put_i32(&p, st->listen_fd);
  put_i32(&p, 0);
  for (size_t i = 0; i < st->njobs; i++) {
    const jw_job_handover_t *h = &st->jobs[i];
    uint64_t ms = h->proc.kill_in_ms;
    memcpy(p, h->id, JW_ID_LEN);
    p += JW_ID_LEN;
    put_i32(&p, h->proc.pid);
    put_i32(&p, h->proc.pidfd);
    put_i32(&p, h->proc.out_fd);
    put_i32(&p, h->proc.err_fd);
    put_i32(&p, h->proc.status_fd);
    put_i32(&p, h->proc.reaped);
    put_i32(&p, h->proc.wstatus);
    put_i32(&p, (int32_t)h->stop_reason);
    memcpy(p, &ms, 8);
    p += 8;
  }
  /* Not close-on-exec: the next image reads it, then closes it. */
  fd = memfd_create("teleportd-reload", 0);
  if (fd < 0 || write(fd, buf, size) != (ssize_t)size) {
    err = -errno;
    snprintf(errbuf, errlen, "cannot write the reload state: %s",
             strerror(errno));
    free(buf);
    if (fd >= 0)
      close(fd);
    return err;
  }
  free(buf);
  while (environ[nenv] != NULL)
    nenv++;
  envp = calloc(nenv + 2, sizeof(*envp));
  if (envp == NULL) {
    close(fd);
    snprintf(errbuf, errlen, "out of memory");
    return -ENOMEM;
  }
  snprintf(var, sizeof(var), "%s=%d", JW_RELOAD_ENV, fd);
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], JW_RELOAD_ENV "=", strlen(JW_RELOAD_ENV) + 1) != 0)
      envp[k++] = environ[i];
  envp[k] = var;
  /*
   * A signal that comes between the exec and the next image's handlers
   * would take the default action, ending the server: blocked, it stays
   * pending across execve(2) until jw_reload_unblock_signals.
   */
  jw_reload_block_signals();
  execve(path, argv, envp);
  err = -errno;
  snprintf(errbuf, errlen, "cannot execute %s: %s", path, strerror(errno));
  free(envp);
  close(fd);
  return err;
}

static void mask_signals(int how) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(how, &set, NULL);
}

void jw_reload_block_signals(void) { mask_signals(SIG_BLOCK); }

void jw_reload_unblock_signals(void) { mask_signals(SIG_UNBLOCK); }

/* ---- The check -------------------------------------------------------- */

struct jw_reload_check_s {
  uv_process_t proc;
  uv_pipe_t err;
  uv_timer_t timer;
  int open;   /* handles not closed yet */
  int exited; /* the process ended (or could not start) */
  int eof;    /* its stderr is at its end */
  int status;
  int term_signal;
  char why[JW_RELOAD_CHECK_STDERR_MAX + 64];
  size_t len;
  void (*done)(int ok, const char *why, void *data);
  void *data;
};

static void check_closed(uv_handle_t *h) {
  jw_reload_check_t *c = h->data;
  if (--c->open > 0)
    return;
  /* Its last line, without the newline, is what a log line can carry. */
  while (c->len > 0 &&
         (c->why[c->len - 1] == '\n' || c->why[c->len - 1] == '\r'))
    c->why[--c->len] = '\0';
  if (c->exited && c->status == 0 && c->term_signal == 0)
    c->done(1, NULL, c->data);
  else {
    if (c->len == 0)
      snprintf(c->why, sizeof(c->why),
               c->term_signal != 0 ? "killed by signal %d" : "exit status %d",
               c->term_signal != 0 ? c->term_signal : c->status);
    c->done(0, c->why, c->data);
  }
  free(c);
}

static void check_maybe_end(jw_reload_check_t *c) {
  if (!c->exited || !c->eof)
    return;
  uv_close((uv_handle_t *)&c->timer, check_closed);
  uv_close((uv_handle_t *)&c->proc, check_closed);
  if (!uv_is_closing((uv_handle_t *)&c->err))
    uv_close((uv_handle_t *)&c->err, check_closed);
}

static void on_check_exit(uv_process_t *p, int64_t status, int sig) {
  jw_reload_check_t *c = p->data;
  c->exited = 1;
  c->status = (int)status;
  c->term_signal = sig;
  check_maybe_end(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char scratch[512];
  (void)h;
  (void)hint;
  *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  jw_reload_check_t *c = s->data;
  if (n > 0) {
    /* The first JW_RELOAD_CHECK_STDERR_MAX bytes: the rest is dropped. */
    size_t room = JW_RELOAD_CHECK_STDERR_MAX - c->len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(c->why + c->len, buf->base, take);
    c->len += take;
    c->why[c->len] = '\0';
    return;
  }
  if (n < 0) {
    c->eof = 1;
    uv_read_stop(s);
    check_maybe_end(c);
  }
}

static void on_check_timeout(uv_timer_t *t) {
  jw_reload_check_t *c = t->data;
  uv_process_kill(&c->proc, SIGKILL);
  /* A grandchild may still hold stderr: stop waiting for it. */
  c->eof = 1;
  uv_read_stop((uv_stream_t *)&c->err);
  check_maybe_end(c);
}

int jw_reload_check(uv_loop_t *loop, const char *path, char *const *argv,
                    void (*done)(int ok, const char *why, void *data),
                    void *data) {
  jw_reload_check_t *c = calloc(1, sizeof(*c));
  char *args[RELOAD_MAX_ARGS + 2];
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  size_t n = 0;
  int r;

  if (c == NULL)
    return UV_ENOMEM;
  args[n++] = (char *)path;
  args[n++] = "--check";
  for (size_t i = 1; argv[i] != NULL; i++) {
    if (n >= RELOAD_MAX_ARGS) {
      free(c);
      return UV_E2BIG;
    }
    args[n++] = argv[i];
  }
  args[n] = NULL;
  c->done = done;
  c->data = data;
  uv_pipe_init(loop, &c->err, 0);
  uv_timer_init(loop, &c->timer);
  c->err.data = c->timer.data = c->proc.data = c;
  c->open = 3;
  memset(&o, 0, sizeof(o));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&c->err;
  o.file = path;
  o.args = args;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = on_check_exit;
  r = uv_spawn(loop, &c->proc, &o);
  if (r != 0) {
    /* uv_spawn leaves a handle to close even when it fails. */
    snprintf(c->why, sizeof(c->why), "cannot run %s --check: %s", path,
             uv_strerror(r));
    c->len = strlen(c->why);
    c->exited = 1;
    c->status = 127;
    c->eof = 1;
    check_maybe_end(c);
    return 0;
  }
  uv_read_start((uv_stream_t *)&c->err, on_alloc, on_err_read);
  uv_timer_start(&c->timer, on_check_timeout, JW_RELOAD_CHECK_TIMEOUT_MS, 0);
  return 0;
}
