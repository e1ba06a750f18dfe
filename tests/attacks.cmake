# losses/ and attacks/ tests (CPU reference; CUDA twins are compared in the cuda tests).
al_add_test(NAME test_losses SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_losses.c LABELS cpu)
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_attacks.c)
  al_add_test(NAME test_attacks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_attacks.c LABELS cpu)
endif()
