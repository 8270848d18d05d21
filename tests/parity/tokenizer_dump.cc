// Encodes a corpus (one JSON string per line) with infermesh's tokenizer and writes
// "ids<TAB>offsets" per line, the format tokenizer_ref.js writes for Hugging Face.
//
//   tokenizer_dump tokenizer.json|vocab.txt corpus.jsonl out.txt
#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "runtime/tokenizer.h"

int main(int argc, char** argv) {
  using infermesh::runtime::Tokenizer;
  if (argc != 4) {
    std::cerr << "usage: tokenizer_dump tokenizer.json|vocab.txt corpus.jsonl out.txt\n";
    return 2;
  }
  std::string path = argv[1];
  bool vocab_txt = path.size() >= 4 && path.substr(path.size() - 4) == ".txt";
  auto tok = vocab_txt ? Tokenizer::FromVocabTxt(path) : Tokenizer::FromJsonFile(path);
  if (!tok.ok()) {
    std::cerr << "load failed: " << tok.status().ToString() << "\n";
    return 1;
  }
  std::ifstream in(argv[2]);
  std::ofstream out(argv[3]);
  std::string line, row;
  size_t n = 0, tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (ec || !v.is_string()) {
      std::cerr << "bad corpus line " << n + 1 << "\n";
      return 1;
    }
    auto enc = (*tok)->Encode(std::string_view(v.get_string()));
    ++n;
    if (!enc.ok()) {
      out << "ERROR " << enc.status().ToString() << "\n";
      continue;
    }
    row.clear();
    for (size_t i = 0; i < enc->ids.size(); ++i) {
      if (i) row += ' ';
      row += std::to_string(enc->ids[i]);
    }
    row += '\t';
    for (size_t i = 0; i < enc->offsets.size(); ++i) {
      if (i) row += ' ';
      row += std::to_string(enc->offsets[i].first) + "," + std::to_string(enc->offsets[i].second);
    }
    out << row << "\n";
    tokens += enc->ids.size();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "%s: %zu lines, %zu tokens in %.2f s\n", path.c_str(), n, tokens, s);
  return 0;
}
