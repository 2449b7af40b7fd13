#!/usr/bin/env bash
# setup.sh - installs, with apt-get, whatever netc needs to build, test and
# train that is missing on a Debian machine.  Safe to run again.
set -eu
pkgs="build-essential cmake flex bison libcmocka-dev zlib1g-dev llvm-dev clang libclang-rt-14-dev
      dataset-fashion-mnist python3-torch libopenmpi-dev openmpi-bin"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
echo "setup: all packages present"
