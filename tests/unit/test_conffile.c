/*
 * The "key = value" reader both teleportd --config and the teleport CLI's
 * config use (lib/common/conffile.c): entries with their lines and
 * sections, the malformed lines it refuses, the files it will not read
 * (world-writable, too big, not regular), and the typo distance.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_common.h"
#include "conffile.h"

static char dir[64], path[128];
static jw_conffile_t f;

static const char *put(const char *text, size_t len, mode_t mode) {
  if (dir[0] == '\0') {
    snprintf(dir, sizeof(dir), "/tmp/test_conffile.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
  }
  snprintf(path, sizeof(path), "%s/config", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
  ck_assert_int_eq(fchmod(fd, mode), 0);
  ck_assert_int_eq(close(fd), 0);
  return path;
}

static void cleanup(void) {
  unlink(path);
  rmdir(dir);
  dir[0] = '\0';
}

START_TEST(test_entries) {
  static const char text[] = "# comment\n"
                             "\n"
                             "a = 1\n"
                             "  b=two words  \r\n"
                             "[ctx alice@server1 ]\n"
                             "addr = [::1]:3000 # not a comment\n"
                             "   # indented comment\n"
                             "c.d_e-f = =x";
  /* Every entry in order, with the section it is in (NULL: none). */
  static const struct {
    const char *section, *key, *value;
    unsigned line;
  } want[] = {
      {NULL, "a", "1", 3},
      {NULL, "b", "two words", 4},
      {"ctx alice@server1", "addr", "[::1]:3000 # not a comment", 6},
      {"ctx alice@server1", "c.d_e-f", "=x", 8},
  };
  jw_conffile_entry_t e;
  const char *why;
  ck_assert_int_eq(jw__conffile_load(&f, put(text, strlen(text), 0644)), 0);
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    ck_assert_int_eq(jw__conffile_next(&f, &e, &why), 1);
    if (want[i].section == NULL)
      ck_assert_ptr_null(e.section);
    else
      ck_assert_str_eq(e.section, want[i].section);
    ck_assert_str_eq(e.key, want[i].key);
    ck_assert_str_eq(e.value, want[i].value);
    ck_assert_uint_eq(e.line, want[i].line);
  }
  ck_assert_int_eq(jw__conffile_next(&f, &e, &why), 0);
  ck_assert_int_eq(jw__conffile_next(&f, &e, &why), 0);
  cleanup();
}
END_TEST

START_TEST(test_malformed) {
  static const struct {
    const char *text;
    size_t len;
    unsigned line;
    const char *why;
  } cases[] = {
      {"a = 1\nno equals\n", 16, 2, "want \"key = value\""},
      {"a =  \n", 6, 1, "no value"},
      {" = 1\n", 5, 1, "a key is"},
      {"a b = 1\n", 8, 1, "a key is"},
      {"[open\n", 6, 1, "section header"},
      {"\n[ ]\n", 5, 2, "no name"},
      {"a = x\0y\n", 8, 1, "NUL"},
  };
  jw_conffile_entry_t e;
  const char *why;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ck_assert_int_eq(
        jw__conffile_load(&f, put(cases[i].text, cases[i].len, 0600)), 0);
    int r;
    while ((r = jw__conffile_next(&f, &e, &why)) == 1)
      ;
    ck_assert_msg(r == -EINVAL, "case %zu accepted", i);
    ck_assert_uint_eq(e.line, cases[i].line);
    ck_assert_msg(strstr(why, cases[i].why) != NULL, "case %zu: %s", i, why);
  }
  cleanup();
}
END_TEST

START_TEST(test_files_refused) {
  static char big[JW_CONFFILE_MAX_BYTES + 1];
  memset(big, '#', sizeof(big));
  ck_assert_int_eq(jw__conffile_load(&f, put("a = 1\n", 6, 0602)), -EPERM);
  ck_assert_int_eq(jw__conffile_load(&f, put("a = 1\n", 6, 0620)), 0);
  ck_assert_int_eq(jw__conffile_load(&f, put(big, sizeof(big), 0600)), -EFBIG);
  ck_assert_int_eq(jw__conffile_load(&f, put(big, sizeof(big) - 1, 0600)), 0);
  ck_assert_uint_eq(f.len, JW_CONFFILE_MAX_BYTES);
  ck_assert_int_eq(jw__conffile_load(&f, dir), -EISDIR);
  ck_assert_int_eq(jw__conffile_load(&f, "/dev/null"), -EINVAL);
  ck_assert_int_eq(jw__conffile_load(&f, "/nonexistent/config"), -ENOENT);
  cleanup();
}
END_TEST

START_TEST(test_distance) {
  ck_assert_uint_eq(jw__conffile_distance("max-jobs", "max-jobs"), 0);
  ck_assert_uint_eq(jw__conffile_distance("max-jbos", "max-jobs"), 2);
  ck_assert_uint_eq(jw__conffile_distance("adr", "addr"), 1);
  ck_assert_uint_eq(jw__conffile_distance("", "key"), 3);
  ck_assert_uint_eq(jw__conffile_distance("kitten", "sitting"), 3);
  char longer[80];
  memset(longer, 'a', sizeof(longer) - 1);
  longer[sizeof(longer) - 1] = '\0';
  ck_assert_uint_eq(jw__conffile_distance(longer, "a"), 255);
}
END_TEST

int main(void) {
  TEST_RUN_CORE("conffile", 0, test_entries, test_malformed, test_files_refused,
                test_distance);
}
