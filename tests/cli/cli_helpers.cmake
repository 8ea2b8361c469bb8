# Shared by the CLI test scripts (cmake -P): run a command and check its exit status, look for a
# message in its output. After run(), `out` and `err` hold the command's stdout and stderr.
#   run(ok CMD...)       status 0
#   run(fail CMD...)     status 1 (blip's error exit)
#   run(nonzero CMD...)  any failure status (parse errors included)
function(run expect_rc)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
  if(expect_rc STREQUAL "ok" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  elseif(expect_rc STREQUAL "fail" AND NOT rc EQUAL 1)
    message(FATAL_ERROR "should fail with status 1 (got ${rc}): ${ARGN}\n${out}\n${err}")
  elseif(expect_rc STREQUAL "nonzero" AND rc EQUAL 0)
    message(FATAL_ERROR "succeeded but should fail: ${ARGN}\n${out}")
  endif()
endfunction()

function(expect_in text pattern)
  string(FIND "${text}" "${pattern}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${pattern}' in:\n${text}")
  endif()
endfunction()
