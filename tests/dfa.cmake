# DFA (methods.md §1) and Interpolated AT (§5.4): unit tests and Fashion-MNIST e2e runs.
# test_dfa: head ops / pivot loss vs finite differences, Beta + permutation draws, archs, the
# step's gradient along its own direction, and a float64 PyTorch twin of the official model.
al_add_test(NAME test_dfa SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dfa.c LABELS cpu asan TIMEOUT 900)
# test_iat: the step's loss recomputed independently, its gradient vs a central difference.
al_add_test(NAME test_iat SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_iat.c LABELS cpu asan TIMEOUT 600)
# CUDA twins of the DFA kernels (cuda/loss_dfa.cu) vs the CPU references: `test_dfa cuda`.
if(AL_HAVE_CUDA)
  add_test(NAME test_dfa_cuda COMMAND test_dfa cuda WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(test_dfa_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS cuda
                       ENVIRONMENT "ADVLAB_SYNC_CHECK=1")
endif()
# e2e on real Fashion-MNIST (fixture from e2e.cmake): each trains the method and a standard
# baseline on the same budget, checks the loss falls and compares PGD-20 robust accuracy.
foreach(t dfa iat)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/${t}.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_${t} ${AL_TESTDATA}/fmnist.h5)
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 600)
endforeach()
