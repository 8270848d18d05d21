// The tokenizer pipeline (added tokens → normalizer → pre-tokenizer → model →
// truncation → post-processor) and its loaders for tokenizer.json and vocab.txt.
#include "runtime/tokenizer.h"

#include <fstream>
#include <sstream>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/models.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/post_processor.h"
#include "runtime/tokenizer/pre_tokenizer.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime {
namespace {

using tok::NText;

// A token matched verbatim in the raw input before normalization (HF "added tokens"
// with normalized=false, e.g. "[CLS]" or "<mask>").
struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool lstrip = false, rstrip = false, single_word = false;
};

struct Segment {
  size_t begin, end;                      // bytes taken from the text (with stripped whitespace)
  const AddedToken* added;                // null: ordinary text
  size_t match_begin = 0, match_end = 0;  // the token itself, for its offsets
};

bool IsAsciiSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

bool IsWordChar(std::string_view s, size_t byte_pos_before, bool before) {
  // Looks at the character just before (or at) a byte position.
  if (before) {
    if (byte_pos_before == 0) return false;
    size_t i = byte_pos_before - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    char32_t c = tok::DecodeUtf8(s, i);
    return tok::IsLetter(c) || tok::IsNumber(c) || c == U'_';
  }
  if (byte_pos_before >= s.size()) return false;
  size_t i = byte_pos_before;
  char32_t c = tok::DecodeUtf8(s, i);
  return tok::IsLetter(c) || tok::IsNumber(c) || c == U'_';
}

class PipelineTokenizer final : public Tokenizer {
 public:
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Model> model;
  tok::PostProcessor post;
  std::vector<AddedToken> added;
  int64_t pad = 0;

  Result<Encoding> Encode(std::string_view text, const EncodeOptions& opts) const override {
    IM_RETURN_IF_ERROR(tok::ValidateUtf8(text));
    if (text.size() > 0xFFFFFFF0u) return InvalidArgument("input longer than 4 GiB");
    std::vector<tok::Token> tokens;
    for (const Segment& seg : SplitAdded(text)) {
      if (seg.added != nullptr) {
        tokens.push_back({seg.added->id, seg.added->content, static_cast<uint32_t>(seg.match_begin),
                          static_cast<uint32_t>(seg.match_end)});
        continue;
      }
      NText nt = tok::ToNText(text.substr(seg.begin, seg.end - seg.begin),
                              static_cast<uint32_t>(seg.begin));
      if (normalizer) normalizer->Normalize(nt);
      std::vector<NText> pieces;
      pieces.push_back(std::move(nt));
      if (pre_tokenizer) pre_tokenizer->Split(pieces);
      for (const NText& p : pieces) model->Tokenize(p, tokens);
    }
    Encoding enc;
    if (opts.max_length > 0) {
      size_t specials = opts.add_special_tokens ? post.num_special_tokens() : 0;
      if (opts.max_length < specials) {
        return InvalidArgument("max_length " + std::to_string(opts.max_length) +
                               " is shorter than the " + std::to_string(specials) +
                               " special tokens");
      }
      size_t budget = opts.max_length - specials;
      if (tokens.size() > budget) {
        enc.truncated = true;
        if (opts.side == TruncationSide::kRight) {
          tokens.resize(budget);
        } else {
          tokens.erase(tokens.begin(), tokens.end() - static_cast<ptrdiff_t>(budget));
        }
      }
    }
    post.Apply(tokens, opts.add_special_tokens, enc);
    return enc;
  }

  int64_t pad_id() const override { return pad; }
  size_t vocab_size() const override {
    size_t n = model->vocab_size();
    for (const auto& a : added) {
      if (!model->TokenToId(a.content)) ++n;
    }
    return n;
  }
  std::optional<int64_t> TokenToId(std::string_view token) const override {
    for (const auto& a : added) {
      if (a.content == token) return a.id;
    }
    return model->TokenToId(token);
  }
  size_t num_special_tokens() const override { return post.num_special_tokens(); }

 private:
  // Leftmost-longest matching of the added tokens, honouring lstrip/rstrip (swallow
  // adjacent whitespace) and single_word (no word characters around the match).
  std::vector<Segment> SplitAdded(std::string_view text) const {
    std::vector<Segment> out;
    size_t text_start = 0, i = 0;
    while (i < text.size() && !added.empty()) {
      const AddedToken* best = nullptr;
      for (const auto& a : added) {
        if (a.content.empty() || text.compare(i, a.content.size(), a.content) != 0) continue;
        if (best != nullptr && a.content.size() <= best->content.size()) continue;
        if (a.single_word &&
            (IsWordChar(text, i, true) || IsWordChar(text, i + a.content.size(), false))) {
          continue;
        }
        best = &a;
      }
      if (best == nullptr) {
        ++i;
        continue;
      }
      size_t b = i, e = i + best->content.size();
      if (best->lstrip) {
        while (b > text_start && IsAsciiSpace(text[b - 1])) --b;
      }
      if (best->rstrip) {
        while (e < text.size() && IsAsciiSpace(text[e])) ++e;
      }
      if (b > text_start) out.push_back({text_start, b, nullptr});
      out.push_back({b, e, best, i, i + best->content.size()});
      text_start = i = e;
    }
    if (text_start < text.size() || out.empty()) out.push_back({text_start, text.size(), nullptr});
    return out;
  }
};

Result<std::unique_ptr<Tokenizer>> FromParsed(const boost::json::value& root) {
  auto t = std::make_unique<PipelineTokenizer>();
  const auto* model = tok::Field(root, "model");
  if (model == nullptr) return InvalidArgument("tokenizer.json has no model");
  IM_ASSIGN_OR_RETURN(t->model, tok::ModelFromJson(*model));
  if (const auto* n = tok::Field(root, "normalizer")) {
    IM_ASSIGN_OR_RETURN(t->normalizer, tok::NormalizerFromJson(*n));
  }
  if (const auto* p = tok::Field(root, "pre_tokenizer")) {
    IM_ASSIGN_OR_RETURN(t->pre_tokenizer, tok::PreTokenizerFromJson(*p));
  }
  if (const auto* p = tok::Field(root, "post_processor")) {
    IM_ASSIGN_OR_RETURN(t->post, tok::PostProcessorFromJson(*p));
  }
  if (const auto* list = tok::Field(root, "added_tokens")) {
    if (!list->is_array()) return InvalidArgument("added_tokens must be a list");
    for (const auto& a : list->get_array()) {
      auto content = tok::StringField(a, "content");
      auto id = tok::NumberField(a, "id");
      if (!content || !id) return InvalidArgument("added token without content or id");
      // Tokens matched after normalization are not supported; HF files mark special
      // tokens normalized=false, which is what models ship.
      if (tok::BoolField(a, "normalized").value_or(false) &&
          !tok::BoolField(a, "special").value_or(false)) {
        continue;
      }
      t->added.push_back({*content, static_cast<int64_t>(*id),
                          tok::BoolField(a, "lstrip").value_or(false),
                          tok::BoolField(a, "rstrip").value_or(false),
                          tok::BoolField(a, "single_word").value_or(false)});
    }
  }
  std::optional<int64_t> pad;
  if (const auto* padding = tok::Field(root, "padding")) {
    if (auto id = tok::NumberField(*padding, "pad_id")) pad = static_cast<int64_t>(*id);
  }
  if (!pad) pad = t->TokenToId("[PAD]");
  if (!pad) pad = t->TokenToId("<pad>");
  t->pad = pad.value_or(0);
  return std::unique_ptr<Tokenizer>(std::move(t));
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json) {
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(json, ec);
  if (ec) return InvalidArgument("tokenizer.json is not valid JSON: " + ec.message());
  if (!root.is_object()) return InvalidArgument("tokenizer.json must be an object");
  return FromParsed(root);
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonFile(const std::string& path) {
  IM_ASSIGN_OR_RETURN(std::string json, ReadFile(path));
  auto r = FromJson(json);
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromVocabTxt(const std::string& path,
                                                           bool lowercase) {
  IM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  tok::Vocab vocab;
  size_t pos = 0;
  int64_t id = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    vocab.emplace(std::move(line), id++);
    pos = nl + 1;
  }
  auto t = std::make_unique<PipelineTokenizer>();
  tok::BertNormalizerOptions norm;
  norm.lowercase = norm.strip_accents = lowercase;
  t->normalizer = tok::MakeBertNormalizer(norm);
  t->pre_tokenizer = tok::MakeBertPreTokenizer();
  auto find = [&](const char* s) -> std::optional<int64_t> {
    auto it = vocab.find(std::string_view(s));
    if (it == vocab.end()) return std::nullopt;
    return it->second;
  };
  auto cls = find("[CLS]"), sep = find("[SEP]");
  if (!cls || !sep || !find("[UNK]")) {
    return InvalidArgument(path + ": vocab.txt lacks [CLS], [SEP] or [UNK]");
  }
  for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    if (auto i = find(s)) t->added.push_back({s, *i, false, false, false});
  }
  t->pad = find("[PAD]").value_or(0);
  t->post = tok::PostProcessor::Wrap("[CLS]", *cls, "[SEP]", *sep);
  IM_ASSIGN_OR_RETURN(t->model, tok::MakeWordPiece(std::move(vocab), tok::WordPieceOptions{}));
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace infermesh::runtime
