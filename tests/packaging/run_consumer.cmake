# Builds and runs the consumer project (consumer/) against seqattn, as a user would. Run by CTest:
#   cmake -DMODE=add_subdirectory|find_package -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir>
#         -DGENERATOR=<generator> -DCXX_COMPILER=<c++> -DEIGEN_DIR=<Eigen3_DIR> -DVERSION=<x.y.z> -P run_consumer.cmake
# add_subdirectory: the consumer adds the repository as a subdirectory.
# find_package:     the repository is configured alone, `cmake --install`ed to WORK_DIR/prefix, and the consumer
#                   finds it with find_package(seqattn CONFIG REQUIRED) and CMAKE_PREFIX_PATH.
cmake_minimum_required(VERSION 3.16)

foreach(var MODE SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER VERSION)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

# run(<step> <command...>): runs a command, fails the test with its output when it fails.
function(run step)
  list(JOIN ARGN " " command_line)
  message(STATUS "[${MODE}] ${step}: ${command_line}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${MODE}] ${step} failed (${rc}):\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

set(common_args -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(EIGEN_DIR)
  list(APPEND common_args -DEigen3_DIR=${EIGEN_DIR})
endif()
# An empty build type: the consumer compiles without optimization (fast), and seqattn must not change it.
set(consumer_args -DCMAKE_BUILD_TYPE= -DSEQATTN_CONSUMER_MODE=${MODE} -DSEQATTN_EXPECTED_VERSION=${VERSION})

file(REMOVE_RECURSE "${WORK_DIR}")
if(MODE STREQUAL "add_subdirectory")
  list(APPEND consumer_args -DSEQATTN_SOURCE_DIR=${SOURCE_DIR})
elseif(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run("configure seqattn" ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/seqattn-build ${common_args}
      -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_BENCHMARKS=OFF -DSEQATTN_BUILD_EXAMPLES=OFF)
  run("install seqattn" ${CMAKE_COMMAND} --install ${WORK_DIR}/seqattn-build --prefix ${prefix})
  foreach(installed include/seqattn/seqattn.hpp include/seqattn/core/layer.hpp include/seqattn/layers/dense.hpp)
    if(NOT EXISTS "${prefix}/${installed}")
      message(FATAL_ERROR "[${MODE}] cmake --install did not install ${installed}")
    endif()
  endforeach()
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${prefix} -DSEQATTN_PREFIX=${prefix})
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be add_subdirectory or find_package, got '${MODE}'")
endif()

run("configure consumer" ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${WORK_DIR}/consumer-build
    ${common_args} ${consumer_args})
run("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run("run consumer" ${WORK_DIR}/consumer-build/consumer)
if(NOT run_output MATCHES "consumer ok")
  message(FATAL_ERROR "[${MODE}] the consumer did not report success:\n${run_output}")
endif()
message(STATUS "[${MODE}] ${run_output}")
