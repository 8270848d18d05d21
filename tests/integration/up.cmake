# `infermesh up` end to end (the whole mesh from one command, tiny demo model): it serves
# through the gateway, restarts and counts a worker and a gateway killed with SIGKILL, stops
# every role in order on SIGTERM; a role that cannot start fails it with the reason; one model
# folder and TEI's flags; --config/--set after the subcommand and each role's keys in --help.
#
#   ctest --test-dir build/release -R integration_up --output-on-failure
#   tests/integration/up_test.py BIN tools/ref/node_modules -k Restart
add_test(NAME integration_up
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/up_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_up PROPERTIES LABELS integration TIMEOUT 600)
