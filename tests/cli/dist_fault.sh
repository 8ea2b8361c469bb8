#!/usr/bin/env bash
# A rank killed with SIGKILL mid-training (issue 14): the job ends non-zero within 60 s with a
# message naming the lost rank, the last checkpoint is intact, and --resume continues from it.
# usage: dist_fault.sh MPIEXEC BLIP FIXTURE WORK
set -uo pipefail
mpiexec="$1" blip="$2" fixture="$3" work="$4"
rm -rf "$work" && mkdir -p "$work"
# The pid of the blip process that MPI made rank 1 of this script's job: its command line names
# this test's folder, so a rank 1 of another MPI test running beside it (ctest -j) is left alone.
rank1_pid() {
  for pid in $(pgrep -f "$blip"); do
    tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$work" || continue
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then echo "$pid"; return; fi
  done
}
"$fixture" "$work" > /dev/null || exit 1
args=(-q -j 1 train --preset tiny --checkpoint "$work/tiny.safetensors" --vocab "$work/vocab.txt" --dataset jsonl
      --ann "$work/ann.jsonl" --images "$work/images" --batch 2 --lr 1e-3 --steps 3000 --save-every 5 --out "$work/run")
"$mpiexec" --oversubscribe --bind-to none -np 2 "$blip" "${args[@]}" > "$work/log" 2>&1 &
launcher=$!
state="$work/run/training_state.safetensors"
for _ in $(seq 600); do [ -f "$state" ] && break; sleep 0.1; done
[ -f "$state" ] || { echo "no checkpoint after 60 s"; cat "$work/log"; kill -9 $launcher; exit 1; }
victim=$(rank1_pid)
[ -n "$victim" ] || { echo "rank 1 not found"; kill -9 $launcher; exit 1; }
start=$(date +%s)
kill -9 "$victim"
wait $launcher
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "launcher exit $rc after ${elapsed} s"
cat "$work/log"
[ $rc -ne 0 ] || { echo "FAIL: the job exited 0 after a rank was killed"; exit 1; }
[ $elapsed -le 60 ] || { echo "FAIL: the job took ${elapsed} s to end"; exit 1; }
grep -q "rank 1" "$work/log" || { echo "FAIL: no message names rank 1"; exit 1; }
# The checkpoint is whole (it is CRC-checked on load) and the run continues from it: one more
# step (--stop-after 1 stops after the first step this call takes), saved again.
resume_args=("${args[@]:1}")  # without -q: the "resumed from" line
"$mpiexec" --oversubscribe --bind-to none -np 2 "$blip" "${resume_args[@]}" --resume "$state" --stop-after 1 \
  > "$work/resume.log" 2>&1
rc=$?
echo "--- resume (exit $rc)"; cat "$work/resume.log"
[ $rc -eq 0 ] || { echo "FAIL: --resume from the last checkpoint failed"; exit 1; }
grep -q "resumed from" "$work/resume.log" || { echo "FAIL: the run did not resume"; exit 1; }

# A rank that stops (SIGSTOP: alive, silent) is found by blip's own timeout: rank 0 reports it
# by name and the job ends.
rm -rf "$work/run2"
args2=("${args[@]}")
args2[${#args2[@]}-1]="$work/run2"
BLIP_DIST_TIMEOUT_S=3 "$mpiexec" --oversubscribe --bind-to none -np 2 "$blip" "${args2[@]}" > "$work/log2" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ -f "$work/run2/training_state.safetensors" ] && break; sleep 0.1; done
victim=$(rank1_pid)
[ -n "$victim" ] || { echo "rank 1 not found (second run)"; kill -9 $launcher; exit 1; }
start=$(date +%s)
kill -STOP "$victim"
wait $launcher
rc=$?
elapsed=$(( $(date +%s) - start ))
kill -9 "$victim" 2>/dev/null
echo "--- stopped rank: launcher exit $rc after ${elapsed} s"; cat "$work/log2"
[ $rc -ne 0 ] || { echo "FAIL: the job exited 0 with a stopped rank"; exit 1; }
[ $elapsed -le 60 ] || { echo "FAIL: the job took ${elapsed} s to end"; exit 1; }
grep -q "rank 1 did not answer" "$work/log2" || { echo "FAIL: blip's timeout did not name rank 1"; exit 1; }
echo "PASS"
