# CPU ops (core/ops/*.c) vs the double references and finite differences; model graph
# forward/backward (smallcnn + a hand-built residual/BN graph) vs double-precision evaluation.
al_add_test(NAME test_ops SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ops.c LABELS cpu asan TIMEOUT 300)
al_add_test(NAME test_model_graph SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_graph.c
            LABELS cpu asan TIMEOUT 300)
