/*
 * jw_users: which Unix user a client's jobs run as.
 *
 * Every client known to the policy (from the users file, or allocated a
 * uid) is one entry in a hash table keyed by CN. Allocated uids are also
 * marked in a bitmap over the range, so that finding a free one never
 * scans the entries. The allocation table is rewritten whole, to a
 * temporary file that is then renamed over it, so that a crash leaves
 * the old table or the new one and never half of either.
 */
#include "jobworker/users.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "hex.h"
#include "jobworker/error.h"
#include "list.h"
#include "strmap.h"

/* A longer line in either file is refused: no CN or account is this long. */
#define MAX_LINE 4096
/* The longest CN recorded (escaped, it may take three times as much). */
#define MAX_CN 1024
/* Lines in the users file. */
#define MAX_FILE_LINES 100000

struct entry {
  char *cn;
  jw_user_t user;
  bool refused;   /* "CN -" */
  bool allocated; /* from the range, recorded in the table */
  /*
   * An allocation kept for a CN the users file now maps elsewhere: its
   * uid stays reserved (and recorded) so that no other client gets it,
   * and comes back if the users file drops the CN. Not in the hash.
   */
  bool reserved;
  jw__list_t hnode; /* in the map by CN, unless reserved */
  jw__list_t node;  /* in the list of every entry, newest first */
};

struct jw_users_s {
  char *table_path;
  char *tmp_path;
  char *dir;
  uid_t first, last;
  bool privileged;
  jw__strmap_t by_cn;
  size_t nentries;
  size_t nallocated;
  jw__list_t entries;
  uint8_t *used; /* one bit per uid of the range */
  uid_t cursor;  /* where the search for a free uid starts */
};

static void seterr(char *errbuf, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (errbuf == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
}

static struct entry *find(const jw_users_t *u, const char *cn) {
  jw__list_t *n = jw__strmap_find(&u->by_cn, cn);
  return n != NULL ? jw__list_data(n, struct entry, hnode) : NULL;
}

static struct entry *add(jw_users_t *u, const char *cn, bool reserved) {
  struct entry *e = calloc(1, sizeof(*e));
  if (e == NULL || (e->cn = strdup(cn)) == NULL) {
    free(e);
    return NULL;
  }
  e->reserved = reserved;
  jw__list_init(&e->hnode);
  if (!reserved)
    jw__strmap_insert(&u->by_cn, &e->hnode);
  jw__list_insert_head(&u->entries, &e->node);
  u->nentries++;
  return e;
}

/* Takes e out of the table again (the newest entry only). */
static void drop_newest(jw_users_t *u, struct entry *e) {
  jw__strmap_remove(&u->by_cn, &e->hnode);
  jw__list_remove(&e->node);
  u->nentries--;
  free(e->cn);
  free(e);
}

static bool in_range(const jw_users_t *u, uid_t uid) {
  return uid >= u->first && uid <= u->last;
}

static bool is_used(const jw_users_t *u, uid_t uid) {
  uint32_t i = (uint32_t)(uid - u->first);
  return (u->used[i / 8] >> (i % 8)) & 1;
}

static void set_used(jw_users_t *u, uid_t uid, bool on) {
  uint32_t i = (uint32_t)(uid - u->first);
  if (on)
    u->used[i / 8] |= (uint8_t)(1u << (i % 8));
  else
    u->used[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

/*
 * A CN in the table: bytes that would end the field or the line
 * (controls, space, DEL) and '%' itself as %XX.
 */
static void escape_cn(const char *cn, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *cn != '\0'; cn++) {
    unsigned char c = (unsigned char)*cn;
    if (c <= 0x20 || c == 0x7f || c == '%') {
      *out++ = '%';
      *out++ = hex[c >> 4];
      *out++ = hex[c & 15];
    } else {
      *out++ = (char)c;
    }
  }
  *out = '\0';
}

/* Decodes in place; returns 0, or -1 for a bad escape or a NUL. */
static int unescape_cn(char *s) {
  char *w = s;
  for (; *s != '\0'; s++) {
    if (*s != '%') {
      *w++ = *s;
      continue;
    }
    int hi = jw__hexval(s[1]), lo = hi < 0 ? -1 : jw__hexval(s[2]);
    if (lo < 0 || (hi == 0 && lo == 0))
      return -1;
    *w++ = (char)(hi * 16 + lo);
    s += 2;
  }
  *w = '\0';
  return 0;
}

/* Parses a whole decimal number that fits a uid (not (uid_t)-1). */
static int parse_id(const char *s, size_t len, uint32_t *out) {
  uint64_t v = 0;
  size_t i;
  if (len == 0 || len > 10)
    return -1;
  for (i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v >= UINT32_MAX)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

/* Reads one line of at most MAX_LINE bytes; 1 got one, 0 EOF, -1 too long. */
static int read_line(FILE *f, char *buf) {
  size_t n;
  if (fgets(buf, MAX_LINE + 2, f) == NULL)
    return 0;
  n = strlen(buf);
  if (n > 0 && buf[n - 1] == '\n')
    buf[--n] = '\0';
  else if (!feof(f))
    return -1;
  return 1;
}

/*
 * Resolves an account of the users file: "-" (refused), "root", UID or
 * UID:GID, or a name known to the passwd database.
 */
static int parse_account(const char *acct, struct entry *e, char *why,
                         size_t whylen) {
  const char *colon = strchr(acct, ':');
  uint32_t uid, gid;
  struct passwd *pw;

  if (strcmp(acct, "-") == 0) {
    e->refused = true;
    return 0;
  }
  if (acct[0] >= '0' && acct[0] <= '9') {
    size_t ulen = colon != NULL ? (size_t)(colon - acct) : strlen(acct);
    if (parse_id(acct, ulen, &uid) != 0 ||
        (colon != NULL && parse_id(colon + 1, strlen(colon + 1), &gid) != 0)) {
      snprintf(why, whylen, "want UID or UID:GID, not \"%s\"", acct);
      return -1;
    }
    if (colon == NULL) {
      pw = getpwuid((uid_t)uid);
      gid = pw != NULL ? (uint32_t)pw->pw_gid : uid;
    }
    e->user.uid = (uid_t)uid;
    e->user.gid = (gid_t)gid;
    return 0;
  }
  pw = getpwnam(acct);
  if (pw == NULL) {
    snprintf(why, whylen, "no user \"%s\" on this host", acct);
    return -1;
  }
  e->user.uid = pw->pw_uid;
  e->user.gid = pw->pw_gid;
  return 0;
}

static int load_users_file(jw_users_t *u, const char *path, char *errbuf,
                           size_t errlen) {
  char *line = malloc(MAX_LINE + 2);
  char why[200];
  unsigned lineno = 0;
  int err = 0, r;
  FILE *f;

  if (line == NULL)
    return -ENOMEM;
  f = fopen(path, "re");
  if (f == NULL) {
    err = -errno;
    seterr(errbuf, errlen, "cannot read --users %s: %s", path, strerror(errno));
    free(line);
    return err;
  }
  while ((r = read_line(f, line)) != 0) {
    char *s = line, *end, *acct;
    struct entry *e;
    if (++lineno > MAX_FILE_LINES) {
      seterr(errbuf, errlen, "--users %s: more than %d lines", path,
             MAX_FILE_LINES);
      err = JW_EINVAL;
      break;
    }
    if (r < 0) {
      seterr(errbuf, errlen, "--users %s:%u: line longer than %d bytes", path,
             lineno, MAX_LINE);
      err = JW_EINVAL;
      break;
    }
    while (*s == ' ' || *s == '\t')
      s++;
    if (*s == '\0' || *s == '#')
      continue;
    /* The account is the last word; the CN is everything before it. */
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
      *--end = '\0';
    acct = end;
    while (acct > s && acct[-1] != ' ' && acct[-1] != '\t')
      acct--;
    if (acct == s) {
      seterr(errbuf, errlen,
             "--users %s:%u: want \"CN ACCOUNT\" (ACCOUNT a user name, UID, "
             "UID:GID, root, or - to refuse the client)",
             path, lineno);
      err = JW_EINVAL;
      break;
    }
    end = acct;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
      *--end = '\0';
    if (strlen(s) > MAX_CN) {
      seterr(errbuf, errlen, "--users %s:%u: CN longer than %d bytes", path,
             lineno, MAX_CN);
      err = JW_EINVAL;
      break;
    }
    if (find(u, s) != NULL) {
      seterr(errbuf, errlen, "--users %s:%u: \"%s\" is listed twice", path,
             lineno, s);
      err = JW_EINVAL;
      break;
    }
    if ((e = add(u, s, false)) == NULL) {
      err = -ENOMEM;
      seterr(errbuf, errlen, "out of memory");
      break;
    }
    if (parse_account(acct, e, why, sizeof(why)) != 0) {
      seterr(errbuf, errlen, "--users %s:%u: %s", path, lineno, why);
      err = JW_EINVAL;
      break;
    }
    if (e->refused)
      continue;
    /* A uid of the range named here is never allocated to anyone else. */
    if (in_range(u, e->user.uid))
      set_used(u, e->user.uid, true);
    if (!u->privileged) {
      if (e->user.uid != geteuid()) {
        seterr(errbuf, errlen,
               "--users %s:%u: teleportd is not root, so jobs can only run as "
               "its own user (uid %u), not as %s",
               path, lineno, (unsigned)geteuid(), acct);
        err = JW_EINVAL;
        break;
      }
      continue;
    }
    e->user.set_ids = true;
  }
  if (err == 0 && ferror(f)) {
    err = -EIO;
    seterr(errbuf, errlen, "cannot read --users %s: %s", path, strerror(EIO));
  }
  fclose(f);
  free(line);
  return err;
}

static int load_table(jw_users_t *u, char *errbuf, size_t errlen) {
  char *line = malloc(MAX_LINE + 2);
  unsigned lineno = 0;
  int err = 0, r, fd;
  FILE *f;

  if (line == NULL)
    return -ENOMEM;
  fd = open(u->table_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    err = errno == ENOENT ? 0 : -errno;
    if (err != 0)
      seterr(errbuf, errlen, "cannot read %s: %s", u->table_path,
             strerror(errno));
    free(line);
    return err;
  }
  f = fdopen(fd, "r");
  if (f == NULL) {
    err = -errno;
    close(fd);
    free(line);
    return err;
  }
  while ((r = read_line(f, line)) != 0) {
    char *sp = strchr(line, ' ');
    struct entry *e;
    uint32_t uid;
    lineno++;
    if (r < 0 || sp == NULL || parse_id(line, (size_t)(sp - line), &uid) != 0 ||
        uid == 0 || unescape_cn(sp + 1) != 0 || sp[1] == '\0' ||
        strlen(sp + 1) > MAX_CN) {
      seterr(errbuf, errlen,
             "%s:%u: not a \"UID CN\" line; the file is damaged (restore it, "
             "or remove it to give every client a new uid)",
             u->table_path, lineno);
      err = JW_EINVAL;
      break;
    }
    if (in_range(u, (uid_t)uid) && is_used(u, (uid_t)uid)) {
      seterr(errbuf, errlen,
             "%s:%u: uid %" PRIu32 " of \"%s\" is recorded twice, or "
             "--users gives it to another client",
             u->table_path, lineno, uid, sp + 1);
      err = JW_EINVAL;
      break;
    }
    /* A CN the users file now lists follows the users file. */
    if ((e = add(u, sp + 1, find(u, sp + 1) != NULL)) == NULL) {
      err = -ENOMEM;
      seterr(errbuf, errlen, "out of memory");
      break;
    }
    e->allocated = true;
    e->user.set_ids = u->privileged;
    e->user.uid = (uid_t)uid;
    e->user.gid = (gid_t)uid;
    u->nallocated++;
    /* A uid outside a since-changed range stays its client's. */
    if (in_range(u, (uid_t)uid))
      set_used(u, (uid_t)uid, true);
  }
  if (err == 0 && ferror(f)) {
    err = -EIO;
    seterr(errbuf, errlen, "cannot read %s: %s", u->table_path, strerror(EIO));
  }
  fclose(f);
  free(line);
  return err;
}

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p != NULL)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

int jw_users_open(const jw_users_options_t *opts, jw_users_t **out,
                  char *errbuf, size_t errlen) {
  jw_users_t *u;
  int err;

  *out = NULL;
  if (opts == NULL || opts->data_dir == NULL || opts->first == 0 ||
      opts->first > opts->last || opts->last == (uid_t)-1 ||
      opts->last - opts->first >= JW_USERS_MAX_RANGE) {
    seterr(errbuf, errlen,
           "the job uid range must be FIRST-LAST with 0 < FIRST <= LAST and "
           "at most %u uids",
           JW_USERS_MAX_RANGE);
    return JW_EINVAL;
  }
  u = calloc(1, sizeof(*u));
  if (u == NULL)
    return -ENOMEM;
  u->first = opts->first;
  u->last = opts->last;
  u->cursor = opts->first;
  u->privileged = opts->privileged;
  jw__list_init(&u->entries);
  int merr = jw__strmap_init(&u->by_cn, struct entry, hnode, cn, true);
  u->used = calloc((opts->last - opts->first) / 8 + 1, 1);
  u->dir = strdup(opts->data_dir);
  u->table_path = path_join(opts->data_dir, JW_USERS_TABLE);
  u->tmp_path = path_join(opts->data_dir, JW_USERS_TABLE ".tmp");
  if (merr != 0 || u->used == NULL || u->dir == NULL || u->table_path == NULL ||
      u->tmp_path == NULL) {
    jw_users_free(u);
    seterr(errbuf, errlen, "out of memory");
    return -ENOMEM;
  }
  if ((opts->users_file != NULL &&
       (err = load_users_file(u, opts->users_file, errbuf, errlen)) != 0) ||
      (err = load_table(u, errbuf, errlen)) != 0) {
    jw_users_free(u);
    return err;
  }
  *out = u;
  return 0;
}

/*
 * Writes the table of allocated uids: a temporary file, fsync, rename
 * over the table, fsync of the directory. Returns 0 or -errno (the old
 * table is left as it was).
 */
static int save_table(jw_users_t *u) {
  size_t cap = 64, len = 0;
  struct entry *e;
  jw__list_t *n;
  char *buf;
  int fd, err = 0;

  jw__list_foreach(n, &u->entries) {
    e = jw__list_data(n, struct entry, node);
    if (e->allocated)
      cap += 12 + 3 * strlen(e->cn) + 1;
  }
  buf = malloc(cap);
  if (buf == NULL)
    return -ENOMEM;
  jw__list_foreach(n, &u->entries) {
    char esc[3 * MAX_CN + 1], rec[3 * MAX_CN + 16];
    int k;
    e = jw__list_data(n, struct entry, node);
    if (!e->allocated)
      continue;
    escape_cn(e->cn, esc);
    k = snprintf(rec, sizeof(rec), "%u %s\n", (unsigned)e->user.uid, esc);
    memcpy(buf + len, rec, (size_t)k);
    len += (size_t)k;
  }
  fd = open(u->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
            0600);
  if (fd < 0) {
    err = -errno;
    free(buf);
    return err;
  }
  if ((err = jw__write_all(fd, buf, len)) == 0 && fsync(fd) != 0)
    err = -errno;
  free(buf);
  if (close(fd) != 0 && err == 0)
    err = -errno;
  if (err == 0 && rename(u->tmp_path, u->table_path) != 0)
    err = -errno;
  if (err != 0) {
    unlink(u->tmp_path);
    return err;
  }
  fd = open(u->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return 0;
}

/*
 * The next uid of the range that no client has and no account or group
 * of this host uses. Returns 0 or JW_ELIMIT.
 */
static int free_uid(jw_users_t *u, uid_t *out) {
  uint64_t span = (uint64_t)(u->last - u->first) + 1, i;
  for (i = 0; i < span; i++) {
    uid_t uid =
        u->first + (uid_t)(((uint64_t)(u->cursor - u->first) + i) % span);
    if (is_used(u, uid))
      continue;
    if (getpwuid(uid) != NULL || getgrgid((gid_t)uid) != NULL)
      continue;
    *out = uid;
    return 0;
  }
  return JW_ELIMIT;
}

int jw_users_lookup(jw_users_t *u, const char *cn, jw_user_t *out) {
  struct entry *e;
  uid_t uid;
  int err;

  memset(out, 0, sizeof(*out));
  if (u == NULL || cn == NULL)
    return JW_EINVAL;
  e = find(u, cn);
  if (e != NULL) {
    if (e->refused)
      return JW_EOWNER;
    *out = e->user;
    return 0;
  }
  /* Not root: every job runs as teleportd's own user; nothing to record. */
  if (!u->privileged)
    return 0;
  if (strlen(cn) > MAX_CN || cn[0] == '\0')
    return JW_EINVAL;
  if ((err = free_uid(u, &uid)) != 0)
    return err;
  if ((e = add(u, cn, false)) == NULL)
    return -ENOMEM;
  e->allocated = true;
  e->user.set_ids = u->privileged;
  e->user.uid = uid;
  e->user.gid = (gid_t)uid;
  set_used(u, uid, true);
  if ((err = save_table(u)) != 0) {
    set_used(u, uid, false);
    drop_newest(u, e);
    return err;
  }
  u->nallocated++;
  u->cursor = uid == u->last ? u->first : uid + 1;
  *out = e->user;
  return 0;
}

size_t jw_users_allocated(const jw_users_t *u) {
  return u != NULL ? u->nallocated : 0;
}

void jw_users_free(jw_users_t *u) {
  jw__list_t *n, *tmp;
  if (u == NULL)
    return;
  jw__list_foreach_safe(n, tmp, &u->entries) {
    struct entry *e = jw__list_data(n, struct entry, node);
    free(e->cn);
    free(e);
  }
  jw__strmap_destroy(&u->by_cn);
  free(u->used);
  free(u->dir);
  free(u->table_path);
  free(u->tmp_path);
  free(u);
}
