# Arch builders vs their PyTorch twins (tools/torch/models.py) and the checkpoint converter
# (tools/torch/convert_pt.py). One executable, one CTest per case so `ctest -j` spreads them;
# each case shells out to /usr/bin/python3 (Debian torch) and skips (77) without it.
set(AL_MODELS_TORCH_CASES struct grad_smallcnn grad_preact_resnet18 grad_resnet18 grad_wrn
    roundtrip_smallcnn roundtrip_preact_resnet18 roundtrip_resnet18 roundtrip_wrn)
list(POP_FRONT AL_MODELS_TORCH_CASES al_first_case)
al_add_test(NAME test_models_torch SOURCES test_models_torch.c LABELS cpu
            ARGS ${al_first_case} TIMEOUT 300)
foreach(c ${AL_MODELS_TORCH_CASES})
  add_test(NAME models_torch_${c} COMMAND test_models_torch ${c}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(models_torch_${c} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
    LABELS cpu ENVIRONMENT "OMP_NUM_THREADS=2")
endforeach()
set_tests_properties(test_models_torch PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2")
