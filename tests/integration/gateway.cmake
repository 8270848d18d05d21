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

# The workers on hosts apart: each in its own network namespace behind a veth pair and a
# bridge, one link slowed (netem delay and loss where the kernel has netem, a tbf rate
# limit always), then another cut and healed, without and with hedging; the gateway keeps
# answering and nothing is answered past its deadline. Needs root (CAP_NET_ADMIN), else
# it reports Skipped. Serial: its deadlines and the time to take a lost host out are
# measured.
#
#   ctest --test-dir build/release -R integration_gateway_netns --output-on-failure
add_test(NAME integration_gateway_netns
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/gateway_netns_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_gateway_netns PROPERTIES
                     LABELS integration TIMEOUT 240 RUN_SERIAL TRUE
                     SKIP_REGULAR_EXPRESSION "network namespaces unavailable")
