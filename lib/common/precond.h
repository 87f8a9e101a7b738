/*
 * Preconditions of the public API that, broken, would corrupt memory
 * (closing an object twice, reusing a pending request): the library
 * aborts with a message naming the call rather than going on. Checks that
 * a caller can recover from return an error code instead.
 */
#ifndef JW_COMMON_PRECOND_H
#define JW_COMMON_PRECOND_H

#include <stdio.h>
#include <stdlib.h>

#define JW__CHECK(cond, msg)                                                   \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "libjobworker: %s\n", (msg));                            \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#endif /* JW_COMMON_PRECOND_H */
