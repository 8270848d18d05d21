# `infermesh worker` end to end: the real binary on ephemeral ports, tiny demo repositories
# written by `infermesh demo-model` into temp dirs, Debian's `requests`, raw sockets and the
# npm `openai` client (tools/ref/node_modules). Every route, every bad input, disconnects,
# overload, the cache, /metrics through promtool, SIGTERM/SIGINT.
#
#   ctest --test-dir build/release -R integration_worker --output-on-failure
#   tests/integration/worker_test.py BIN tools/ref/node_modules -k Overload   # one class
add_test(NAME integration_worker
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/worker_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_worker PROPERTIES LABELS integration TIMEOUT 600)

# `make run` without a TTY: scripts/run.sh (`infermesh up`: gateway, 3 workers, the job
# service) on INFERMESH_PORT and INFERMESH_JOBS_PORT (free ports) and INFERMESH_DEMO_DIR (a
# temp dir), its printed curl examples and `jobs watch`, then SIGINT to its process group.
add_test(NAME integration_make_run
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/make_run_test.sh $<TARGET_FILE:infermesh>)
set_tests_properties(integration_make_run PROPERTIES LABELS integration TIMEOUT 600)
