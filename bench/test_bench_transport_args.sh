#!/usr/bin/env bash
# bench/test_bench_transport_args.sh BENCH_TRANSPORT: the run options that
# shape a measurement (--slice, --footprint, --server-pid, --label) refuse
# bad values with their exact message, and a --quick run with all of them
# labels its CSV rows and reports Gbit per CPU-second.  Exit 77 (SKIP)
# when the TCP transport cannot run here.
set -euo pipefail

BIN=${1:?usage: test_bench_transport_args.sh BENCH_TRANSPORT}
TMP=$(mktemp -d /tmp/mcos-btargs.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0

# expect_error "MESSAGE" ARGS...: bench_transport ARGS exits 1 printing
# exactly MESSAGE on stderr.
expect_error() {
    local want=$1 rc=0 got
    shift
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
    got=$(cat "$TMP/err")
    if [[ $rc -ne 1 || $got != "$want" ]]; then
        echo "FAIL: bench_transport $*: exit $rc, stderr:"
        echo "  got:  $got"
        echo "  want: $want"
        FAILS=$((FAILS + 1))
    else
        echo "ok: $*"
    fi
}

P="bench_transport: "
expect_error "${P}--slice: \"1K\" is not a size from 4K to 1G" \
    run --quick --slice 1K
expect_error "${P}--slice: \"2G\" is not a size from 4K to 1G" \
    run --quick --slice 2G
expect_error "${P}--footprint: \"0\" is not a size of at least 1 byte" \
    run --quick --footprint 0
expect_error "${P}--footprint: \"lots\" is not a size of at least 1 byte" \
    run --quick --footprint lots
expect_error "${P}--server-pid: \"0\" is not a process id from 1 to 4194304" \
    run --quick --server-pid 0
expect_error "${P}--label: \"Tcp fp\" is not 1 to 32 of a-z, 0-9 and -" \
    run --quick --label "Tcp fp"
expect_error "${P}--label: \"\" is not 1 to 32 of a-z, 0-9 and -" \
    run --quick --label ""
expect_error "${P}--slice is not an option of serve (see --help)" \
    serve --slice 4M

# A process that is gone: its pid, once reaped.
sleep 0 &
gone=$!
wait "$gone"
if "$BIN" probe --transport tcp >/dev/null 2>&1; then
    expect_error \
        "${P}--server-pid $gone: cannot read /proc/$gone/stat (No such file or directory)" \
        run --quick --server-pid "$gone"
fi

rc=0
"$BIN" run --quick --sizes 4K,256K --slice 64K --footprint 8K \
    --server-pid $$ --label quick-fp --csv "$TMP/q.csv" >"$TMP/q.out" \
    2>&1 || rc=$?
if [[ $rc -eq 77 ]]; then
    cat "$TMP/q.out"
    exit 77
fi
if [[ $rc -ne 0 ]]; then
    echo "FAIL: the --quick run failed (exit $rc):"
    sed 's/^/  /' "$TMP/q.out"
    exit 1
fi
check() {
    if eval "$2"; then
        echo "ok: $1"
    else
        echo "FAIL: $1"
        FAILS=$((FAILS + 1))
    fi
}
check "the header names the slice" "grep -q 'slice 64K\$' '$TMP/q.out'"
check "the CPU figure counts the server pid" \
    "grep -qx 'CPU: this process + pid $$' '$TMP/q.out'"
check "the CSV header has gbit_per_cpu_s" \
    "head -1 '$TMP/q.csv' | grep -qx 'transport,op,size,gbps,lat_p50_us,lat_p99_us,copies_per_byte,gbit_per_cpu_s'"
check "four rows, all labelled quick-fp, each with a positive CPU figure" \
    "[[ \$(awk -F, 'NR > 1 && \$1 == \"quick-fp\" && NF == 8 && \$8 > 0' '$TMP/q.csv' | wc -l) -eq 4 ]]"
if ((FAILS)); then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
