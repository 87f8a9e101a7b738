/*
 * Replays files through a fuzz target without libFuzzer: each argument is
 * a file or a directory of files (read in name order, not recursively),
 * each file is one input, copied into a buffer of exactly its size so that
 * the sanitizers see any read past its end. A missing directory is skipped
 * with a note (the generated seeds need python3-h2 and grpc_tools).
 * Exits 0 when every input ran; a crash or a failed check aborts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *p = realloc(buf, cap * 2);
      if (p == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = p;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", path);
    return -1;
  }
  /* Exactly len bytes, so that ASan catches a read past the input. */
  uint8_t *exact = malloc(len > 0 ? len : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "note: %s: %s (skipped)\n", dir, strerror(errno));
    return 0;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **p = realloc(names, cap * sizeof(*names));
      if (p == NULL) {
        rc = -1;
        break;
      }
      names = p;
    }
    size_t l = strlen(dir) + strlen(e->d_name) + 2;
    if ((names[n] = malloc(l)) == NULL) {
      rc = -1;
      break;
    }
    snprintf(names[n], l, "%s/%s", dir, e->d_name);
    n++;
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof(*names), by_name);
  for (size_t i = 0; i < n; i++) {
    struct stat sb;
    if (rc == 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
      if (run_file(names[i]) != 0)
        rc = -1;
      else
        (*count)++;
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  int rc = 0;
  LLVMFuzzerInitialize(&argc, &argv);
  for (int i = 1; i < argc && rc == 0; i++) {
    struct stat sb;
    if (stat(argv[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
      rc = run_file(argv[i]);
      count += rc == 0;
    } else {
      rc = run_dir(argv[i], &count);
    }
  }
  printf("%zu inputs replayed\n", count);
  return rc == 0 ? 0 : 1;
}
