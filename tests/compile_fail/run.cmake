# Compiles SOURCE, expects failure, and expects the diagnostics to contain EXPECT once.
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only ${FLAGS} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but a wrong composition must be rejected")
endif()
string(FIND "${err}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the diagnostics of ${SOURCE} lack the readable message '${EXPECT}':\n${err}")
endif()
string(REGEX MATCHALL "error:" errors "${err}")
list(LENGTH errors count)
message("compile-fail ok: ${count} error line(s), the first naming the slot")
