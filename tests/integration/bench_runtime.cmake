# `make bench-runtime`'s harness, smoke-tested so that it cannot rot: the driver in --quick
# mode on two cases at one thread (runtime_runner and ONNX Runtime from tools/ref), then
# the JSON's fields. Nothing about speed is asserted.
#
#   ctest --test-dir build/release -R integration_bench_runtime --output-on-failure
add_test(NAME integration_bench_runtime
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/bench_runtime_test.py
                 ${PROJECT_SOURCE_DIR}/bench/runtime_bench.py $<TARGET_FILE:runtime_runner>
                 ${CMAKE_BINARY_DIR}/fixtures ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_bench_runtime PROPERTIES FIXTURES_REQUIRED encoder_fixtures
                                                          LABELS integration TIMEOUT 180)
