# The deployments in deploy/, tried for real where this machine can: deploy/slurm/mesh.sbatch
# on the local Slurm (munged, slurmctld, slurmd started by the test; 1 node, 2 workers):
# the gateway and the workers come up under srun, traffic reaches both workers through the
# gateway, scancel stops every role. A missing Slurm is a failure. Serial: it runs a Slurm of
# its own next to the job service's.
#
#   ctest --test-dir build/release -R integration_deploy --output-on-failure
add_test(NAME integration_deploy_slurm
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/deploy_slurm_test.py
                 $<TARGET_FILE:infermesh> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_deploy_slurm PROPERTIES LABELS integration TIMEOUT 600
                     RUN_SERIAL TRUE)

# The Kubernetes chart without a cluster (no Helm here; kubectl's dry run needs an API
# server): the rendered manifests are the chart's (deploy/k8s/render.py), yamllint, and a
# schema and consistency check (selectors, ports, probes, the gateway's DNS membership, the
# HPA's metric, configuration keys).
add_test(NAME integration_deploy_k8s
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/deploy_k8s_test.py
                 $<TARGET_FILE:infermesh>)
set_tests_properties(integration_deploy_k8s PROPERTIES LABELS integration TIMEOUT 120)

# systemd units, the compose file, the Dockerfile and the Kubernetes containers: every
# command line they run parses (`infermesh --check-args ...`), every INFERMESH_* variable is
# a declared key, `systemd-analyze verify` and yamllint pass.
add_test(NAME integration_deploy_files
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/deploy_files_test.py
                 $<TARGET_FILE:infermesh>)
set_tests_properties(integration_deploy_files PROPERTIES LABELS integration TIMEOUT 120)

# The Prometheus alerting rules (deploy/prometheus/alerts.yaml): promtool's syntax check and
# its unit tests (alerts_test.yaml: each alert fires on the series that should fire it).
add_test(NAME integration_deploy_alerts
         COMMAND promtool test rules ${PROJECT_SOURCE_DIR}/deploy/prometheus/alerts_test.yaml)
set_tests_properties(integration_deploy_alerts PROPERTIES LABELS integration TIMEOUT 60)
add_test(NAME integration_deploy_alerts_check
         COMMAND promtool check rules ${PROJECT_SOURCE_DIR}/deploy/prometheus/alerts.yaml)
set_tests_properties(integration_deploy_alerts_check PROPERTIES LABELS integration TIMEOUT 60)
