# `infermesh gateway` end to end: the real binary in front of three real workers on
# ephemeral ports (tiny demo model), big batches against the workers' own answers, a
# worker killed with SIGKILL under load and restarted, bad inputs, a fake worker that
# answers garbage or cuts its responses short.
#
#   ctest --test-dir build/release -R integration_gateway --output-on-failure
#   tests/integration/gateway_test.py BIN tools/ref/node_modules -k DeadWorker
add_test(NAME integration_gateway
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/gateway_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_gateway PROPERTIES LABELS integration TIMEOUT 600)
