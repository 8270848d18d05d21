// libFuzzer target: arbitrary bytes → Tokenizer::Encode with each model type. Encode
// must return a value or an InvalidArgument error, never crash or hang; on success the
// encoding's arrays line up and offsets stay inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "runtime/tokenizer.h"

namespace {

using infermesh::runtime::EncodeOptions;
using infermesh::runtime::Tokenizer;
using infermesh::runtime::TruncationSide;

constexpr const char* kWordPiece = R"({"added_tokens":[
  {"id":2,"content":"[CLS]","special":true,"normalized":false},
  {"id":3,"content":"[SEP]","special":true,"normalized":false}],
  "normalizer":{"type":"BertNormalizer","lowercase":true},
  "pre_tokenizer":{"type":"BertPreTokenizer"},
  "post_processor":{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]},
  "model":{"type":"WordPiece","unk_token":"[UNK]","max_input_chars_per_word":100,
    "vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"a":4,"##b":5,"ab":6,"##a":7,"中":8}}})";

constexpr const char* kUnigram = R"({"added_tokens":[
  {"id":1,"content":"<s>","special":true,"normalized":false,"lstrip":true,"rstrip":true}],
  "normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"},
    {"type":"Replace","pattern":{"String":"  "},"content":" "}]},
  "pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"first"},
  "model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["<s>",0],["\u2581",-2],
    ["\u2581a",-1],["a",-3],["b",-3],["ab",-2.5],["\u00e9",-4]]}})";

constexpr const char* kBpe = R"({"added_tokens":[
  {"id":0,"content":"<s>","special":true,"normalized":false,"single_word":true}],
  "normalizer":{"type":"NFD"},
  "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"use_regex":true},
  "post_processor":{"type":"RobertaProcessing","sep":["<s>",0],"cls":["<s>",0]},
  "model":{"type":"BPE","vocab":{"<s>":0,"\u0120":1,"a":2,"b":3,"ab":4,"\u0120ab":5,"'":6},
    "merges":["a b","\u0120 ab"]}})";

std::unique_ptr<Tokenizer> Load(const char* json) {
  auto t = Tokenizer::FromJson(json);
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> tokenizers[] = {Load(kWordPiece), Load(kUnigram),
                                                          Load(kBpe)};
  std::string_view text(reinterpret_cast<const char*>(data), size);
  EncodeOptions opts;
  if (size > 0) {
    opts.max_length = data[0] % 8 == 0 ? 0 : data[0] % 16 + 2;
    opts.side = data[0] & 0x40 ? TruncationSide::kLeft : TruncationSide::kRight;
    opts.add_special_tokens = (data[0] & 0x80) == 0;
  }
  for (const auto& tok : tokenizers) {
    auto enc = tok->Encode(text, opts);
    if (!enc.ok()) continue;
    size_t n = enc->ids.size();
    if (enc->type_ids.size() != n || enc->attention_mask.size() != n || enc->offsets.size() != n ||
        enc->tokens.size() != n) {
      std::abort();
    }
    if (opts.max_length > 0 && n > opts.max_length) std::abort();
    for (auto [b, e] : enc->offsets) {
      if (b > e || e > size) std::abort();
    }
  }
  return 0;
}
