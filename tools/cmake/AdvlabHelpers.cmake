# al_add_test(NAME <name> SOURCES <files..> [LABELS <labels..>] [ARGS <args..>] [TIMEOUT s])
# One executable per test module; exit 77 = skipped (e.g. "skipped: no GPU").
function(al_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LABELS;ARGS" ${ARGN})
  if(NOT TARGET ${T_NAME})
    add_executable(${T_NAME} ${T_SOURCES})
    target_link_libraries(${T_NAME} PRIVATE advlab_lib al_test_harness)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  # Passive OpenMP waits: ctest -j runs several multi-threaded tests on few cores, where
  # spinning barriers slow each test by up to 20x (benchmarks keep the default).
  set_tests_properties(${T_NAME} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
    LABELS "${T_LABELS}" ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
endfunction()
