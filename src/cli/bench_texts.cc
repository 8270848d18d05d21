#include "cli/bench_texts.h"

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_set>

namespace infermesh::cli {
namespace {

bool IsPlainWord(std::string_view w) {
  if (w.size() < 2) return false;
  return std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}

}  // namespace

Result<std::vector<std::string>> LoadVocabularyWords(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> words;
  const fs::path json_path = fs::path(model_dir) / "tokenizer.json";
  const fs::path txt_path = fs::path(model_dir) / "vocab.txt";
  if (fs::exists(json_path)) {
    std::ifstream in(json_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    boost::system::error_code ec;
    boost::json::value doc = boost::json::parse(ss.str(), ec);
    if (ec || !doc.is_object()) {
      return Status(StatusCode::kInvalidArgument, json_path.string() + ": not JSON");
    }
    const auto* model = doc.as_object().if_contains("model");
    const auto* vocab =
        model && model->is_object() ? model->as_object().if_contains("vocab") : nullptr;
    if (!vocab || !vocab->is_object()) {
      return Status(StatusCode::kInvalidArgument, json_path.string() + ": no model.vocab object");
    }
    std::vector<std::pair<int64_t, std::string>> by_id;
    for (const auto& [key, id] : vocab->as_object()) {
      if (IsPlainWord(key) && id.is_int64()) by_id.emplace_back(id.as_int64(), std::string(key));
    }
    std::sort(by_id.begin(), by_id.end());
    for (auto& [id, w] : by_id) words.push_back(std::move(w));
  } else if (fs::exists(txt_path)) {
    std::ifstream in(txt_path);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (IsPlainWord(line)) words.push_back(line);
    }
  } else {
    return Status(StatusCode::kNotFound, model_dir + ": no tokenizer.json or vocab.txt");
  }
  if (words.size() < 100) {
    return Status(StatusCode::kInvalidArgument,
                  model_dir + ": fewer than 100 whole-word vocabulary entries");
  }
  return words;
}

std::vector<std::string> UniqueTexts(const std::vector<std::string>& words, size_t count,
                                     int tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, words.size() - 1);
  std::unordered_set<std::string> seen;
  std::vector<std::string> texts;
  texts.reserve(count);
  while (texts.size() < count) {
    std::string t;
    for (int i = 0; i < tokens; ++i) {
      if (i) t += ' ';
      t += words[pick(rng)];
    }
    if (seen.insert(t).second) texts.push_back(std::move(t));
  }
  return texts;
}

std::string EmbedBody(const std::string& path, const std::vector<std::string>& texts,
                      const std::string& openai_model) {
  const bool openai = path.find("/v1/embeddings") != std::string::npos;
  boost::json::object body;
  if (texts.size() == 1) {
    body[openai ? "input" : "inputs"] = texts[0];
  } else {
    boost::json::array arr;
    for (const auto& t : texts) arr.emplace_back(t);
    body[openai ? "input" : "inputs"] = std::move(arr);
  }
  if (openai) body["model"] = openai_model;
  return boost::json::serialize(body);
}

}  // namespace infermesh::cli
