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
