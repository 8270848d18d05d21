// WorkerMetrics: failed batches and throwing completions and pool tasks are counted
// under their Prometheus names in the one registry.
#include "worker/worker_metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace infermesh::worker {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(WorkerMetrics, FailedBatchesAreCountedByModelAndReason) {
  metrics::Registry r;
  WorkerMetrics wm(r);
  BatchRecord ok;
  ok.rows = 2;
  wm.ObserveBatch("bge", ok);
  BatchRecord oom = ok;
  oom.ok = false;
  oom.failure = "out_of_memory";
  wm.ObserveBatch("bge", oom);
  wm.ObserveBatch("bge", oom);
  BatchRecord err = ok;
  err.ok = false;
  err.failure = "backend_error";
  wm.ObserveBatch("mlp", err);
  const std::string text = r.RenderText();
  EXPECT_TRUE(Has(text, "infermesh_batch_failures_total{model=\"bge\",reason=\"out_of_memory\"} 2"))
      << text;
  EXPECT_TRUE(Has(text, "infermesh_batch_failures_total{model=\"mlp\",reason=\"backend_error\"} 1"))
      << text;
  EXPECT_EQ(text.find("reason=\"\""), std::string::npos) << text;
}

TEST(WorkerMetrics, CompletionAndPoolTaskExceptionsAreScraped) {
  metrics::Registry r;
  WorkerMetrics wm(r);
  double thrown = 0;
  wm.BindCompletionExceptions("bge", [&] { return thrown; });
  ThreadPoolStats tokenize;
  tokenize.name = "tokenize";
  tokenize.failed = 3;
  ThreadPoolStats kserve;
  kserve.name = "kserve";
  wm.BindGauges({}, {[&] { return tokenize; }, [&] { return kserve; }}, [] { return 0.0; });
  thrown = 5;
  const std::string text = r.RenderText();
  EXPECT_TRUE(Has(text, "infermesh_completion_exceptions_total{model=\"bge\"} 5")) << text;
  EXPECT_TRUE(Has(text, "infermesh_thread_pool_task_failures_total{pool=\"tokenize\"} 3")) << text;
  EXPECT_TRUE(Has(text, "infermesh_thread_pool_task_failures_total{pool=\"kserve\"} 0")) << text;
  wm.Unbind();
}

TEST(WorkerMetrics, ModelWeightBytesAreReadAtScrapeTime) {
  metrics::Registry r;
  WorkerMetrics wm(r);
  double bytes = 1000;
  wm.BindModelWeightBytes("bge", [&] { return bytes; });
  EXPECT_TRUE(Has(r.RenderText(), "infermesh_model_weight_bytes{model=\"bge\"} 1000"));
  bytes = 500;  // e.g. a copy released after load
  const std::string text = r.RenderText();
  EXPECT_TRUE(Has(text, "infermesh_model_weight_bytes{model=\"bge\"} 500")) << text;
  wm.Unbind();
  EXPECT_EQ(r.RenderText().find("infermesh_model_weight_bytes{"), std::string::npos);
}

}  // namespace
}  // namespace infermesh::worker
