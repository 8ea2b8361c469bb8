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
