# Conformance tests against independent reference implementations (issue #6 item 7).
# conformance_autoattack: advlab's AutoAttack 'standard' vs torchattacks (PyPI, pinned in the
# script) on a PGD-AT SmallCNN trained here on Fashion-MNIST (fixture fmnist of
# tests/e2e.cmake). The script makes the reference virtualenv ${AL_TESTDATA}/venv-ta itself
# (--system-site-packages over Debian's python3-torch/python3-scipy, pip install --no-deps
# torchattacks) and skips (exit 77) only when pip cannot reach the package index. Budget:
# < 6 min on 2 idle cores (advlab and the reference run concurrently, one thread each);
# the timeout leaves room for loaded shared runners.
add_test(NAME conformance_autoattack
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/conformance/autoattack_ta.sh
                 $<TARGET_FILE:advlab> ${AL_TESTDATA}/conformance_autoattack
                 ${AL_TESTDATA}/fmnist.h5 ${AL_TESTDATA}/venv-ta)
set_tests_properties(conformance_autoattack PROPERTIES FIXTURES_REQUIRED fmnist
                     LABELS "cpu;e2e" TIMEOUT 2400 SKIP_RETURN_CODE 77)
