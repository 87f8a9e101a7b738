#!/usr/bin/env bash
# Makes this test run's certificates, once, with the project's own
# certificate tool: a CA, the server (localhost, 127.0.0.1, ::1) and the
# clients the tests use. Usage: tests/make-certs.sh DIR
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
tool="$(cd "$(dirname "$0")/.." && pwd)/certs/jw-certs"
rm -rf "$dir"
"$tool" --dir "$dir" init >/dev/null
"$tool" --dir "$dir" server >/dev/null
for name in alice bob; do
  "$tool" --dir "$dir" client "$name" >/dev/null
done
echo "test certificates in $dir"
