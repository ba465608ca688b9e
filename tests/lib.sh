# Shared by the shell tests: the build dir, a temp dir removed on exit, and
# mpirun with the options this machine needs (root, oversubscription, idle
# ranks yielding instead of busy-polling).
B=${B:-${1:-build}}
LORA="$B/bin/lora"
WORKER="$B/bin/lora_worker"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0"
TMPD=$(mktemp -d /tmp/lora-test-XXXXXX)
cleanup_tmp() {
    local j
    for j in $(jobs -p); do kill -9 "$j" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMPD"
}
trap cleanup_tmp EXIT
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
mpi() { # mpi NP args... : runs lora_worker on NP ranks
    local np=$1
    shift
    mpirun --oversubscribe --bind-to none -np "$np" "$WORKER" "$@"
}
mpi_bg() { # mpi_bg NP args... : starts lora_worker on NP ranks in the background; $job is mpirun's pid
    local np=$1
    shift
    mpirun --oversubscribe --bind-to none -np "$np" "$WORKER" "$@" &
    job=$!
}
finish() {
    [ $fails -eq 0 ] && echo "$(basename "$0"): all passed" || echo "$(basename "$0"): $fails failed"
    exit $((fails > 0))
}
