# FAB / FAB-T and Square (attacks/fab.c, attacks/square.c): CPU, seconds on 2 cores.
al_add_test(NAME test_fab_square SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_fab_square.c
            LABELS cpu TIMEOUT 300)
