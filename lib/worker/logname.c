#include "logname.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobworker/supervisor.h"

#define LOG_SUFFIX ".log"

char *jw__supervisor_log_path(const char *dir, const char *id) {
  size_t n = strlen(dir) + 1 + strlen(id) + sizeof(LOG_SUFFIX);
  char *p = malloc(n);
  if (p != NULL)
    snprintf(p, n, "%s/%s" LOG_SUFFIX, dir, id);
  return p;
}

int jw_supervisor_is_log_name(const char *name) {
  size_t n = strlen(name);
  if (n != JW_ID_LEN + strlen(LOG_SUFFIX) ||
      strcmp(name + JW_ID_LEN, LOG_SUFFIX) != 0)
    return 0;
  for (size_t i = 0; i < JW_ID_LEN; i++)
    if (!((name[i] >= '0' && name[i] <= '9') ||
          (name[i] >= 'a' && name[i] <= 'f')))
      return 0;
  return 1;
}
