# I/O tests: dataset files, converters, checkpoints, and the bad-input catalogue.
# Python checks use al_test_python() (/usr/bin/python3: Debian h5py + numpy).
al_add_test(NAME test_datasets SOURCES test_datasets.c LABELS cpu asan TIMEOUT 300
            ARGS --advlab=$<TARGET_FILE:advlab>)
al_add_test(NAME test_checkpoint SOURCES test_checkpoint.c LABELS cpu asan TIMEOUT 300)
al_add_test(NAME test_badinput SOURCES test_badinput.c LABELS cpu asan TIMEOUT 300
            ARGS --advlab=$<TARGET_FILE:advlab>)
# The tests run the CLI binary: build it with them.
add_dependencies(test_datasets advlab)
add_dependencies(test_badinput advlab)
