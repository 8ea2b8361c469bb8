# `blip eval` and `blip train` under mpirun (issue 14): sharded evaluation prints the same JSON,
# byte for byte, as one process, with 2 and 3 ranks; data-parallel training runs and only rank 0
# writes. Every rank uses one thread (-j 1), the same as the single-process run, so the GEMMs
# sum in the same order.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

run(ok "${FIXTURE}" "${WORK}")
set(model --preset tiny --checkpoint "${WORK}/tiny.safetensors" --vocab "${WORK}/vocab.txt")
set(data --dataset jsonl --ann "${WORK}/ann.jsonl" --images "${WORK}/images")
set(mpi "${MPIEXEC}" --oversubscribe --bind-to none -np)

foreach(mode rerank fast)
  if(mode STREQUAL "fast")
    set(extra --fast-match)
  else()
    set(extra --topk 4 --i2t-chunk 2 --t2i-chunk 2)
  endif()
  run(ok "${BLIP}" -q -j 1 eval ${model} ${data} --batch 2 ${extra} --recall-k 1,5 --json -)
  set(single "${out}")
  foreach(np 2 3)
    run(ok ${mpi} ${np} "${BLIP}" -q -j 1 eval ${model} ${data} --batch 2 ${extra} --recall-k 1,5 --json -)
    if(NOT out STREQUAL single)
      message(FATAL_ERROR "eval (${mode}) under mpirun -np ${np} printed\n${out}\ninstead of one process's\n${single}")
    endif()
  endforeach()
endforeach()
# The demo's model on its 10,000 Fashion-MNIST test images (written by cli_train's `blip demo`,
# with test-images.jsonl): the same JSON from 2 ranks as from one.
set(demo --checkpoint "${DEMO}/model.safetensors" --dataset jsonl --ann "${DEMO}/test-images.jsonl"
         --images "${DEMO}/test-images" --fast-match --recall-k 1,5,10 --json -)
run(ok "${BLIP}" -q -j 1 eval ${demo})
set(single "${out}")
run(ok ${mpi} 2 "${BLIP}" -q -j 1 eval ${demo})
if(NOT out STREQUAL single)
  message(FATAL_ERROR "the demo's eval under mpirun -np 2 printed\n${out}\ninstead of one process's\n${single}")
endif()
expect_in("${single}" "\"retrieval/Recall@mean\"")

# The banner says how it ran (rank 0 only).
run(ok ${mpi} 2 "${BLIP}" -j 1 eval ${model} ${data} --batch 2 --fast-match --recall-k 1)
expect_in("${err}" "sharded over 2 ranks (mpi)")
string(REGEX MATCHALL "blip eval: 6 images" banners "${err}")
list(LENGTH banners n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one banner (rank 0's), got ${n}:\n${err}")
endif()

# Data-parallel training: 2 ranks, rank 0's log and checkpoint, resume with the same world.
run(ok ${mpi} 2 "${BLIP}" -q -j 1 train ${model} ${data} --steps 4 --batch 2 --lr 1e-3 --log-every 1 --out "${WORK}/train")
file(STRINGS "${WORK}/train/metrics.jsonl" lines)
list(LENGTH lines n)
if(NOT n EQUAL 4)
  message(FATAL_ERROR "expected 4 metrics lines from rank 0 alone, got ${n}")
endif()
run(fail "${BLIP}" -q -j 1 train ${model} ${data} --steps 6 --batch 2 --resume "${WORK}/train/training_state.safetensors"
    --out "${WORK}/train")
expect_in("${err}" "was saved by 2 ranks and this run has 1")
run(ok ${mpi} 2 "${BLIP}" -q -j 1 train ${model} ${data} --steps 6 --batch 2 --lr 1e-3 --log-every 1
    --resume "${WORK}/train/training_state.safetensors" --out "${WORK}/train")
file(STRINGS "${WORK}/train/metrics.jsonl" lines)
list(LENGTH lines n)
if(NOT n EQUAL 6)
  message(FATAL_ERROR "expected 6 metrics lines after the resume, got ${n}")
endif()
