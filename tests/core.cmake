# core/ host modules: config (INI + --set, one schema table) with log/JSONL, and the optimiser
# (SGD/EMA vs torch.optim, LR schedules vs torch.optim.lr_scheduler). Host-only and quick, so
# they also run in the ASan/UBSan pass (label asan). test_optim's torch cases shell out to
# /usr/bin/python3 (tests/torch/optim_ref.py) and skip (77) without torch.
al_add_test(NAME test_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c
            LABELS cpu asan TIMEOUT 60)
al_add_test(NAME test_optim SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_optim.c
            LABELS cpu asan TIMEOUT 120)
