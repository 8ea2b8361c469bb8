# `blip eval`, `blip index` and `blip search` end to end on a tiny random checkpoint (made by
# make_retrieval_fixture): each command must succeed with the expected output shape, and bad
# input must fail with a message that says what is wrong. Recall values themselves are checked
# against brute force in test_data; here only that the tool wires everything together.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

run(ok "${FIXTURE}" "${WORK}")
set(model --preset tiny --checkpoint "${WORK}/tiny.safetensors" --vocab "${WORK}/vocab.txt")
set(data --ann "${WORK}/ann.jsonl" --images "${WORK}/images")

# eval: JSONL with the ITM re-rank, JSON keys in mmpretrain's order, then COCO with fast_match.
run(ok "${BLIP}" -q eval ${model} --dataset jsonl ${data} --topk 4 --recall-k 1,5 --json "${WORK}/metrics.json")
expect_in("${out}" "t2i/retrieval/Recall@5")
file(READ "${WORK}/metrics.json" metrics)
string(JSON r1 GET "${metrics}" "i2t/retrieval/Recall@1")
set(last -1)
foreach(key i2t/retrieval/Recall@1 i2t/retrieval/Recall@5 t2i/retrieval/Recall@1 t2i/retrieval/Recall@5
            i2t/retrieval/Recall@mean t2i/retrieval/Recall@mean "\"retrieval/Recall@mean")
  string(FIND "${metrics}" "${key}" at)
  if(at LESS_EQUAL last)
    message(FATAL_ERROR "metrics JSON lacks ${key} or has it out of order: ${metrics}")
  endif()
  set(last ${at})
endforeach()
if(r1 LESS 0 OR r1 GREATER 100)
  message(FATAL_ERROR "unexpected metrics JSON: ${metrics}")
endif()
# --device: cpu gives the same metrics as the default where no GPU is usable; cuda runs where one is and
# is otherwise an error that says which is missing (the build or the device); the CPU-only
# commands refuse it by name. A device the tool does not know is a usage error.
run(ok "${BLIP}" -q --device cpu eval ${model} --dataset jsonl ${data} --topk 4 --recall-k 1,5 --json "${WORK}/cpu.json")
file(READ "${WORK}/cpu.json" cpu_metrics)
string(JSON cpu_r1 GET "${cpu_metrics}" "i2t/retrieval/Recall@1")
run(ok "${BLIP}" -q --precision int8 eval ${model} --dataset jsonl ${data} --topk 4 --recall-k 1,5)  # auto: the CPU
execute_process(COMMAND "${BLIP}" -q --device cuda eval ${model} --dataset jsonl ${data} --topk 4 --recall-k 1,5
                        --json "${WORK}/gpu.json" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  file(READ "${WORK}/gpu.json" gpu_metrics)
  string(JSON gpu_r1 GET "${gpu_metrics}" "i2t/retrieval/Recall@1")
  message(STATUS "--device cuda eval ran on a GPU: i2t R@1 ${gpu_r1} (cpu ${cpu_r1})")
else()
  if(NOT cpu_r1 EQUAL r1)  # no GPU: the default ran on the CPU too
    message(FATAL_ERROR "--device cpu gave i2t R@1 ${cpu_r1}, the default ${r1}")
  endif()
  expect_in("${err}" "--device cuda: ")
  run(fail "${BLIP}" --device cuda demo --steps 1)
  expect_in("${err}" "--device cuda")
  run(fail "${BLIP}" --device cuda train --steps 1 --out "${WORK}/train-cuda")  # train runs on cuda: no device here
  expect_in("${err}" "--device cuda: ")
endif()
run(nonzero "${BLIP}" --device gpu eval ${model} --dataset jsonl ${data})
expect_in("${err}" "--device")
run(ok "${BLIP}" eval ${model} --dataset coco --ann "${WORK}/coco.json" --images "${WORK}/images" --fast-match
    --recall-k 1,5 --json -)
expect_in("${out}" "\"retrieval/Recall@mean\"")
expect_in("${err}" "6 images, 6 captions")

# eval errors: missing files, a checkpoint of another preset, a vocabulary that does not fit.
run(nonzero "${BLIP}" eval ${model} --dataset jsonl --ann "${WORK}/none.jsonl" --images "${WORK}/images")
expect_in("${err}" "none.jsonl")
run(nonzero "${BLIP}" eval --preset tiny --checkpoint "${WORK}/none.safetensors" --vocab "${WORK}/vocab.txt" --dataset jsonl ${data})
expect_in("${err}" "not found")
run(nonzero "${BLIP}" eval --preset base --checkpoint "${WORK}/tiny.safetensors" --dataset jsonl ${data})
expect_in("${err}" "preset")
# (the vocab.txt beside tiny.safetensors is the model's own: away from it, there is none)
file(COPY "${WORK}/tiny.safetensors" DESTINATION "${WORK}/bare")
run(nonzero "${BLIP}" eval --preset tiny --checkpoint "${WORK}/bare/tiny.safetensors" --dataset jsonl ${data})
expect_in("${err}" "--vocab")
run(ok "${BLIP}" -q eval --preset tiny --checkpoint "${WORK}/tiny.safetensors" --dataset jsonl ${data} --recall-k 1)
run(nonzero "${BLIP}" eval ${model} --dataset jsonl ${data})
expect_in("${err}" "Recall@10 needs at least 10 images")

# index + search: images by text (re-ranked with stored and with recomputed embeds), texts by image.
run(ok "${BLIP}" -q index ${model} --images "${WORK}/images" --out "${WORK}/g.idx" --embeds bf16)
run(ok "${BLIP}" -q index ${model} --images "${WORK}/images" --out "${WORK}/plain.idx")
run(ok "${BLIP}" search --index "${WORK}/g.idx" ${model} "a dog on the beach" "blue sky" -n 3 --rerank 4 --json)
string(JSON n LENGTH "${out}")
string(JSON hits LENGTH "${out}" 0 results)
string(JSON path GET "${out}" 1 results 0 path)
if(NOT n EQUAL 2 OR NOT hits EQUAL 3 OR NOT path MATCHES "img[0-5]\\.png$")
  message(FATAL_ERROR "unexpected search output: ${out}")
endif()
# int8 inference (per-channel weight, per-token activation scales) through the same search; a
# precision the tool does not have is a usage error.
run(ok "${BLIP}" --precision int8 search --index "${WORK}/g.idx" ${model} "a dog on the beach" -n 3 --rerank 4 --json)
string(JSON hits LENGTH "${out}" 0 results)
if(NOT hits EQUAL 3)
  message(FATAL_ERROR "unexpected int8 search output: ${out}")
endif()
# fp16 linear layers (AVX512-FP16 CPUs; elsewhere the bf16 path) through the same search.
run(ok "${BLIP}" --precision fp16 search --index "${WORK}/g.idx" ${model} "a dog on the beach" -n 3 --rerank 4 --json)
string(JSON hits LENGTH "${out}" 0 results)
if(NOT hits EQUAL 3)
  message(FATAL_ERROR "unexpected fp16 search output: ${out}")
endif()
run(nonzero "${BLIP}" --precision int4 search --index "${WORK}/g.idx" ${model} "a dog")
expect_in("${err}" "int4")
run(ok "${BLIP}" search --index "${WORK}/plain.idx" ${model} "a red car" -n 2 --rerank 2)
expect_in("${out}" "query: a red car")
run(ok "${BLIP}" -q index ${model} --texts "${WORK}/captions.txt" --out "${WORK}/t.idx")
run(ok "${BLIP}" search --index "${WORK}/t.idx" ${model} --image "${WORK}/images/img1.png" -n 6 --rerank 3)
expect_in("${out}" "image: ${WORK}/images/img1.png")
expect_in("${out}" "   6  ")
run(nonzero "${BLIP}" search --index "${WORK}/t.idx" ${model} "a dog")
expect_in("${err}" "index of texts")
file(WRITE "${WORK}/broken.idx" "BLIPIDX")
run(nonzero "${BLIP}" search --index "${WORK}/broken.idx" ${model} "a dog")
expect_in("${err}" "broken.idx")

# The first `count` result paths of two `blip search --json` outputs (one query each) agree.
function(expect_same_paths first second count what)
  math(EXPR last "${count} - 1")
  foreach(r RANGE ${last})
    string(JSON a GET "${first}" 0 results ${r} path)
    string(JSON b GET "${second}" 0 results ${r} path)
    if(NOT a STREQUAL b)
      message(FATAL_ERROR "${what} differ at rank ${r}: ${a} vs ${b}")
    endif()
  endforeach()
endfunction()

# Search indexes beside the features (issue 15): --kind ivf writes OUT.ann, which search uses;
# on a gallery this small one list holds everything, so the hits equal the exact search's.
run(ok "${BLIP}" -q index ${model} --images "${WORK}/images" --out "${WORK}/ivf.idx" --kind ivf --nlist 1)
if(NOT EXISTS "${WORK}/ivf.idx.ann")
  message(FATAL_ERROR "blip index --kind ivf wrote no ivf.idx.ann")
endif()
run(ok "${BLIP}" search --index "${WORK}/ivf.idx" ${model} "a dog on the beach" -n 4 --json)
set(ann_out "${out}")
run(ok "${BLIP}" search --index "${WORK}/plain.idx" ${model} "a dog on the beach" -n 4 --json)
expect_same_paths("${ann_out}" "${out}" 4 "ivf search and the exact one")
# An ANN file that belongs to another index is refused; --exact ignores it.
# (g.idx holds embeds, so its checksum differs from ivf.idx's; plain.idx's is the same bytes)
file(COPY_FILE "${WORK}/ivf.idx.ann" "${WORK}/g.idx.ann")
run(fail "${BLIP}" search --index "${WORK}/g.idx" ${model} "a dog")
expect_in("${err}" "does not belong to")
run(ok "${BLIP}" search --index "${WORK}/g.idx" ${model} "a dog" --exact)
file(REMOVE "${WORK}/g.idx.ann")

# --append: a growing folder; only the new images are embedded, the ANN index is extended, and
# the result equals an index built from scratch. Paths are relative to the root: --root finds
# the gallery after it moved (the re-rank recomputes embeds from the files there).
file(MAKE_DIRECTORY "${WORK}/grow")
file(COPY "${WORK}/images/img0.png" "${WORK}/images/img1.png" DESTINATION "${WORK}/grow")
run(ok "${BLIP}" index ${model} --images "${WORK}/grow" --out "${WORK}/grow.idx" --kind ivf --nlist 1)
file(COPY "${WORK}/images/img2.png" DESTINATION "${WORK}/grow")
file(COPY "${WORK}/images/sub" DESTINATION "${WORK}/grow")
run(ok "${BLIP}" index ${model} --images "${WORK}/grow" --out "${WORK}/grow.idx" --append)
expect_in("${err}" "4 images added")
expect_in("${err}" "extended")
run(ok "${BLIP}" index ${model} --images "${WORK}/grow" --out "${WORK}/grow.idx" --append)
expect_in("${err}" "no new images")
run(fail "${BLIP}" index ${model} --images "${WORK}/images" --out "${WORK}/grow.idx" --append)
expect_in("${err}" "not under the index's root folder")
run(ok "${BLIP}" search --index "${WORK}/grow.idx" ${model} "a dog on the beach" -n 6 --json)
set(grown "${out}")
run(ok "${BLIP}" -q index ${model} --images "${WORK}/grow" --out "${WORK}/fresh.idx")
run(ok "${BLIP}" search --index "${WORK}/fresh.idx" ${model} "a dog on the beach" -n 6 --json)
expect_same_paths("${grown}" "${out}" 6 "the appended index and a fresh one")
file(RENAME "${WORK}/grow" "${WORK}/moved")
run(fail "${BLIP}" search --index "${WORK}/grow.idx" ${model} "a dog" -n 2 --rerank 2)
expect_in("${err}" "grow/")
run(ok "${BLIP}" search --index "${WORK}/grow.idx" ${model} "a dog" -n 2 --rerank 2 --root "${WORK}/moved")
expect_in("${out}" "${WORK}/moved/")
