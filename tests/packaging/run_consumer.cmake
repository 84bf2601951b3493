# Builds and runs the consumer project (consumer/) against seqattn, as a user would. Run by CTest:
#   cmake -DMODE=add_subdirectory|find_package -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir>
#         -DGENERATOR=<generator> -DCXX_COMPILER=<c++> -DEIGEN_DIR=<Eigen3_DIR> -DVERSION=<x.y.z> -P run_consumer.cmake
# add_subdirectory: the consumer adds the repository as a subdirectory.
# find_package:     the repository is configured alone, `cmake --install`ed to WORK_DIR/prefix, and the consumer
#                   finds it with find_package(seqattn <VERSION> CONFIG REQUIRED) and CMAKE_PREFIX_PATH. Then:
#                   the package version: find_package(seqattn <MAJOR.MINOR>) works, and asking for the next minor
#                   (0.3), the next major (1.0) or the previous minor (0.1: SameMinorVersion, 0.x) is refused with an
#                   error naming both versions; and the installed pkg-config file: main.cpp compiled with the C++
#                   compiler and `pkg-config --cflags seqattn` alone, and run (skipped when pkg-config is missing).
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

if(NOT MODE STREQUAL "find_package")
  return()
endif()

# find_package(seqattn <requested> CONFIG REQUIRED) in a project of its own: sets probe_rc and probe_output.
function(probe_version requested)
  set(dir "${WORK_DIR}/version-probe-${requested}")
  file(WRITE "${dir}/CMakeLists.txt" "cmake_minimum_required(VERSION 3.16)\nproject(probe LANGUAGES NONE)\n"
                                     "find_package(seqattn ${requested} CONFIG REQUIRED)\n"
                                     "message(STATUS \"found seqattn \${seqattn_VERSION}\")\n")
  message(STATUS "[${MODE}] find_package(seqattn ${requested} CONFIG REQUIRED)")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${dir} -B ${dir}/build ${common_args} -DCMAKE_PREFIX_PATH=${prefix}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(probe_rc "${rc}" PARENT_SCOPE)
  set(probe_output "${out}\n${err}" PARENT_SCOPE)
endfunction()

string(REGEX MATCH "^([0-9]+)\\.([0-9]+)\\.([0-9]+)$" matched "${VERSION}")
if(NOT matched)
  message(FATAL_ERROR "run_consumer.cmake: VERSION must be MAJOR.MINOR.PATCH, got '${VERSION}'")
endif()
set(major ${CMAKE_MATCH_1})
set(minor ${CMAKE_MATCH_2})
set(patch ${CMAKE_MATCH_3})
probe_version(${major}.${minor})
if(NOT probe_rc EQUAL 0 OR NOT probe_output MATCHES "found seqattn ${VERSION}")
  message(FATAL_ERROR "[${MODE}] find_package(seqattn ${major}.${minor}) failed with seqattn ${VERSION} "
                      "installed (${probe_rc}):\n${probe_output}")
endif()
math(EXPR next_minor "${minor} + 1")
math(EXPR next_major "${major} + 1")
set(refused ${major}.${next_minor} ${next_major}.0)
if(major EQUAL 0 AND minor GREATER 0)
  math(EXPR previous_minor "${minor} - 1")
  list(APPEND refused 0.${previous_minor})  # 0.x: SameMinorVersion (top-level CMakeLists.txt)
endif()
foreach(requested IN LISTS refused)
  probe_version(${requested})
  if(probe_rc EQUAL 0)
    message(FATAL_ERROR "[${MODE}] find_package(seqattn ${requested}) accepted seqattn ${VERSION}:\n${probe_output}")
  endif()
  string(REPLACE "." "\\." requested_re "${requested}")
  string(REPLACE "." "\\." version_re "${VERSION}")
  if(NOT probe_output MATCHES "requested version \"${requested_re}\"" OR NOT probe_output MATCHES "${version_re}")
    message(FATAL_ERROR "[${MODE}] find_package(seqattn ${requested}) was refused, but its error does not name the "
                        "requested version ${requested} and the installed ${VERSION}:\n${probe_output}")
  endif()
  message(STATUS "[${MODE}] refused, as it must be")
endforeach()

# The pkg-config file, as a build without CMake uses it.
find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG_EXECUTABLE)
  message(STATUS "[${MODE}] pkg-config not found: the check of seqattn.pc is skipped (./build.sh deps installs it)")
  return()
endif()
set(ENV{PKG_CONFIG_PATH} "${prefix}/share/pkgconfig")
run("pkg-config version" ${PKG_CONFIG_EXECUTABLE} --modversion seqattn)
string(STRIP "${run_output}" pc_version)
if(NOT pc_version STREQUAL VERSION)
  message(FATAL_ERROR "[${MODE}] pkg-config --modversion seqattn says '${pc_version}', expected ${VERSION}")
endif()
run("pkg-config cflags" ${PKG_CONFIG_EXECUTABLE} --cflags seqattn)
string(STRIP "${run_output}" pc_cflags)
message(STATUS "[${MODE}] pkg-config --cflags seqattn: ${pc_cflags}")
separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
if(NOT "-std=c++17" IN_LIST pc_cflags)
  message(FATAL_ERROR "[${MODE}] pkg-config --cflags seqattn has no -std=c++17: ${pc_cflags}")
endif()
set(pc_program "${WORK_DIR}/pkg-config-consumer")
run("compile with pkg-config" ${CXX_COMPILER} ${pc_cflags} -DSEQATTN_EXPECTED_MAJOR=${major}
    -DSEQATTN_EXPECTED_MINOR=${minor} -DSEQATTN_EXPECTED_PATCH=${patch} "-DSEQATTN_EXPECTED_STRING=\"${VERSION}\""
    ${CMAKE_CURRENT_LIST_DIR}/consumer/main.cpp -o ${pc_program})
run("run pkg-config consumer" ${pc_program})
if(NOT run_output MATCHES "consumer ok")
  message(FATAL_ERROR "[${MODE}] the pkg-config consumer did not report success:\n${run_output}")
endif()
message(STATUS "[${MODE}] pkg-config: ${run_output}")
