#!/usr/bin/env bash
# make deb: one Debian binary package, jobworker, with teleportd,
# teleport, jw-certs, libjobworker (shared library, headers, pkg-config
# file), the man pages, teleport's completions and teleportd.service.
#
# A release build in build-deb/ (prefix /usr, so sysconfdir is /etc), its
# `meson install --destdir` tree, control files from packaging/deb/, and
# dpkg-deb. No debhelper: the package is one tree and a few scripts.
# Depends is checked against what the ELF files need: every shared library
# they link must come from a package named in Depends (dpkg -S), so a new
# library dependency cannot ship unnoticed.
#
# Output: build/deb/jobworker_VERSION_ARCH.deb (the path is printed last).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
bdir=${DEB_BUILD_DIR:-$src/build-deb}
out=$src/build/deb
root=$out/root
cd "$src"

if [ ! -f "$bdir/build.ninja" ]; then
  # As the Docker image builds: warnings are CI's job (-Werror there).
  meson setup "$bdir" --prefix=/usr --buildtype=release -Dwerror=false \
    -Dtests=false -Dbench=false >/dev/null
fi
ninja -C "$bdir" >/dev/null

version=$(meson introspect --projectinfo "$bdir" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg --print-architecture)

rm -rf "$root"
mkdir -p "$root"
DESTDIR=$root meson install -C "$bdir" --no-rebuild --quiet >/dev/null

# What a distribution package does with the tree: no static library (the
# package is for running and linking against the installed .so), stripped
# ELF files, compressed man pages.
find "$root" -name '*.a' -delete
elfs=()
while IFS= read -r f; do
  if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    elfs+=("$f")
  fi
done < <(find "$root" -type f)
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${elfs[@]}"
find "$root/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
install -d "$root/usr/share/doc/jobworker"
{
  echo "jobworker: a job worker service (teleportd, teleport, libjobworker)."
  echo "See README.md and docs/ in the source, and teleportd(8)."
  echo
  echo "License: MIT"
} >"$root/usr/share/doc/jobworker/copyright"

# Control files.
depends=$(sed -n 's/^Depends: //p' packaging/deb/control.in)
install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  packaging/deb/control.in >"$root/DEBIAN/control"
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$s" "$root/DEBIAN/$s"
done

# Depends against the libraries the ELF files link.
missing=""
for f in "${elfs[@]}"; do
  for so in $(objdump -p "$f" | awk '$1 == "NEEDED" { print $2 }'); do
    case $so in libjobworker.so.*) continue ;; esac
    # awk reads all of ldconfig's output: an early exit would end the
    # pipeline with SIGPIPE, and pipefail then fails the build (141).
    path=$(ldconfig -p | awk -v so="$so" '$1 == so && !found { print $NF; found = 1 }')
    [ -n "$path" ] || { echo "build-deb: $so (needed by $f) is not on this host" >&2; exit 1; }
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n '1s/:.*//p') ||
      pkg=$(dpkg -S "$path" 2>/dev/null | sed -n '1s/:.*//p')
    [ -n "$pkg" ] || { echo "build-deb: no package owns $path ($so)" >&2; exit 1; }
    echo ", $depends," | grep -qE ", $pkg( \([^)]*\))?," || missing="$missing $pkg($so)"
  done
done
if [ -n "$missing" ]; then
  echo "build-deb: packaging/deb/control.in's Depends lacks:$missing" >&2
  exit 1
fi

deb=$out/jobworker_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$root"
echo "$deb"
