/*
 * jw-spawnrate: the machine's process start rate, the ceiling that the
 * Start RPC is held to. Runs posix_spawn of a program (default /bin/true,
 * with /dev/null as stdin and an empty environment but PATH, as a job
 * gets) for --seconds, keeping --inflight children alive at once and
 * reaping each with waitpid. Prints one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *prog = "/bin/true";
  double seconds = 2.0;
  int inflight = 1;
  static const struct option longopts[] = {
      {"program", required_argument, NULL, 'p'},
      {"seconds", required_argument, NULL, 's'},
      {"inflight", required_argument, NULL, 'i'},
      {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'p':
      prog = optarg;
      break;
    case 's':
      seconds = atof(optarg);
      break;
    case 'i':
      inflight = atoi(optarg);
      break;
    default:
      fprintf(stderr, "usage: jw-spawnrate [--program P] [--seconds S] "
                      "[--inflight N]\n");
      return 2;
    }
  }
  if (seconds <= 0 || inflight < 1) {
    fprintf(stderr, "jw-spawnrate: --seconds and --inflight must be > 0\n");
    return 2;
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  char *const child_argv[] = {(char *)prog, NULL};
  char *const child_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};

  uint64_t reaped = 0;
  int running = 0;
  double t0 = now_s(), end = t0 + seconds;
  for (;;) {
    int more = now_s() < end;
    while (more && running < inflight) {
      pid_t pid;
      int err = posix_spawn(&pid, prog, &fa, &attr, child_argv, child_env);
      if (err != 0) {
        fprintf(stderr, "jw-spawnrate: posix_spawn %s: %s\n", prog,
                strerror(err));
        return 1;
      }
      running++;
    }
    if (running == 0)
      break;
    int status;
    if (waitpid(-1, &status, 0) < 0) {
      if (errno == EINTR)
        continue;
      perror("jw-spawnrate: waitpid");
      return 1;
    }
    running--;
    reaped++;
  }
  double t1 = now_s();
  printf("{\"program\":\"%s\",\"inflight\":%d,\"spawned\":%llu,"
         "\"seconds\":%.3f,\"per_s\":%.1f}\n",
         prog, inflight, (unsigned long long)reaped, t1 - t0,
         (double)reaped / (t1 - t0));
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return 0;
}
