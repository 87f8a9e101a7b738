#!/bin/sh
# Checks that binaries are built the way distributions harden them, from
# what the ELF files themselves say (readelf):
#   PIE             ELF type DYN, FLAGS_1 PIE
#   full RELRO      a GNU_RELRO segment and BIND_NOW (-z relro -z now)
#   no exec stack   GNU_STACK not executable
#   stack canaries  __stack_chk_fail imported (-fstack-protector-strong)
#   FORTIFY         some glibc __*_chk function imported (-D_FORTIFY_SOURCE=2;
#                   "full" only: sanitizer builds leave FORTIFY out)
# -fstack-clash-protection and -fcf-protection leave no mark that readelf
# can check on every host; meson.build adds them with the rest.
#
# usage: check-hardening.sh full|basic BINARY...
#   meson test runs it (suite "hardening") on its own build's teleportd and
#   teleport, and with JW_PLAIN_BUILD (default $JW_SOURCE_ROOT/build, the
#   `make build` tree) set, also "full" on that build's binaries; the
#   Docker image's build stage runs it on the image's binaries.
set -u
level=${1:-}
case $level in
full | basic) shift ;;
*)
  echo "usage: $0 full|basic BINARY..." >&2
  exit 2
  ;;
esac
[ $# -gt 0 ] || {
  echo "usage: $0 full|basic BINARY..." >&2
  exit 2
}
command -v readelf >/dev/null 2>&1 || {
  echo "check-hardening: readelf (binutils) is not installed" >&2
  exit 1
}

failed=0
check_one() {
  bin=$1 lvl=$2
  if [ ! -f "$bin" ]; then
    echo "not ok $bin: missing"
    failed=1
    return
  fi
  head=$(readelf -h "$bin" 2>&1)
  dyn=$(readelf -d "$bin" 2>&1)
  segs=$(readelf -l -W "$bin" 2>&1)
  syms=$(readelf --dyn-syms -W "$bin" 2>&1)
  bad=""
  echo "$head" | grep -Eq '^ *Type: *DYN ' || bad="$bad, not PIE (type $(echo "$head" | sed -n 's/^ *Type: *//p'))"
  echo "$dyn" | grep -Eq 'FLAGS_1.*PIE' || bad="$bad, no FLAGS_1 PIE"
  echo "$segs" | grep -q 'GNU_RELRO' || bad="$bad, no GNU_RELRO segment"
  echo "$dyn" | grep -Eq '\(FLAGS\).*BIND_NOW|FLAGS_1.*NOW' || bad="$bad, no BIND_NOW"
  echo "$segs" | grep -E 'GNU_STACK' | grep -q 'RWE' && bad="$bad, executable stack"
  echo "$syms" | grep -q ' __stack_chk_fail' || bad="$bad, no __stack_chk_fail (stack protector)"
  chk=$(echo "$syms" | grep -oE ' __[a-z0-9_]+_chk(@|$)' | grep -v __stack_chk | tr -d ' @' | sort -u | tr '\n' ' ')
  if [ "$lvl" = full ] && [ -z "$chk" ]; then
    bad="$bad, no __*_chk function (_FORTIFY_SOURCE)"
  fi
  if [ -n "$bad" ]; then
    echo "not ok $bin ($lvl):${bad#,}"
    failed=1
  else
    echo "ok $bin ($lvl): PIE, full RELRO (BIND_NOW), stack protector${chk:+, FORTIFY: $chk}"
  fi
}

for b in "$@"; do
  check_one "$b" "$level"
done

# Under meson test: the plain build too, at the full level.
if [ -n "${JW_SOURCE_ROOT:-}" ]; then
  plain=${JW_PLAIN_BUILD:-$JW_SOURCE_ROOT/build}
  here=$(cd "${JW_BUILD_ROOT:-.}" && pwd -P)
  there=$(cd "$plain" 2>/dev/null && pwd -P || echo "$plain")
  if [ "$there" != "$here" ]; then
    if [ ! -f "$plain/build.ninja" ]; then
      echo "not ok: no plain build in $plain (make build, or set JW_PLAIN_BUILD)"
      failed=1
    else
      for b in server/teleportd client/teleport; do
        check_one "$plain/$b" full
      done
    fi
  fi
fi
exit $failed
