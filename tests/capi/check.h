/* The C API tests' CHECK (C99): counts a failure and prints the condition and a message. One
 * test program per translation unit includes it. */
#ifndef UVIT_TEST_CHECK_H
#define UVIT_TEST_CHECK_H
#include <stdio.h>

static int failures = 0;
#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fprintf(stderr, "\n");                                          \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

#endif
