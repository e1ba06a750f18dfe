# ANCRA (issue #7): the reverse-attention operator and graph nodes vs double finite differences,
# the head loss (CE + KL + asymmetric negative contrast) vs finite differences and vs the
# official loss in PyTorch (tests/torch/ancra_ref.py), the RA archs vs the official
# ResNet_RA in PyTorch, negative selection invariants, and the CUDA twins (op_ra.cu,
# loss_contrastive.cu) vs the CPU (skipped without a GPU). DRSL (losses/drsl.c) vs finite
# differences and the authors' DRSL/DRSLX in PyTorch (tests/torch/drsl_ref.py).
# e2e: ANCRA and DRSL on real Fashion-MNIST against standard training of the same budget.
al_add_test(NAME test_ancra SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ancra.c LABELS cpu cuda
            TIMEOUT 600)
set_tests_properties(test_ancra PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=passive;ADVLAB_SYNC_CHECK=1")
al_add_test(NAME test_drsl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_drsl.c LABELS cpu asan
            TIMEOUT 120)
foreach(t ancra drsl)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/${t}.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_${t} ${AL_TESTDATA}/fmnist.h5)
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 600
                       ENVIRONMENT "OMP_WAIT_POLICY=passive")
endforeach()
