# Models as people have them, through the tool (issue 12): a transformers folder used by its
# path alone with `blip embed` and `blip score`; `blip convert` to blip's names (a self-describing
# file) and back to an HF folder, each giving the same features; and the errors of a model that
# does not describe itself or is given sizes that disagree with it. Numbers against transformers
# are checked in test_pretrained; here that the tool wires it together.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

set(hf "${HF}/small")

function(expect_npy file rows cols)
  file(READ "${file}" head OFFSET 10 LIMIT 118)  # after the magic, version and length (which holds a NUL)
  expect_in("${head}" "'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }")
  file(SIZE "${file}" size)
  math(EXPR want "128 + ${rows} * ${cols} * 4")
  if(NOT size EQUAL want)
    message(FATAL_ERROR "${file}: ${size} bytes, expected ${want}")
  endif()
endfunction()

# The row names embed wrote beside an .npy, as a CMake list.
function(expect_rows file expected)
  file(STRINGS "${file}" names)
  if(NOT names STREQUAL "${expected}")
    message(FATAL_ERROR "${file} rows: ${names}, expected ${expected}")
  endif()
endfunction()

# embed from the HF folder: image rows in sorted relative path order, text rows in file order.
run(ok "${BLIP}" -q embed --checkpoint "${hf}/model" --images "${hf}/images" --out "${WORK}/img.npy")
expect_npy("${WORK}/img.npy" 3 16)
expect_rows("${WORK}/img.txt" "img0.png;img1.png;img2.png")
run(ok "${BLIP}" embed --checkpoint "${hf}/model" --texts "${hf}/captions.txt" --out "${WORK}/txt.npy")
expect_npy("${WORK}/txt.npy" 4 16)
expect_in("${err}" "4 x 16 text_feat")
file(STRINGS "${WORK}/txt.txt" names)
list(GET names 3 last)
if(NOT last STREQUAL "a woman with a blue umbrella zzz")
  message(FATAL_ERROR "txt.txt rows: ${names}")
endif()

# score: every pair, with ITM logits [I][T][2] and match probabilities in [0, 1].
run(ok "${BLIP}" -q score --checkpoint "${hf}/model" --images "${hf}/images" --texts "${hf}/captions.txt" --json)
string(JSON ni LENGTH "${out}" images)
string(JSON nt LENGTH "${out}" texts)
string(JSON nrow LENGTH "${out}" itc 2)
string(JSON pair LENGTH "${out}" itm_logits 2 3)
string(JSON p GET "${out}" itm 1 2)
if(NOT ni EQUAL 3 OR NOT nt EQUAL 4 OR NOT nrow EQUAL 4 OR NOT pair EQUAL 2 OR p LESS 0 OR p GREATER 1)
  message(FATAL_ERROR "unexpected score output: ${out}")
endif()
run(ok "${BLIP}" -q score --checkpoint "${hf}/model" --images "${hf}/images" --texts "${hf}/captions.txt")
expect_in("${out}" "img2.png")

# convert to mmpretrain names: a file that describes itself (config and vocabulary in its
# metadata), alone in its folder, gives the same features.
run(ok "${BLIP}" -q convert "${hf}/model" "${WORK}/mm/model.safetensors")
run(ok "${BLIP}" -q embed --checkpoint "${WORK}/mm/model.safetensors" --texts "${hf}/captions.txt" --out "${WORK}/mm.npy")
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${WORK}/txt.npy" "${WORK}/mm.npy" RESULT_VARIABLE differ)
if(differ)
  message(FATAL_ERROR "text features differ after blip convert")
endif()
# ... and back to an HF folder (config.json, preprocessor_config.json, vocab.txt, tokenizer_config.json).
run(ok "${BLIP}" -q convert "${WORK}/mm/model.safetensors" "${WORK}/hf/model.safetensors" --to-names hf)
foreach(f config.json preprocessor_config.json vocab.txt tokenizer_config.json)
  if(NOT EXISTS "${WORK}/hf/${f}")
    message(FATAL_ERROR "convert --to-names hf did not write ${f}")
  endif()
endforeach()
file(READ "${WORK}/hf/config.json" cfg)
string(JSON eps GET "${cfg}" vision_config layer_norm_eps)
string(JSON enc GET "${cfg}" text_config encoder_hidden_size)
if(NOT eps EQUAL 1e-05 OR NOT enc EQUAL 32)
  message(FATAL_ERROR "unexpected config.json: ${cfg}")
endif()
run(ok "${BLIP}" -q embed --checkpoint "${WORK}/hf" --images "${hf}/images" --out "${WORK}/hf.npy")
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${WORK}/img.npy" "${WORK}/hf.npy" RESULT_VARIABLE differ)
if(differ)
  message(FATAL_ERROR "image features differ after convert --to-names hf")
endif()

# A preset that disagrees with the model is named field by field; one that agrees is accepted.
run(fail "${BLIP}" embed --checkpoint "${hf}/model" --preset base --texts "${hf}/captions.txt" --out "${WORK}/x.npy")
expect_in("${err}" "preset 'base' does not match")
expect_in("${err}" "vision.embed_dims: 768 vs 32")
run(fail "${BLIP}" embed --checkpoint "${hf}/model" --texts "${hf}/captions.txt" --out "${WORK}/x.bin")
expect_in("${err}" "must end in .npy")

# --skip-errors: a file that does not decode is skipped with a warning and counted.
file(MAKE_DIRECTORY "${WORK}/mixed")
file(COPY "${hf}/images/img0.png" "${hf}/images/img1.png" DESTINATION "${WORK}/mixed")
file(WRITE "${WORK}/mixed/broken.png" "not a png")
run(fail "${BLIP}" -q embed --checkpoint "${hf}/model" --images "${WORK}/mixed" --out "${WORK}/m.npy")
expect_in("${err}" "broken.png")
run(ok "${BLIP}" -q embed --checkpoint "${hf}/model" --images "${WORK}/mixed" --out "${WORK}/m.npy" --skip-errors)
expect_in("${err}" "skipped 1 of 3 images")
expect_npy("${WORK}/m.npy" 2 16)
expect_rows("${WORK}/m.txt" "img0.png;img1.png")

run(fail "${BLIP}" -q index --checkpoint "${hf}/model" --images "${WORK}/mixed" --out "${WORK}/m.idx")
expect_in("${err}" "broken.png")
run(ok "${BLIP}" -q index --checkpoint "${hf}/model" --images "${WORK}/mixed" --out "${WORK}/m.idx" --skip-errors)
expect_in("${err}" "skipped 1 of 3 images")
run(ok "${BLIP}" search --checkpoint "${hf}/model" --index "${WORK}/m.idx" "a red car" -n 5 --json)
string(JSON hits LENGTH "${out}" 0 results)
if(NOT hits EQUAL 2)
  message(FATAL_ERROR "the index of the mixed folder should hold 2 images: ${out}")
endif()

# WebP and GIF files are listed and embedded beside PNG.
file(MAKE_DIRECTORY "${WORK}/formats")
file(COPY "${hf}/images/img0.png" "${HF}/../images/lossless.webp" "${HF}/../images/plain.gif" DESTINATION "${WORK}/formats")
run(ok "${BLIP}" -q embed --checkpoint "${hf}/model" --images "${WORK}/formats" --out "${WORK}/f.npy")
expect_npy("${WORK}/f.npy" 3 16)
expect_rows("${WORK}/f.txt" "img0.png;lossless.webp;plain.gif")

# A bare checkpoint of widths that are not multiples of 64, with no config: said, with the fix.
run(ok "${FIXTURE}" "${WORK}/fx")
run(fail "${BLIP}" embed --checkpoint "${WORK}/fx/tiny.safetensors" --images "${hf}/images" --out "${WORK}/x.npy")
expect_in("${err}" "--config")
