# AdvProp / MDProp / MultiBN (core/methods/multibn.c, core/ops/bn_gate.c): BN-branch isolation,
# finite-difference checks through branch selection and the learned selector, method steps;
# then one Fashion-MNIST e2e case per method (small BN CNN, a few hundred steps, vs standard
# training on the same budget) and the CLI smoke test (tests/e2e/multibn.sh, wrn-10-1).
al_add_test(NAME test_multibn SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_multibn.c LABELS cpu asan
            TIMEOUT 300)
foreach(m advprop mdprop multibn)
  add_test(NAME e2e_multibn_${m} COMMAND test_multibn e2e_${m} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(e2e_multibn_${m} PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu"
                       SKIP_RETURN_CODE 77 TIMEOUT 600
                       ENVIRONMENT "AL_FMNIST_H5=${AL_TESTDATA}/fmnist.h5;OMP_NUM_THREADS=1")
endforeach()
add_test(NAME e2e_multibn_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/multibn.sh
         $<TARGET_FILE:advlab> ${AL_TESTDATA}/e2e_multibn_cli ${AL_TESTDATA}/fmnist.h5)
set_tests_properties(e2e_multibn_cli PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 600)
# The gate's CUDA twin vs the CPU nodes (GPU only; 77 = skip without one).
add_test(NAME test_multibn_cuda COMMAND test_multibn cuda WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(test_multibn_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS cuda)
