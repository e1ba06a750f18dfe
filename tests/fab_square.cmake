# FAB / FAB-T and Square (attacks/fab.c, attacks/square.c): CPU, seconds on 2 cores.
al_add_test(NAME test_fab_square SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_fab_square.c
            LABELS cpu asan TIMEOUT 300)
# OOD detection (core/ood.c): metrics by hand and against numpy (tests/ood/metrics_ref.py).
al_add_test(NAME test_ood SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ood.c LABELS cpu asan TIMEOUT 120)
# e2e: advlab ood on Fashion-MNIST vs synthetic OOD files written with h5py (fixture: e2e_data).
if(AL_PYTHON3)
  add_test(NAME e2e_ood COMMAND ${AL_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/ood/e2e_ood.py
           $<TARGET_FILE:advlab> ${AL_TESTDATA}/e2e_ood ${AL_TESTDATA}/fmnist.h5)
  set_tests_properties(e2e_ood PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 600)
endif()
