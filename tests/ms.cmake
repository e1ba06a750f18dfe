# MeanSparse (core/ops/meansparse.c, cuda/op_meansparse.cu) and NoFrost (core/ops/wsconv.c,
# cuda/op_wsconv.cu, core/models/nf_resnet.c, core/methods/nofrost.c): ops vs double references
# and finite differences, graph insertion / alpha = 0 bit-identity, statistics protocol,
# checkpoints, PyTorch twins (tests/torch/ms_ref.py; skip without torch), CUDA twins (skip
# without a GPU). E2E: the advlab meansparse verb and NoFrost training on real Fashion-MNIST.
al_add_test(NAME test_meansparse SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_meansparse.c LABELS cpu
            TIMEOUT 600)
al_add_test(NAME test_nofrost SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_nofrost.c LABELS cpu
            TIMEOUT 600)
if(AL_HAVE_CUDA)
  # the CUDA cases of the same executables, labelled cuda (77 = skipped without a GPU)
  foreach(t meansparse nofrost)
    add_test(NAME test_${t}_cuda COMMAND test_${t} cuda_vs_cpu WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(test_${t}_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS cuda
                         ENVIRONMENT "ADVLAB_SYNC_CHECK=1")
  endforeach()
endif()
foreach(t meansparse nofrost)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/${t}.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_${t} ${AL_TESTDATA}/fmnist.h5)
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 900
                       ENVIRONMENT "OMP_WAIT_POLICY=passive")
endforeach()
