#!/usr/bin/env bash
# Builds the real ollama binary (CLI and server, CPU only) from its Go module
# for the acceptance tests that point the CLI at a moltbot node
# (test/acceptance/ollamacli_test.go). Needs Go, gcc/g++ and two Debian
# header packages (installed when missing, with sudo when not root); modules
# come from the Go module proxy. Audio decoding is shimmed out (miniaudio is
# not packaged in Debian; the CLI never decodes audio). About 8 minutes cold
# (cgo compiles llama.cpp); nothing to do when OUTDIR/bin/ollama exists.
# Usage: build.sh OUTDIR [VERSION]   -> OUTDIR/bin/ollama (VERSION: v0.17.4)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
ver=${2:-v0.17.4}
if [ -x "$out/bin/ollama" ]; then
  echo "$out/bin/ollama"
  exit 0
fi
if command -v apt-get >/dev/null && ! dpkg -s nlohmann-json3-dev libstb-dev >/dev/null 2>&1; then
  sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq nlohmann-json3-dev libstb-dev >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq nlohmann-json3-dev libstb-dev >/dev/null; }
fi
mkdir -p "$out/inc/miniaudio"
cp "$here/miniaudio-shim.h" "$out/inc/miniaudio/miniaudio.h"
# Built into a temporary GOBIN, then moved: an interrupted build leaves no
# binary that the next run would take for a finished one.
tmp=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=1 CGO_CPPFLAGS="-I$out/inc" CGO_CXXFLAGS="-I$out/inc -O2" GOBIN="$tmp" \
  go install "github.com/ollama/ollama@$ver"
mkdir -p "$out/bin"
mv "$tmp/ollama" "$out/bin/ollama"
echo "$out/bin/ollama"
