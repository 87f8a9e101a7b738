/*
 * The CLI's own configuration: named contexts (a server and who to be on
 * it) in $XDG_CONFIG_HOME/teleport/config, so that a user of many hosts
 * switches with one word. The file is the "key = value" format teleportd's
 * --config reads (lib/common/conffile.c), with a "[context NAME]" section
 * per context:
 *
 *   default-context = alice@server1
 *
 *   [context alice@server1]
 *   addr = server1.example:3000
 *   cacert = certs/ca.cert       (relative: to the config's directory)
 *   cert = certs/alice.cert
 *   key = certs/alice.key
 *
 * A context only fills what neither a flag nor a TELEPORT_* variable set.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "conffile.h"

#define MAX_CONTEXTS 64

typedef struct {
  const char *name;
  unsigned line;
  /* addr, cacert, cert, key: the settings a context may give */
  const char *value[4];
} context_t;

/*
 * The parsed file. The CLI runs one command and exits, so the one config
 * it reads lives in static storage (the text alone is 64 KiB).
 */
static struct {
  char path[4096];
  char dir[4096]; /* path's directory, for relative paths */
  bool exists;
  jw_conffile_t file;
  context_t contexts[MAX_CONTEXTS];
  size_t n;
  const char *default_name;
  unsigned default_line;
} conf;

static const char *const keys[4] = {"addr", "cacert", "cert", "key"};

static int conf_error(unsigned line, const char *fmt, const char *a) {
  fprintf(stderr, "teleport: %s:%u: ", conf.path, line);
  fprintf(stderr, fmt, a);
  fputc('\n', stderr);
  return CLI_EXIT_USAGE;
}

static bool good_name(const char *s) {
  for (const char *p = s; *p != '\0'; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || strchr("@._-:", *p) != NULL))
      return false;
  return s[0] != '\0';
}

static context_t *find(const char *name) {
  for (size_t i = 0; i < conf.n; i++)
    if (strcmp(conf.contexts[i].name, name) == 0)
      return &conf.contexts[i];
  return NULL;
}

/* Where the config is: $XDG_CONFIG_HOME/teleport/config, else ~/.config. */
static int config_path(void) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg != NULL && xdg[0] == '/')
    n = snprintf(conf.path, sizeof(conf.path), "%s/teleport/config", xdg);
  else if (home != NULL && home[0] == '/')
    n = snprintf(conf.path, sizeof(conf.path), "%s/.config/teleport/config",
                 home);
  else
    return -ENOENT;
  if (n < 0 || (size_t)n >= sizeof(conf.path))
    return -ENAMETOOLONG;
  memcpy(conf.dir, conf.path, (size_t)n + 1);
  *strrchr(conf.dir, '/') = '\0';
  return 0;
}

int cli_config_load(void) {
  static bool loaded;
  jw_conffile_entry_t e;
  const char *why;
  context_t *cur = NULL;
  const char *cur_section = NULL;
  int r;

  if (loaded)
    return 0;
  loaded = true;
  if (config_path() != 0)
    return 0; /* no home: no contexts */
  r = jw__conffile_load(&conf.file, conf.path);
  if (r == -ENOENT)
    return 0;
  if (r == -EPERM) {
    fprintf(stderr,
            "teleport: refusing %s: anyone may write it (chmod o-w %s)\n",
            conf.path, conf.path);
    return CLI_EXIT_USAGE;
  }
  if (r != 0) {
    fprintf(stderr, "teleport: cannot read %s: %s\n", conf.path,
            r == -EFBIG    ? "it is over 64 KiB"
            : r == -EINVAL ? "it is not a regular file"
                           : strerror(-r));
    return CLI_EXIT_USAGE;
  }
  conf.exists = true;
  while ((r = jw__conffile_next(&conf.file, &e, &why)) == 1) {
    if (e.section == NULL) {
      if (strcmp(e.key, "default-context") != 0)
        return conf_error(e.line,
                          "unknown key %s (before the first [context NAME], "
                          "only default-context)",
                          e.key);
      if (conf.default_name != NULL)
        return conf_error(e.line, "%s given twice", e.key);
      conf.default_name = e.value;
      conf.default_line = e.line;
      continue;
    }
    if (e.section != cur_section) {
      /* A new section: the parser keeps its text until the next one. */
      if (strncmp(e.section, "context ", 8) != 0)
        return conf_error(e.line, "[%s]: want [context NAME]", e.section);
      const char *name = e.section + 8;
      name += strspn(name, " \t");
      if (!good_name(name))
        return conf_error(e.line,
                          "context name \"%s\": letters, digits and @._-: only",
                          name);
      if (find(name) != NULL)
        return conf_error(e.line, "context %s given twice", name);
      if (conf.n == MAX_CONTEXTS)
        return conf_error(e.line, "more than %s contexts", "64");
      cur = &conf.contexts[conf.n++];
      memset(cur, 0, sizeof(*cur));
      cur->name = name;
      cur->line = e.line;
      cur_section = e.section;
    }
    size_t k;
    for (k = 0; k < 4; k++)
      if (strcmp(e.key, keys[k]) == 0)
        break;
    if (k == 4)
      return conf_error(e.line,
                        "unknown key %s (a context has addr, cacert, cert "
                        "and key)",
                        e.key);
    if (cur->value[k] != NULL)
      return conf_error(e.line, "%s given twice", e.key);
    cur->value[k] = e.value;
  }
  if (r < 0)
    return conf_error(e.line, "%s", why);
  if (conf.default_name != NULL && find(conf.default_name) == NULL)
    return conf_error(conf.default_line, "default-context %s is not defined",
                      conf.default_name);
  return 0;
}

/* Lists the known contexts on stderr after an error about one. */
static void known_contexts(void) {
  if (!conf.exists) {
    fprintf(stderr, "teleport: no contexts: %s does not exist\n",
            conf.path[0] ? conf.path : "~/.config/teleport/config");
    return;
  }
  fprintf(stderr, "teleport: the contexts in %s:", conf.path);
  for (size_t i = 0; i < conf.n; i++)
    fprintf(stderr, "%s%s", i ? ", " : " ", conf.contexts[i].name);
  fputs(conf.n ? "\n" : " none\n", stderr);
}

/*
 * The context in use: --context, else TELEPORT_CONTEXT, else the file's
 * default-context; *out NULL when none. Returns 0, or prints the unknown
 * name with the known ones and returns CLI_EXIT_USAGE.
 */
static int pick(const cli_conn_t *conn, const context_t **out,
                const char **by) {
  const char *name = conn->context, *env = getenv("TELEPORT_CONTEXT");
  int r;

  *out = NULL;
  *by = "--context";
  if ((r = cli_config_load()) != 0)
    return r;
  if (name == NULL && env != NULL && env[0] != '\0')
    name = env, *by = "TELEPORT_CONTEXT";
  if (name == NULL)
    name = conf.default_name, *by = "default-context";
  if (name == NULL)
    return 0;
  if (name[0] == '\0' || (*out = find(name)) == NULL) {
    fprintf(stderr, "teleport: unknown context '%s' (from %s)\n", name, *by);
    known_contexts();
    return CLI_EXIT_USAGE;
  }
  return 0;
}

int cli_config_apply(cli_conn_t *conn) {
  const char **fields[4] = {&conn->addr, &conn->files.cacert, &conn->files.cert,
                            &conn->files.key};
  const context_t *ctx;
  const char *by;
  int r;

  if ((r = pick(conn, &ctx, &by)) != 0 || ctx == NULL)
    return r;
  conn->context_name = ctx->name;
  for (size_t k = 0; k < 4; k++) {
    const char *v = ctx->value[k];
    if (*fields[k] != NULL || v == NULL)
      continue;
    /* Paths are relative to the config's directory, not to where we run. */
    if (k > 0 && v[0] != '/') {
      char *buf = conn->context_paths[k - 1];
      int n =
          snprintf(buf, sizeof(conn->context_paths[0]), "%s/%s", conf.dir, v);
      if (n < 0 || (size_t)n >= sizeof(conn->context_paths[0]))
        return conf_error(ctx->line, "%s: the path is too long", keys[k]);
      v = buf;
    }
    *fields[k] = v;
  }
  return 0;
}

/* Writes NAME as default-context: a new file beside it, then rename. */
static int use_context(const char *name) {
  static jw_conffile_t raw; /* the file as it is, unparsed */
  char tmp[4096 + 16], line[160];
  struct stat st;
  size_t at = 0, end = 0;
  int fd, r, n;

  if ((r = jw__conffile_load(&raw, conf.path)) != 0) {
    fprintf(stderr, "teleport: cannot read %s: %s\n", conf.path, strerror(-r));
    return CLI_EXIT_FAIL;
  }
  if (conf.default_line > 0) {
    /* Replace the default-context line, keeping every other byte. */
    for (unsigned l = 1; l < conf.default_line; l++)
      at += strcspn(raw.text + at, "\n") + 1;
    end = at + strcspn(raw.text + at, "\n");
    if (end < raw.len)
      end++;
  }
  n = snprintf(line, sizeof(line), "default-context = %s\n", name);
  snprintf(tmp, sizeof(tmp), "%s.XXXXXX", conf.path);
  if (n < 0 || (size_t)n >= sizeof(line) || stat(conf.path, &st) != 0 ||
      (fd = mkstemp(tmp)) < 0) {
    fprintf(stderr, "teleport: cannot write %s: %s\n", conf.path,
            strerror(errno));
    return CLI_EXIT_FAIL;
  }
  bool ok =
      fchmod(fd, st.st_mode & 0755) == 0 &&
      write(fd, raw.text, at) == (ssize_t)at &&
      write(fd, line, (size_t)n) == n &&
      write(fd, raw.text + end, raw.len - end) == (ssize_t)(raw.len - end) &&
      fsync(fd) == 0;
  int err = errno;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, conf.path) != 0) {
    fprintf(stderr, "teleport: cannot write %s: %s\n", conf.path,
            strerror(ok ? errno : err));
    unlink(tmp);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

int cli_cmd_config(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {CLI_CONN_LONGOPTS,
                                           {NULL, 0, NULL, 0}};
  const context_t *ctx;
  const char *by, *sub;
  int c, r, nargs;

  optind = 0; /* getopt starts afresh, as in commands.c */
  if ((c = cli_next_opt(conn, "config", argc, argv, "+:h", longopts)) != -1)
    return c == CLI_OPT_HELPED ? CLI_EXIT_OK
                               : cli_getopt_error("config", c, argv);
  sub = optind < argc ? argv[optind] : "list";
  nargs = optind < argc ? argc - optind - 1 : 0;
  if (strcmp(sub, "use") == 0) {
    if (nargs != 1)
      return cli_usage_error("config", "use takes one context name");
  } else if (strcmp(sub, "list") == 0 || strcmp(sub, "current") == 0) {
    if (nargs != 0)
      return cli_usage_error("config", "'%s' takes no arguments", sub);
  } else {
    return cli_usage_error(
        "config", "unknown subcommand '%s' (list, current, use NAME)", sub);
  }
  if ((r = pick(conn, &ctx, &by)) != 0)
    return r;
  if (strcmp(sub, "current") == 0) {
    if (ctx == NULL) {
      fprintf(stderr, "teleport: no context in use (no --context, "
                      "TELEPORT_CONTEXT or default-context)\n");
      return CLI_EXIT_FAIL;
    }
    printf("%s\n", ctx->name);
    return CLI_EXIT_OK;
  }
  if (strcmp(sub, "use") == 0) {
    const char *name = argv[optind + 1];
    if (find(name) == NULL) {
      fprintf(stderr, "teleport: unknown context '%s'\n", name);
      known_contexts();
      return CLI_EXIT_USAGE;
    }
    return use_context(name);
  }
  if (!conf.exists) {
    known_contexts();
    return CLI_EXIT_OK;
  }
  for (size_t i = 0; i < conf.n; i++) {
    const context_t *x = &conf.contexts[i];
    printf("%s %-24s %s\n", x == ctx ? "*" : " ", x->name,
           x->value[0] != NULL ? x->value[0] : CLI_DEFAULT_ADDR);
  }
  return CLI_EXIT_OK;
}
