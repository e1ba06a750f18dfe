# CUDA twins vs their CPU references (tests/test_cuda.c). Registered only in CUDA builds; on a
# machine without a usable GPU the test prints "skipped: no GPU" and exits 77 (SKIP).
# ADVLAB_SYNC_CHECK=1: every launch syncs, so an asynchronous fault names its launch site.
if(AL_HAVE_CUDA)
  al_add_test(NAME test_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda.c LABELS cuda
              TIMEOUT 600)
  set_tests_properties(test_cuda PROPERTIES ENVIRONMENT "ADVLAB_SYNC_CHECK=1")
endif()
# Second batch of CUDA twins (tests/test_cuda2.c): TRADES/MART/CW losses, attack random start,
# masked sum of squares (grad clipping), device-resident batch assembly with crop/flip.
if(AL_HAVE_CUDA)
  al_add_test(NAME test_cuda2 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda2.c LABELS cuda
              TIMEOUT 600)
  set_tests_properties(test_cuda2 PROPERTIES ENVIRONMENT "ADVLAB_SYNC_CHECK=1")
endif()
# CUDA graphs (tests/test_cuda_graph.c): capture / update / replay and the PGD loop replayed
# from a graph, bitwise against the eager loop. Without ADVLAB_SYNC_CHECK, which turns graphs off.
if(AL_HAVE_CUDA)
  al_add_test(NAME test_cuda_graph SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_graph.c
              LABELS cuda TIMEOUT 600)
endif()
# Channels-last activations (tests/test_cuda_nhwc.c): the layout conversion against its CPU
# twin, NHWC vs NCHW models (fp32 and bf16) and an NHWC attack replayed from a CUDA graph.
if(AL_HAVE_CUDA)
  al_add_test(NAME test_cuda_nhwc SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_nhwc.c
              LABELS cuda TIMEOUT 900)
endif()
