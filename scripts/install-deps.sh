#!/bin/sh
# Installs the Debian packages the project builds and tests with, if any is missing
# (clang, libclang-rt-14-dev and libomp-14-dev: the libFuzzer harnesses, OpenMP under clang).
# Idempotent: checks with dpkg-query first, so a machine that has them all pays nothing.
# As root it runs apt-get; otherwise it prints the exact command to run and fails.
set -eu
PKGS="build-essential pkg-config libopenblas-openmp-dev libopenmpi-dev openmpi-bin libprotobuf-c-dev \
protobuf-c-compiler libhdf5-dev hdf5-tools libcjson-dev libinih-dev libpcre2-dev libutf8proc-dev valgrind gnuplot-nox \
clang libclang-rt-14-dev libomp-14-dev"
[ -n "${LORA_EXTRA_PKGS:-}" ] && PKGS="$PKGS $LORA_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || { echo "install-deps: apt-get update failed" >&2; exit 1; }
    $cmd -qq || { echo "install-deps: '$cmd' failed" >&2; exit 1; }
else
    echo "install-deps: missing packages:$missing" >&2
    echo "install-deps: run as root:  apt-get update && $cmd" >&2
    exit 1
fi
