/*
 * jw-replaycost: what replaying a job's output log costs per record. It
 * writes a log of --bytes bytes in records of --record bytes each (the
 * shape a job that writes one line per write(2) leaves when the server
 * keeps up: one record per read of the pipe), then reads it back through
 * jw_outlog_read in reads of --read bytes (16384 by default: the DATA frame
 * GetOutput usually pulls into), as a replaying GetOutput does, minus the
 * network. Prints one JSON object: the replay rate in MiB/s, the records
 * and reads it took, and the CPU time per record.
 *
 * The log is created in --dir (a fresh name, removed at the end); the file
 * is in the page cache when it is read, as a just-finished job's is.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "jobworker/outlog.h"

/* Bounds, so that a typo cannot fill the disk or the memory. */
#define MAX_BYTES (4ull << 30)
#define MAX_RECORD (1u << 20)
#define MAX_READ (1u << 20)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(void) {
  fprintf(stderr,
          "usage: jw-replaycost --dir DIR [--bytes N] [--record N] "
          "[--read N]\n"
          "  --bytes N   log size (default 16 MiB, at most 4 GiB)\n"
          "  --record N  bytes per record (default 16, at most 1 MiB)\n"
          "  --read N    bytes per read (default 16384, at most 1 MiB)\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"bytes", required_argument, NULL, 'b'},
      {"record", required_argument, NULL, 'r'},
      {"read", required_argument, NULL, 'R'},
      {NULL, 0, NULL, 0}};
  const char *dir = NULL;
  unsigned long long bytes = 16ull << 20, record = 16, readsz = 16384;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'd':
      dir = optarg;
      break;
    case 'b':
      bytes = strtoull(optarg, NULL, 10);
      break;
    case 'r':
      record = strtoull(optarg, NULL, 10);
      break;
    case 'R':
      readsz = strtoull(optarg, NULL, 10);
      break;
    default:
      usage();
    }
  }
  if (dir == NULL || bytes == 0 || bytes > MAX_BYTES || record == 0 ||
      record > MAX_RECORD || readsz == 0 || readsz > MAX_READ)
    usage();

  char path[4096];
  int len = snprintf(path, sizeof(path), "%s/replaycost-%ld.log", dir,
                     (long)getpid());
  if (len < 0 || (size_t)len >= sizeof(path)) {
    fprintf(stderr, "jw-replaycost: --dir too long\n");
    return 2;
  }
  char *rec = malloc(record);
  char *buf = malloc(readsz);
  if (rec == NULL || buf == NULL) {
    fprintf(stderr, "jw-replaycost: out of memory\n");
    return 1;
  }
  /* Lines of digits, as the line-printing job writes them. */
  memset(rec, '7', record);
  rec[record - 1] = '\n';

  jw_outlog_t *log;
  int err = jw_outlog_create(path, &log);
  if (err < 0) {
    fprintf(stderr, "jw-replaycost: %s: %s\n", path, strerror(-err));
    return 1;
  }
  uint64_t records = 0;
  double t0 = now_s();
  for (uint64_t done = 0; done < bytes; records++) {
    size_t n = bytes - done < record ? (size_t)(bytes - done) : record;
    err = jw_outlog_append(log, JW_STDOUT, rec, n);
    if (err < 0) {
      fprintf(stderr, "jw-replaycost: append: %s\n", strerror(-err));
      jw_outlog_close(log, 1);
      return 1;
    }
    done += n;
  }
  jw_outlog_finish(log);
  double t1 = now_s();

  jw_outlog_reader_t *r;
  err = jw_outlog_reader_open(log, NULL, NULL, &r);
  if (err < 0) {
    fprintf(stderr, "jw-replaycost: reader: %s\n", strerror(-err));
    jw_outlog_close(log, 1);
    return 1;
  }
  uint64_t got = 0, reads = 0;
  double c0 = cpu_s(), t2 = now_s();
  for (;;) {
    jw_stream_t stream;
    ssize_t n = jw_outlog_read(r, buf, readsz, &stream);
    if (n <= 0) {
      if (n < 0) {
        fprintf(stderr, "jw-replaycost: read: %s\n", strerror((int)-n));
        jw_outlog_reader_close(r);
        jw_outlog_close(log, 1);
        return 1;
      }
      break;
    }
    got += (uint64_t)n;
    reads++;
  }
  double t3 = now_s(), c1 = cpu_s();
  jw_outlog_reader_close(r);
  uint64_t disk = jw_outlog_disk_bytes(log);
  jw_outlog_close(log, 1);
  free(rec);
  free(buf);
  if (got != bytes) {
    fprintf(stderr, "jw-replaycost: read %" PRIu64 " of %llu bytes\n", got,
            bytes);
    return 1;
  }
  printf("{\"bytes\":%llu,\"record\":%llu,\"records\":%" PRIu64
         ",\"disk_bytes\":%" PRIu64 ",\"read_size\":%llu,\"reads\":%" PRIu64
         ",\"append_mib_s\":%.1f,\"replay_mib_s\":%.1f,"
         "\"replay_cpu_ns_per_record\":%.0f}\n",
         bytes, record, records, disk, readsz, reads,
         (double)bytes / 1048576.0 / (t1 - t0),
         (double)bytes / 1048576.0 / (t3 - t2),
         (c1 - c0) * 1e9 / (double)records);
  return 0;
}
