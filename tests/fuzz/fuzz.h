/*
 * The libFuzzer entry points every target under tests/fuzz defines. The
 * same target file links either with libFuzzer (-Dfuzz=true, clang) or
 * with driver.c, which replays corpus and regression files through it in
 * a normal `meson test`.
 */
#ifndef JW_FUZZ_H
#define JW_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message when cond is false: the fuzzers' oracle. */
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond))                                                               \
      fuzz_fail(__FILE__, __LINE__, #cond);                                    \
  } while (0)

void fuzz_fail(const char *file, int line, const char *what)
    __attribute__((noreturn));

#endif /* JW_FUZZ_H */
