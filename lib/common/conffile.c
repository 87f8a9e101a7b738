#include "conffile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int jw__conffile_load(jw_conffile_t *f, const char *path) {
  struct stat st;
  int fd, err = 0;

  memset(f, 0, sizeof(*f));
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  /* The checks are on the file opened, so a swapped path cannot slip by. */
  if (fstat(fd, &st) != 0)
    err = -errno;
  else if (S_ISDIR(st.st_mode))
    err = -EISDIR;
  else if (!S_ISREG(st.st_mode))
    err = -EINVAL;
  else if (st.st_mode & S_IWOTH)
    err = -EPERM;
  else if (st.st_size > JW_CONFFILE_MAX_BYTES)
    err = -EFBIG;
  while (err == 0) {
    /* Read one byte past the cap to notice a file that grew meanwhile. */
    ssize_t n = read(fd, f->text + f->len, sizeof(f->text) - f->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      err = -errno;
    else if (n == 0)
      break;
    else if ((f->len += (size_t)n) > JW_CONFFILE_MAX_BYTES)
      err = -EFBIG;
  }
  close(fd);
  if (err != 0) {
    f->len = 0;
    return err;
  }
  f->text[f->len] = '\0';
  return 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* s[0..n) without its leading and trailing blanks, NUL-terminated. */
static char *trim(char *s, size_t n) {
  while (n > 0 && is_blank(*s))
    s++, n--;
  while (n > 0 && is_blank(s[n - 1]))
    n--;
  s[n] = '\0';
  return s;
}

static int bad_key(const char *key) {
  for (const char *p = key; *p != '\0'; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      return 1;
  return key[0] == '\0';
}

int jw__conffile_next(jw_conffile_t *f, jw_conffile_entry_t *e,
                      const char **why) {
  *why = NULL;
  while (f->pos < f->len) {
    char *start = f->text + f->pos;
    char *nl = memchr(start, '\n', f->len - f->pos);
    size_t n = nl != NULL ? (size_t)(nl - start) : f->len - f->pos;
    f->pos += n + (nl != NULL);
    f->line++;
    e->line = f->line;
    e->section = f->section;
    if (memchr(start, '\0', n) != NULL) {
      *why = "the line holds a NUL byte";
      return -EINVAL;
    }
    char *s = trim(start, n);
    if (s[0] == '\0' || s[0] == '#')
      continue;
    if (s[0] == '[') {
      size_t len = strlen(s);
      if (s[len - 1] != ']') {
        *why = "a section header is \"[NAME]\"";
        return -EINVAL;
      }
      f->section = trim(s + 1, len - 2);
      if (f->section[0] == '\0') {
        *why = "the section has no name";
        return -EINVAL;
      }
      continue;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      *why = "want \"key = value\"";
      return -EINVAL;
    }
    e->key = trim(s, (size_t)(eq - s));
    e->value = trim(eq + 1, strlen(eq + 1));
    if (bad_key(e->key)) {
      *why = "a key is letters, digits, '-', '_' and '.'";
      return -EINVAL;
    }
    if (e->value[0] == '\0') {
      *why = "the key has no value";
      return -EINVAL;
    }
    return 1;
  }
  return 0;
}

unsigned jw__conffile_distance(const char *a, const char *b) {
  unsigned row[64], la = (unsigned)strlen(a), lb = (unsigned)strlen(b);
  if (la >= 64 || lb >= 64)
    return 255;
  for (unsigned j = 0; j <= lb; j++)
    row[j] = j;
  for (unsigned i = 1; i <= la; i++) {
    unsigned diag = row[0];
    row[0] = i;
    for (unsigned j = 1; j <= lb; j++) {
      unsigned up = row[j];
      unsigned best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb] > 255 ? 255 : row[lb];
}
