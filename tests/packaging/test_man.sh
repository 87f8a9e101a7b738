#!/usr/bin/env bash
# The man pages say what the binaries do: every long flag that a --help
# defines (teleportd, teleport and each of its commands, jw-certs) is an
# option of its man page, and every option of a man page is in a --help.
# Each page also formats with groff (or mandoc) without a warning.
#
# A flag "defined" by a --help is one that starts an indented line (at most
# four spaces, optionally after its short form: "  -l, --listen") or one in
# brackets ("[--json]"); a man page's options are the \-\-flags on the line
# after each .TP. Flags named in passing in running text count for neither.
#
# Environment: JW_BUILD_ROOT, JW_SOURCE_ROOT. Exits 1 on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
MAN=$SRC/docs/man
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"

# help_flags: the long flags the --help text on stdin defines, one a line.
help_flags() {
  grep -oE -- '^ {1,4}(-[A-Za-z], )?--[a-z][a-z0-9-]*|\[--[a-z][a-z0-9-]*' |
    grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

# man_flags PAGE: the long flags PAGE lists as options, one a line.
man_flags() {
  awk 'tp { print; tp = 0 } /^\.TP/ { tp = 1 }' "$1" |
    grep -oE -- '\\-\\-[a-z][a-z0-9]*(\\-[a-z0-9]+)*' | sed 's/\\//g' | sort -u
}

# compare NAME PAGE HELPFILE: both directions.
compare() {
  local name=$1 page=$2 help=$3 missing extra
  missing=$(comm -23 <(help_flags <"$help") <(man_flags "$page") | tr '\n' ' ')
  extra=$(comm -13 <(help_flags <"$help") <(man_flags "$page") | tr '\n' ' ')
  local n
  n=$(help_flags <"$help" | wc -l)
  if [ "$n" -lt 3 ]; then
    fail "$name: found only $n flags in --help; is the extraction broken?"
  elif [ -z "$missing" ]; then
    pass "$name: each of the $n flags of --help is in $(basename "$page")"
  else
    fail "$name: flags of --help missing from $(basename "$page"): $missing"
  fi
  if [ -z "$extra" ]; then
    pass "$name: each option of $(basename "$page") is in --help"
  else
    fail "$name: options of $(basename "$page") that --help does not have: $extra"
  fi
}

T=$(mktemp -d /tmp/jw-man.XXXXXX)
trap 'rm -rf "$T"' EXIT

for bin in "$BUILD/server/teleportd" "$BUILD/client/teleport"; do
  [ -x "$bin" ] || {
    echo "test_man: $bin is not built"
    exit 1
  }
done

"$BUILD/server/teleportd" --help >"$T/teleportd.help" 2>&1 ||
  fail "teleportd --help exits $?"
compare teleportd "$MAN/teleportd.8" "$T/teleportd.help"

"$BUILD/client/teleport" --help >"$T/teleport.help" 2>&1 ||
  fail "teleport --help exits $?"
for c in start status output wait kill stop rm list; do
  "$BUILD/client/teleport" "$c" --help >>"$T/teleport.help" 2>&1 ||
    fail "teleport $c --help exits $?"
done
compare teleport "$MAN/teleport.1" "$T/teleport.help"

"$SRC/certs/jw-certs" --help >"$T/jw-certs.help" 2>&1 ||
  fail "jw-certs --help exits $?"
compare jw-certs "$MAN/jw-certs.1" "$T/jw-certs.help"

# Formatting: groff's -ww turns on every warning; mandoc -T lint where
# groff is missing.
for page in "$MAN"/*.[18]; do
  name=$(basename "$page")
  if command -v groff >/dev/null 2>&1; then
    runs_ok -q "$name: groff -man -ww formats it without a warning" "$name: groff -man -ww" \
      groff -man -Tutf8 -ww -z "$page"
  elif command -v mandoc >/dev/null 2>&1; then
    runs_ok -q "$name: mandoc -T lint has no warning" "$name: mandoc -T lint" \
      mandoc -T lint -W warning "$page"
  else
    echo "skip $name: neither groff nor mandoc is installed (apt-get install groff-base)"
  fi
  if command -v man >/dev/null 2>&1; then
    if MANWIDTH=80 man -l "$page" 2>"$T/man.err" | grep -q '^NAME' && [ ! -s "$T/man.err" ]; then
      pass "$name: man -l shows it"
    else
      fail "$name: man -l" "$(head -3 "$T/man.err")"
    fi
  fi
done

summary
