#!/usr/bin/env bash
# mpi_check.sh <check> <model> <mpi_training binary> <mpirun> <work dir>: one MPI test (tests/mpi/CMakeLists.txt).
#   exact    the single-process run (--local) and runs on 1, 2, 3, 4 ranks write byte-identical weights, for
#            chunks of 4, 3 and 7 samples
#   resume   2 ranks stop at step 4 with a checkpoint; 3 ranks resume it: the weights of the --local run
#   throw    rank 1 throws at step 2: mpirun fails, every rank printed the DistributedError naming rank 1
#   kill     rank 1 dies (SIGKILL) at step 2: mpirun fails within the test's time, naming the signal
#   hang     rank 1 hangs at step 2: the others time out after 5 s and abort the job
set -uo pipefail
check=$1 model=$2 bin=$3 mpirun=$4 work=$5
dir="$work/$check-$model"
rm -rf "$dir" && mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root unless told (CI containers run as root)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1  # more ranks than cores on a small machine
run() {  # run <ranks> <args...>: mpirun with its output in $dir/log
  local n=$1
  shift
  "$mpirun" --oversubscribe -np "$n" "$bin" --model "$model" "$@" >"$dir/log" 2>&1
}
fail() {
  echo "FAIL: $*"
  echo "--- output ---"
  cat "$dir/log"
  exit 1
}

"$bin" --model "$model" --local --out "$dir/local.bin" >"$dir/log" 2>&1 || fail "the single-process run failed"
case "$check" in
  exact)
    # chunks of 4: 4, 4 and 4 chunks per batch; of 3: 6, 6, 5 (trees that are not powers of two); of 7: 3, 3, 2
    # (with 3 and 4 ranks some ranks have no chunk)
    for chunk in 4 3 7; do
      "$bin" --model "$model" --local --chunk "$chunk" --out "$dir/local$chunk.bin" >"$dir/log" 2>&1 ||
        fail "the single-process run with chunks of $chunk failed"
      for n in 1 2 3 4; do
        run "$n" --chunk "$chunk" --out "$dir/ranks$n.bin" || fail "$n ranks: mpirun exited with $?"
        cmp "$dir/local$chunk.bin" "$dir/ranks$n.bin" ||
          fail "$n ranks, chunks of $chunk: the weights differ from the single-process run"
      done
      echo "$model, chunks of $chunk: 1, 2, 3 and 4 ranks bitwise equal to one process ($(stat -c %s "$dir/local.bin") bytes)"
    done
    if cmp -s "$dir/local4.bin" "$dir/local3.bin"; then
      fail "chunks of 4 and 3 gave the same bits: the test cannot see the fold"
    fi
    ;;
  resume)
    run 2 --checkpoint "$dir/run.ckpt" --stop-after 4 || fail "the interrupted run failed"
    [ -f "$dir/run.ckpt" ] || fail "no checkpoint written"
    run 3 --resume "$dir/run.ckpt" --out "$dir/resumed.bin" || fail "the resumed run failed"
    cmp "$dir/local.bin" "$dir/resumed.bin" || fail "the resumed weights differ from the uninterrupted run"
    echo "$model: stopped at step 4 on 2 ranks, resumed on 3: bitwise equal to the uninterrupted run"
    ;;
  throw | kill | hang)
    start=$SECONDS
    run 3 --fault "$check" --fault-rank 1 --fault-step 2 --timeout 5
    rc=$?
    took=$((SECONDS - start))
    [ "$rc" -ne 0 ] || fail "mpirun exited 0 after a $check fault"
    [ "$took" -lt 120 ] || fail "the job took ${took} s to end"
    case "$check" in
      throw)
        n=$(grep -c "DistributedError: DataParallel step 2: rank 1 of 3 failed: injected failure" "$dir/log")
        [ "$n" -eq 3 ] || fail "expected the error on all 3 ranks, found it $n times" ;;
      kill)
        grep -q "rank 1 .*signal 9" "$dir/log" || fail "mpirun did not report rank 1's signal 9" ;;
      hang)
        grep -q "timed out after 5 s" "$dir/log" || fail "no rank reported the timeout" ;;
    esac
    echo "$check on rank 1 at step 2: the job ended in ${took} s with exit code $rc"
    grep -v "^epoch" "$dir/log" | head -5
    ;;
  *) echo "unknown check $check"; exit 2 ;;
esac
exit 0
