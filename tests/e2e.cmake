# End-to-end tests on real Fashion-MNIST (Debian's dataset-fashion-mnist), driving the CLI.
set(AL_E2E_DATA ${AL_TESTDATA}/fmnist.h5)
set(AL_E2E_DIR ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
add_test(NAME e2e_data COMMAND bash ${AL_E2E_DIR}/data.sh $<TARGET_FILE:advlab> ${AL_E2E_DATA})
set_tests_properties(e2e_data PROPERTIES FIXTURES_SETUP fmnist LABELS "e2e;cpu" TIMEOUT 300)
foreach(t train_pgdat resume methods nan cli_errors configs)
  add_test(NAME e2e_${t} COMMAND bash ${AL_E2E_DIR}/${t}.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_${t} ${AL_E2E_DATA})
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cpu" TIMEOUT 1500
                       ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
endforeach()
# Every training method with run.device = cuda vs the CPU (GPU machines and simcuda builds;
# "skipped: no GPU" = SKIP in a CUDA build without a GPU).
if(AL_HAVE_CUDA)
  add_test(NAME e2e_methods_cuda COMMAND bash ${AL_E2E_DIR}/methods_cuda.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_methods_cuda ${AL_E2E_DATA})
  set_tests_properties(e2e_methods_cuda PROPERTIES FIXTURES_REQUIRED fmnist LABELS "e2e;cuda"
                       TIMEOUT 900 SKIP_RETURN_CODE 77)
endif()
