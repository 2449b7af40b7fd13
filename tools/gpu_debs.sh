#!/usr/bin/env bash
# tools/gpu_debs.sh - fetches, as Debian .deb files into .gpu-debs/, what
# tests/gpu/check.sh needs to build netc on a machine that has no package
# registry and may lack them: flex, bison, m4 and zlib's headers.  Run it
# here (apt-get download needs no root), then carry .gpu-debs to the GPU
# machine with the working tree.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download flex bison m4 libfl2 libfl-dev zlib1g-dev
ls -la
