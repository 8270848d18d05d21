// `infermesh embed-shard`: one task of a slurm_embed job, run by Slurm on a cluster node.
// It embeds its shard of the input in process, with the worker's runtime, into a shard
// file the job service merges once every task has succeeded (src/jobs/slurm_executor.h).
//
//   infermesh embed-shard --model DIR --input corpus.jsonl --output part-3.jsonl
//       --shard 3 --shards 8 [--input-format jsonl|text] [--output-format jsonl|f32]
//       [--chunk-items 256] [--max-errors N] [--no-normalize] [--no-truncate] [--threads T]
//
// Shard k of n holds the items [k·N/n, (k+1)·N/n) of the input's N items, numbered as in
// the whole file, and is written exactly as an `embed` job writes its output (the same
// files, the same checkpoints: a task that Slurm runs again resumes). Exit status 0 when
// the shard is complete, 1 when it failed (the reason on stderr), 2 for bad usage.
#include <iostream>

#include "cli/commands.h"
#include "jobs/embed_runner.h"
#include "runtime/model.h"

namespace infermesh::cli {
namespace {

struct ShardCliOptions {
  std::string model, input, output;
  std::string input_format, output_format = "jsonl";
  int shard = 0, shards = 1;
  int chunk_items = 256;
  int64_t max_errors = 0;
  bool no_normalize = false, no_truncate = false;
  int threads = -1;
};

int RunShard(const ShardCliOptions& o) {
  auto session_options = RuntimeOptions(o.threads);
  if (!session_options.ok()) {
    std::cerr << "error: " << session_options.status().message() << "\n";
    return 2;
  }
  jobs::EmbedSpec spec;
  spec.input = o.input;
  spec.output = o.output;
  if (o.input_format.empty()) {
    spec.input_format = o.input.size() > 6 && o.input.substr(o.input.size() - 6) == ".jsonl"
                            ? jobs::InputFormat::kJsonl
                            : jobs::InputFormat::kText;
  } else if (o.input_format == "jsonl" || o.input_format == "text") {
    spec.input_format =
        o.input_format == "jsonl" ? jobs::InputFormat::kJsonl : jobs::InputFormat::kText;
  } else {
    std::cerr << "error: --input-format must be jsonl or text\n";
    return 2;
  }
  if (o.output_format != "jsonl" && o.output_format != "f32") {
    std::cerr << "error: --output-format must be jsonl or f32\n";
    return 2;
  }
  spec.output_format =
      o.output_format == "f32" ? jobs::OutputFormat::kF32 : jobs::OutputFormat::kJsonl;
  spec.chunk_items = o.chunk_items;
  spec.concurrency = 1;
  spec.max_errors = o.max_errors;
  spec.normalize = !o.no_normalize;
  spec.truncate = !o.no_truncate;
  auto model = runtime::EmbeddingModel::Load(o.model, *session_options);
  if (!model.ok()) {
    std::cerr << "error: " << model.status().ToString() << "\n";
    return 1;
  }
  jobs::EmbedRunnerOptions ro;
  ro.shard = o.shard;
  ro.job_id = "shard-" + std::to_string(o.shard);
  ro.shards = o.shards;
  ro.embed = [&model](const std::vector<std::string>& texts,
                      const jobs::EmbedSpec& s) -> Result<std::vector<std::vector<float>>> {
    runtime::EmbedOptions eo;
    eo.normalize = s.normalize;
    eo.truncate = s.truncate;
    return (*model)->Embed(texts, eo);
  };
  auto r = jobs::RunEmbedJob(spec, ro);
  if (!r.ok()) {
    std::cerr << "error: shard " << o.shard << " of " << o.shards << ": " << r.status().ToString()
              << "\n";
    return 1;
  }
  std::cout << "shard " << o.shard << " of " << o.shards << ": " << r->embedded << " embedded, "
            << r->failed << " failed, " << r->resumed << " from a checkpoint\n";
  return 0;
}

}  // namespace

void AddEmbedShardCommand(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ShardCliOptions>();
  CLI::App* cmd =
      app.add_subcommand("embed-shard", "Embed one shard of a file in process (a Slurm task)");
  AddCommonOptions(cmd, {"runtime."});
  cmd->add_option("--model", o->model, "Hugging Face–layout model directory")->required();
  cmd->add_option("--input", o->input, "Input file (JSONL or text)")->required();
  cmd->add_option("--output", o->output, "This shard's output file")->required();
  cmd->add_option("--shard", o->shard, "This shard's index, from 0")->required();
  cmd->add_option("--shards", o->shards, "Number of shards")
      ->required()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--input-format", o->input_format, "jsonl or text (default: by extension)");
  cmd->add_option("--output-format", o->output_format, "jsonl or f32");
  cmd->add_option("--chunk-items", o->chunk_items, "Items per batch and checkpoint")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-errors", o->max_errors, "Failed items tolerated");
  cmd->add_flag("--no-normalize", o->no_normalize, "Do not L2-normalize");
  cmd->add_flag("--no-truncate", o->no_truncate, "Fail items over the maximum length");
  cmd->add_option("--threads", o->threads, "Intra-op threads (0 = all cores)");
  cmd->callback([o, &exit_code] { exit_code = RunShard(*o); });
}

}  // namespace infermesh::cli
