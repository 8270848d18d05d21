# libFuzzer target for the job service's parsers (src/jobs/api.h, slurm.h); fuzz preset only.
#   build/fuzz/tests/jobs_fuzz -max_total_time=60 tests/fuzz/corpus/jobs
if(INFERMESH_FUZZ)
  add_executable(jobs_fuzz ${CMAKE_CURRENT_LIST_DIR}/jobs_fuzz.cc)
  target_compile_options(jobs_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(jobs_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(jobs_fuzz PRIVATE infermesh_jobs)
  infermesh_warnings(jobs_fuzz)
  add_dependencies(fuzzers jobs_fuzz)
endif()
