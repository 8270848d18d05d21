# `infermesh jobs serve` end to end: embed jobs through a real worker (tiny demo model),
# crashes at failpoints and restarts with byte-identical output, a graceful stop, a mesh
# that is down, cancellation, bad submissions, keys, the spool and the CLI.
#
#   ctest --test-dir build/release -R integration_jobs --output-on-failure
#   tests/integration/jobs_test.py BIN tools/ref/node_modules -k Crashes
add_test(NAME integration_jobs
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/jobs_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_jobs PROPERTIES LABELS integration TIMEOUT 900)
