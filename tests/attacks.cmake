# losses/ and attacks/ tests (CPU reference; the CUDA twins are compared in the CUDA tests).
# test_losses runs tests/torch/losses_ref.py with Debian's python3 (torch); without torch that
# case reports a skip.
al_add_test(NAME test_losses SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_losses.c LABELS cpu asan)
al_add_test(NAME test_attacks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_attacks.c LABELS cpu asan)
