# `blip train` and `blip demo` end to end: on a tiny JSONL dataset (make_retrieval_fixture) the
# trained weights must load in `blip eval`; on the installed Fashion-MNIST a run interrupted with
# --stop-after and continued with --resume must end bit-identical to the uninterrupted run, and the
# demo must write its metrics, evaluation and image grid; bad input must fail with a message
# that names what is wrong. Learning itself is checked in test_train.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

# The loss of step `step` in a metrics log, to 4 decimals.
function(loss_at file step var)
  file(STRINGS "${file}" lines)
  foreach(line IN LISTS lines)
    string(JSON s GET "${line}" step)
    if(s EQUAL step)
      string(JSON loss GET "${line}" loss)
      string(SUBSTRING "${loss}" 0 6 loss)
      set(${var} "${loss}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "no step ${step} in ${file}")
endfunction()

# JSONL through the image-text loader, the tiny preset from a checkpoint, then eval on the result.
run(ok "${FIXTURE}" "${WORK}/fx")
set(tiny --preset tiny --vocab "${WORK}/fx/vocab.txt")
set(jsonl --dataset jsonl --ann "${WORK}/fx/ann.jsonl" --images "${WORK}/fx/images")
run(ok "${BLIP}" -q train ${jsonl} ${tiny} --checkpoint "${WORK}/fx/tiny.safetensors" --steps 3 --batch 2 --workers 0
    --out "${WORK}/jsonl" --stop-after 2)
run(ok "${BLIP}" -q train ${jsonl} ${tiny} --steps 3 --batch 2 --workers 0 --out "${WORK}/jsonl"
    --resume "${WORK}/jsonl/training_state.safetensors")
expect_in("${out}" "trained 1 steps")
run(ok "${BLIP}" -q eval ${jsonl} ${tiny} --checkpoint "${WORK}/jsonl/model.safetensors" --topk 2 --recall-k 1)
expect_in("${out}" "i2t/retrieval/Recall@1")
run(fail "${BLIP}" train ${jsonl} ${tiny} --steps 1 --batch 1000 --workers 0 --out "${WORK}/x")
expect_in("${err}" "fewer than one batch of 1000")

set(data_dir /usr/share/datasets/fashion-mnist)
if(NOT EXISTS "${data_dir}/t10k-labels-idx1-ubyte.gz")
  message(STATUS "Fashion-MNIST is not installed at ${data_dir}: the rest is skipped")
  return()
endif()

set(common --steps 6 --batch 32 --lr 1e-3 --seed 3 --log-every 1)
run(ok "${BLIP}" -q train ${common} --out "${WORK}/straight")
run(ok "${BLIP}" -q train ${common} --out "${WORK}/resumed" --stop-after 4)
expect_in("${out}" "trained 4 steps")
run(ok "${BLIP}" train ${common} --out "${WORK}/resumed" --resume "${WORK}/resumed/training_state.safetensors")
expect_in("${err}" "resumed from")
expect_in("${out}" "trained 2 steps")
foreach(step 4 5 6)
  loss_at("${WORK}/straight/metrics.jsonl" ${step} a)
  loss_at("${WORK}/resumed/metrics.jsonl" ${step} b)
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "step ${step}: loss ${a} uninterrupted, ${b} after --resume")
  endif()
endforeach()
# Everything the state holds (weights, momentum copies, queues, AdamW moments, generators, batch
# position) comes back: the resumed run ends bit-identical to the uninterrupted one.
file(SHA256 "${WORK}/straight/model.safetensors" a)
file(SHA256 "${WORK}/resumed/model.safetensors" b)
if(NOT a STREQUAL b)
  message(FATAL_ERROR "the resumed run's weights differ from the uninterrupted run's")
endif()
foreach(f model.safetensors training_state.safetensors)
  if(NOT EXISTS "${WORK}/resumed/${f}")
    message(FATAL_ERROR "blip train did not write ${f}")
  endif()
endforeach()

run(fail "${BLIP}" train --dataset nope)
expect_in("${err}" "unknown --dataset 'nope'")
run(fail "${BLIP}" train --steps 1 --data "${WORK}/missing" --out "${WORK}/x")
expect_in("${err}" "${WORK}/missing/train-images-idx3-ubyte.gz")
run(fail "${BLIP}" train --steps 1 --out "${WORK}/x" --resume "${WORK}/missing.safetensors")
expect_in("${err}" "missing.safetensors")
run(fail "${BLIP}" train --dataset jsonl --steps 1)
expect_in("${err}" "needs --ann FILE and --images DIR")

run(ok "${BLIP}" -q demo --steps 3 --batch 64 --out "${WORK}/demo")
expect_in("${out}" "i2t/retrieval/Recall@1")
expect_in("${out}" "t2i/retrieval/Precision@100")
expect_in("${out}" "\"a pair of trainers\"")
file(READ "${WORK}/demo/queries.png" magic LIMIT 8 HEX)
if(NOT magic STREQUAL "89504e470d0a1a0a")
  message(FATAL_ERROR "queries.png is not a PNG (${magic})")
endif()
file(READ "${WORK}/demo/eval.json" ev)
string(JSON r1 GET "${ev}" "itm/i2t/retrieval/Recall@1")
file(STRINGS "${WORK}/demo/metrics.jsonl" lines)
list(LENGTH lines n)
if(NOT n EQUAL 1)  # log_every 10: only the last of 3 steps
  message(FATAL_ERROR "metrics.jsonl has ${n} lines, expected 1")
endif()
run(fail "${BLIP}" demo --steps 1 --data "${WORK}/missing")
expect_in("${err}" "${WORK}/missing")
