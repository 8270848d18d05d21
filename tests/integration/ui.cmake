# The gateway's status page (/ui) in headless Chromium (Debian's chromium, npm
# playwright-core from tools/ref) against `infermesh up` with 3 workers: live charts, worker
# rows, a job's progress bar, a killed worker's row turning red; screenshot in
# bench/results/ui.png. Chromium missing is a failure (make test installs it).
#
#   ctest --test-dir build/release -R integration_ui --output-on-failure
#   node tests/integration/ui_test.mjs BIN tools/ref/node_modules bench/results/ui.png
add_test(NAME integration_ui
         COMMAND node ${CMAKE_CURRENT_LIST_DIR}/ui_test.mjs $<TARGET_FILE:infermesh>
                 ${PROJECT_SOURCE_DIR}/tools/ref/node_modules
                 ${PROJECT_SOURCE_DIR}/bench/results/ui.png)
set_tests_properties(integration_ui PROPERTIES LABELS integration TIMEOUT 600)
