# The HTTP server's protections on the real `infermesh worker`: a slow-loris flood past
# server.max_connections must not lock out a new client, and SIGTERM turns health checks
# to 503 before the listener closes.
#
#   ctest --test-dir build/release -R integration_server_limits --output-on-failure
#   tests/integration/server_limits_test.py BIN tools/ref/node_modules -k Flood
add_test(NAME integration_server_limits
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/server_limits_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_server_limits PROPERTIES LABELS integration TIMEOUT 300)
