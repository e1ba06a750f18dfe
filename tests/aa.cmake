# AutoAttack: APGD + DLR unit tests, the driver (resume, flags), and CLI end-to-end tests on a
# SmallCNN trained once on a Fashion-MNIST subset (fixture aa_model; needs the fmnist fixture of
# tests/e2e.cmake). Every test runs single-threaded (--threads 1): on a shared 2-core runner
# OpenMP barriers with descheduled threads cost far more than the second thread gains.
al_add_test(NAME test_apgd SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_apgd.c LABELS cpu asan
            TIMEOUT 300)
al_add_test(NAME test_autoattack SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_autoattack.c LABELS cpu
            asan TIMEOUT 300)

set(AL_AA_E2E_DIR ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
set(AL_AA_MODEL_DIR ${AL_TESTDATA}/e2e_aa_model)
add_test(NAME e2e_aa_model COMMAND bash ${AL_AA_E2E_DIR}/autoattack_model.sh $<TARGET_FILE:advlab>
         ${AL_AA_MODEL_DIR} ${AL_TESTDATA}/fmnist.h5)
set_tests_properties(e2e_aa_model PROPERTIES FIXTURES_SETUP aa_model FIXTURES_REQUIRED fmnist
                     LABELS "e2e;cpu" TIMEOUT 600)
foreach(t autoattack autoattack_resume)
  add_test(NAME e2e_${t} COMMAND bash ${AL_AA_E2E_DIR}/${t}.sh $<TARGET_FILE:advlab>
           ${AL_TESTDATA}/e2e_${t} ${AL_TESTDATA}/fmnist.h5 ${AL_AA_MODEL_DIR})
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED "fmnist;aa_model"
                       LABELS "e2e;cpu" TIMEOUT 900)
endforeach()
# AutoAttack on the CUDA backend vs the CPU (GPU machines; "skipped: no GPU" = SKIP elsewhere).
if(AL_HAVE_CUDA)
  add_test(NAME e2e_autoattack_cuda COMMAND bash ${AL_AA_E2E_DIR}/autoattack_cuda.sh
           $<TARGET_FILE:advlab> ${AL_TESTDATA}/e2e_autoattack_cuda ${AL_TESTDATA}/fmnist.h5
           ${AL_AA_MODEL_DIR})
  set_tests_properties(e2e_autoattack_cuda PROPERTIES FIXTURES_REQUIRED "fmnist;aa_model"
                       LABELS "e2e;cuda" TIMEOUT 900 SKIP_RETURN_CODE 77)
endif()
