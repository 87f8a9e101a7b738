#!/bin/sh
# The heap trim's real effect (test_trim_gives_pages_back) needs glibc's
# own heap, which the ASan build's allocator and valgrind's replace: this
# runs the plain build's test_trim, where that test does run. `make test`
# points JW_PLAIN_BUILD at the plain build; without it there is none to run.
plain=${JW_PLAIN_BUILD:-}
if [ -z "$plain" ]; then
  echo "SKIP: JW_PLAIN_BUILD is not set (make test sets it)"
  exit 77
fi
exe=$plain/tests/unit/test_trim
if [ ! -x "$exe" ]; then
  echo "not ok: $exe is missing: build the plain tree first (make build)"
  exit 1
fi
exec "$exe"
