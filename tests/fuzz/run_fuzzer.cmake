# Seeds a corpus with the golden *.safetensors files (small ones) and runs the fuzzer for SECONDS.
file(MAKE_DIRECTORY "${WORK}")
file(GLOB_RECURSE seeds "${SEEDS}/*.safetensors")
foreach(seed ${seeds})
  file(SIZE "${seed}" size)
  if(size LESS 2000000)
    get_filename_component(name "${seed}" NAME)
    string(MD5 tag "${seed}")
    file(COPY_FILE "${seed}" "${WORK}/seed_${tag}_${name}" ONLY_IF_DIFFERENT)
  endif()
endforeach()
execute_process(COMMAND "${EXE}" "${WORK}" -max_total_time=${SECONDS} -max_len=65536 -rss_limit_mb=2048
                        -timeout=10 -print_final_stats=1
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer ${EXE} failed (${rc}): see the crash-* file in the working directory")
endif()
