# `blip convert` end to end on the reference's torch.save checkpoint: .pth (mmpretrain names) ->
# safetensors in BLIP names -> back to mmpretrain names, and to transformers names in bf16; bad
# input fails with status 1 and a message naming the file. The conversions' content is checked
# in test_checkpoint_io.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(pth "${GOLDEN}/checkpoints/shared_a_mmengine.pth")
if(NOT EXISTS "${pth}")
  message(FATAL_ERROR "golden checkpoint ${pth} not found")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)

run(ok ${BLIP} convert "${pth}" "${WORK}/blip.safetensors" --to-names blip)
expect_in("${err}" "(mmpretrain names)")
expect_in("${err}" "(blip names): 357 tensors")
expect_in("${err}" "head.temp")
run(ok ${BLIP} convert "${WORK}/blip.safetensors" "${WORK}/mm.safetensors")
expect_in("${err}" "(blip names)")
expect_in("${err}" "(mmpretrain names): 358 tensors")
run(ok ${BLIP} convert "${WORK}/blip.safetensors" "${WORK}/hf.safetensors" --to-names hf --dtype bf16)
expect_in("${err}" "no config.json is written")  # width 32: its heads cannot be read off the shapes
# With its sizes given, the output describes itself and an HF folder gets its config.json.
run(ok ${BLIP} -q convert "${WORK}/blip.safetensors" "${WORK}/hfdir/model.safetensors" --to-names hf
    --config "${GOLDEN}/shared_a/config.json")
file(READ "${WORK}/hfdir/config.json" cfg)
string(JSON layers GET "${cfg}" vision_config num_hidden_layers)
string(JSON heads GET "${cfg}" vision_config num_attention_heads)
if(NOT layers EQUAL 9 OR NOT heads EQUAL 4)
  message(FATAL_ERROR "unexpected config.json from --config: ${cfg}")
endif()
file(READ "${WORK}/hfdir/model.safetensors" header OFFSET 8 LIMIT 65536)
expect_in("${header}" "blip.config")
file(READ "${WORK}/hf.safetensors" header OFFSET 8 LIMIT 65536)  # past the binary header length
expect_in("${header}" "\"vision_model.post_layernorm.weight\":{\"data_offsets\"")
expect_in("${header}" "\"dtype\":\"BF16\"")
file(GLOB left "${WORK}/*.tmp-*")
if(left)
  message(FATAL_ERROR "temporary files left behind: ${left}")
endif()

run(fail ${BLIP} convert "${WORK}/no_such.pth" "${WORK}/x.safetensors")
expect_in("${err}" "no_such.pth")
file(WRITE "${WORK}/not_a_checkpoint.bin" "hello, world: not a checkpoint")
run(fail ${BLIP} convert "${WORK}/not_a_checkpoint.bin" "${WORK}/x.safetensors")
expect_in("${err}" "not_a_checkpoint.bin")
run(fail ${BLIP} convert "${WORK}/mm.safetensors" "${WORK}/x.safetensors" --from-names hf)
expect_in("${err}" "mm.safetensors")
if(EXISTS "${WORK}/x.safetensors")
  message(FATAL_ERROR "a failed conversion left ${WORK}/x.safetensors")
endif()
