# The real binary's runtime commands (run, embed) on the generated fixtures.
add_test(NAME integration_cli
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/cli_test.py
                 $<TARGET_FILE:infermesh> ${CMAKE_BINARY_DIR}/fixtures
                 ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_cli PROPERTIES FIXTURES_REQUIRED encoder_fixtures
                                                LABELS integration TIMEOUT 300)
