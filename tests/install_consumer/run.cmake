# Installs blip into a scratch prefix straight after a library-only configure (no build: the
# optional CUDA component, not built, is left out), then configures, builds and runs a separate
# project that finds it with find_package(blip CONFIG) and uses blip::sentencepiece when there.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
foreach(step
    "configure;${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${WORK_DIR}/blip;-DBLIP_BUILD_TESTS=OFF;-DBLIP_BUILD_EXAMPLES=OFF;-DBLIP_BUILD_BENCH=OFF;-DBLIP_BUILD_TOOLS=OFF;-DCMAKE_INSTALL_PREFIX=${prefix}"
    "install;${CMAKE_COMMAND};--install;${WORK_DIR}/blip"
    "consumer-configure;${CMAKE_COMMAND};-S;${SOURCE_DIR}/tests/install_consumer;-B;${WORK_DIR}/consumer;-DCMAKE_PREFIX_PATH=${prefix};-DCMAKE_BUILD_TYPE=Release"
    "consumer-build;${CMAKE_COMMAND};--build;${WORK_DIR}/consumer"
    "consumer-run;${WORK_DIR}/consumer/consumer")
  list(POP_FRONT step name)
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("[${name}] ${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install_consumer: step ${name} failed (${rc}):\n${err}")
  endif()
endforeach()
if(EXISTS "${prefix}/lib/cmake/blip/blipCudaTargets.cmake")
  message(FATAL_ERROR "install_consumer: the export of blip::cuda was installed without its library")
endif()
if(NOT EXISTS "${prefix}/include/blip/blip.hpp" OR NOT EXISTS "${prefix}/lib/cmake/blip/blipConfigVersion.cmake")
  message(FATAL_ERROR "install_consumer: the install tree lacks headers or the version file")
endif()
