# Issue 11 ("Robust inputs") through the `blip` tool: hostile files and paths give a clear error
# with the documented exit status (0 ok, 1 bad input or failed run, 2 bad command line) — never a
# crash, a hang or a silent success. The parsers' own cases are in test_robust_inputs.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

# run(usage CMD...): status 2, the command-line error.
function(run_usage)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  set(err "${err}" PARENT_SCOPE)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "should fail with status 2 (got ${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

run(ok "${FIXTURE}" "${WORK}")
set(vocab --vocab "${WORK}/vocab.txt")
set(model --preset tiny --checkpoint "${WORK}/tiny.safetensors" ${vocab})

# Exit codes and readable range messages.
run(ok "${BLIP}" --version)
run_usage("${BLIP}" index ${model} --images "${WORK}/images" --out "${WORK}/x.idx" --batch 0)
expect_in("${err}" "must be positive, got 0")
string(FIND "${err}" "1.797" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "unreadable range message: ${err}")
endif()
run_usage("${BLIP}" index ${model} --images "${WORK}/images")
expect_in("${err}" "--out")
run_usage("${BLIP}" search --no-such-option)

# Paths that are not regular files: named for what they are, never read or waited on (a FIFO).
execute_process(COMMAND mkfifo "${WORK}/fifo.safetensors" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkfifo failed")
endif()
run(fail "${BLIP}" index --preset tiny --checkpoint "${WORK}/images" ${vocab} --images "${WORK}/images" --out "${WORK}/x.idx")
expect_in("${err}" "holds no weights")  # a folder is taken as a model folder
run(fail "${BLIP}" index --preset tiny --checkpoint "${WORK}/fifo.safetensors" ${vocab} --images "${WORK}/images" --out "${WORK}/x.idx")
expect_in("${err}" "FIFO")
run(fail "${BLIP}" eval ${model} --dataset jsonl --ann "${WORK}/fifo.safetensors" --images "${WORK}/images" --recall-k 1)
expect_in("${err}" "FIFO")

# A checkpoint that cannot be read says why, without the --preset hint; one of another preset
# is refused from its header, before the BLIP-base model is built.
file(WRITE "${WORK}/cut.pth" "")
execute_process(COMMAND sh -c "printf '\\200\\002\\212' > '${WORK}/cut.pth'; printf '\\200\\002cos\\nsystem\\n.' > '${WORK}/evil.pth'")
run(fail "${BLIP}" index --preset tiny --checkpoint "${WORK}/cut.pth" ${vocab} --images "${WORK}/images" --out "${WORK}/x.idx")
expect_in("${err}" "legacy format")
run(fail "${BLIP}" index --preset tiny --checkpoint "${WORK}/evil.pth" ${vocab} --images "${WORK}/images" --out "${WORK}/x.idx")
expect_in("${err}" "os.system")
string(FIND "${err}" "--preset" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "a refused pickle got the preset hint: ${err}")
endif()
string(TIMESTAMP t0 "%s")
run(fail "${BLIP}" index --preset base --checkpoint "${WORK}/tiny.safetensors" --images "${WORK}/images" --out "${WORK}/x.idx")
string(TIMESTAMP t1 "%s")
expect_in("${err}" "preset 'base' needs")
math(EXPR took "${t1} - ${t0}")
if(took GREATER 5)
  message(FATAL_ERROR "the preset mismatch took ${took} s: the model was built before the check")
endif()

# Class 9: a checkpoint with a NaN weight makes no index and no recall figures.
run(fail "${BLIP}" -q index --preset tiny --checkpoint "${WORK}/nan.safetensors" ${vocab} --images "${WORK}/images"
    --out "${WORK}/nan.idx")
expect_in("${err}" "non-finite")
expect_in("${err}" "nan.safetensors")
if(EXISTS "${WORK}/nan.idx")
  message(FATAL_ERROR "an index was written from a NaN checkpoint")
endif()
run(fail "${BLIP}" -q eval --preset tiny --checkpoint "${WORK}/nan.safetensors" ${vocab} --dataset jsonl
    --ann "${WORK}/ann.jsonl" --images "${WORK}/images" --recall-k 1 --topk 2)
expect_in("${err}" "non-finite")
expect_in("${err}" "nan.safetensors")

# Class 5: symlink loops in --images end, each image indexed once.
file(CREATE_LINK "." "${WORK}/images/loop1" SYMBOLIC)
file(CREATE_LINK "." "${WORK}/images/sub/loop2" SYMBOLIC)
file(CREATE_LINK ".." "${WORK}/images/sub/loop3" SYMBOLIC)
# Class 11: symlinks planted at the old fixed temporary name and at the output itself.
file(WRITE "${WORK}/victim.txt" "precious")
file(CREATE_LINK "${WORK}/victim.txt" "${WORK}/g.idx.tmp" SYMBOLIC)
file(CREATE_LINK "${WORK}/victim.txt" "${WORK}/g.idx" SYMBOLIC)
run(ok "${BLIP}" index ${model} --images "${WORK}/images" --out "${WORK}/g.idx")
expect_in("${err}" "6 images")
file(READ "${WORK}/victim.txt" victim)
if(NOT victim STREQUAL "precious" OR IS_SYMLINK "${WORK}/g.idx")
  message(FATAL_ERROR "the index writer followed a planted symlink")
endif()

# Class 10: a file name that is not UTF-8 still gives valid JSON, its bytes kept as hex.
execute_process(COMMAND sh -c "cp '${WORK}/images/img0.png' \"$(printf '${WORK}/images/bad\\377name.png')\"" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "could not make a non-UTF-8 file name")
endif()
run(ok "${BLIP}" -q index ${model} --images "${WORK}/images" --out "${WORK}/u.idx")
run(ok "${BLIP}" search --index "${WORK}/u.idx" ${model} "a dog" -n 7 --json)
string(JSON n LENGTH "${out}" 0 results)
if(NOT n EQUAL 7)
  message(FATAL_ERROR "unexpected search output: ${out}")
endif()
expect_in("${out}" "\"path_hex\"")
expect_in("${out}" "ff6e616d652e706e67")  # \xff "name.png"

# Resume: a state whose position does not fit the run is refused.
set(jsonl --dataset jsonl --ann "${WORK}/ann.jsonl" --images "${WORK}/images" --preset tiny ${vocab} --workers 0)
run(ok "${BLIP}" -q train ${jsonl} --checkpoint "${WORK}/tiny.safetensors" --steps 3 --batch 2 --out "${WORK}/t" --stop-after 2)
run(fail "${BLIP}" -q train ${jsonl} --steps 3 --batch 2 --accumulation 2 --out "${WORK}/t"
    --resume "${WORK}/t/training_state.safetensors")
expect_in("${err}" "cannot reach")
