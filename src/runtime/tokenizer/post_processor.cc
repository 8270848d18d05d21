// HF-compatible post-processors; see post_processor.h.
#include "runtime/tokenizer/post_processor.h"

#include <algorithm>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime::tok {
namespace {

Result<std::pair<std::string, int64_t>> TokenPair(const boost::json::value* v) {
  const auto* a = v ? v->if_array() : nullptr;
  if (a == nullptr || a->size() != 2 || !(*a)[0].is_string()) {
    return InvalidArgument("special token must be [token, id]");
  }
  auto id = AsNumber((*a)[1]);
  if (!id) return InvalidArgument("special token id must be a number");
  return std::make_pair(std::string((*a)[0].get_string()), static_cast<int64_t>(*id));
}

// Leading/trailing characters of a byte-level token that stand for whitespace.
bool IsByteLevelSpace(char32_t c) { return c == 0x120 || IsWhitespace(c); }

void TrimOffsets(std::vector<Token>& tokens, bool add_prefix_space) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    Token& t = tokens[i];
    std::u32string cs;
    size_t k = 0;
    while (k < t.text.size()) cs.push_back(DecodeUtf8(t.text, k));
    size_t lead = 0, trail = 0;
    while (lead < cs.size() && IsByteLevelSpace(cs[lead])) ++lead;
    while (trail < cs.size() && IsByteLevelSpace(cs[cs.size() - 1 - trail])) ++trail;
    if (lead > 0) {
      bool is_first = i == 0 || t.begin == 0;
      if (is_first && add_prefix_space && lead == 1) lead = 0;
      t.begin = std::min(t.begin + static_cast<uint32_t>(lead), t.end);
    }
    if (trail > 0 && t.end >= trail) {
      t.end = std::max(t.end - static_cast<uint32_t>(trail), t.begin);
    }
  }
}

Result<std::vector<TemplateItem>> ParseTemplate(const boost::json::value& v) {
  const auto* single = Field(v, "single");
  if (single == nullptr || !single->is_array()) {
    return InvalidArgument("TemplateProcessing without \"single\"");
  }
  const auto* specials = Field(v, "special_tokens");
  std::vector<TemplateItem> items;
  for (const auto& piece : single->get_array()) {
    TemplateItem item;
    if (const auto* seq = Field(piece, "Sequence")) {
      item.is_sequence = true;
      item.type_id = static_cast<int64_t>(NumberField(*seq, "type_id").value_or(0));
    } else if (const auto* sp = Field(piece, "SpecialToken")) {
      auto name = StringField(*sp, "id");
      if (!name) return InvalidArgument("SpecialToken without id");
      item.type_id = static_cast<int64_t>(NumberField(*sp, "type_id").value_or(0));
      const auto* def = specials ? Field(*specials, *name) : nullptr;
      const auto* ids = def ? Field(*def, "ids") : nullptr;
      const auto* toks = def ? Field(*def, "tokens") : nullptr;
      if (ids == nullptr || !ids->is_array() || toks == nullptr || !toks->is_array() ||
          ids->get_array().size() != toks->get_array().size()) {
        return InvalidArgument("TemplateProcessing: undefined special token " + *name);
      }
      for (size_t i = 0; i < ids->get_array().size(); ++i) {
        auto id = AsNumber(ids->get_array()[i]);
        const auto& tok = toks->get_array()[i];
        if (!id || !tok.is_string()) return InvalidArgument("bad special token " + *name);
        item.ids.push_back(static_cast<int64_t>(*id));
        item.tokens.emplace_back(tok.get_string());
      }
    } else {
      return InvalidArgument("TemplateProcessing: unknown template piece");
    }
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

void PostProcessor::SetTemplate(std::vector<TemplateItem> items) {
  single_ = std::move(items);
  num_special_ = 0;
  for (const auto& it : single_) num_special_ += it.ids.size();
}

PostProcessor PostProcessor::Wrap(const std::string& cls, int64_t cls_id, const std::string& sep,
                                  int64_t sep_id) {
  PostProcessor p;
  p.SetTemplate({TemplateItem{false, 0, {cls_id}, {cls}}, TemplateItem{true, 0, {}, {}},
                 TemplateItem{false, 0, {sep_id}, {sep}}});
  return p;
}

void PostProcessor::Apply(std::vector<Token>& tokens, bool add_special_tokens,
                          Encoding& enc) const {
  if (trim_offsets_) TrimOffsets(tokens, add_prefix_space_);
  size_t total = tokens.size() + (add_special_tokens ? num_special_ : 0);
  enc.ids.reserve(total);
  enc.tokens.reserve(total);
  enc.offsets.reserve(total);
  enc.type_ids.reserve(total);
  for (const TemplateItem& item : single_) {
    if (item.is_sequence) {
      int64_t type_id = add_special_tokens ? item.type_id : 0;
      for (Token& t : tokens) {
        enc.ids.push_back(t.id);
        enc.tokens.push_back(std::move(t.text));
        enc.offsets.emplace_back(t.begin, t.end);
        enc.type_ids.push_back(type_id);
      }
    } else if (add_special_tokens) {
      for (size_t i = 0; i < item.ids.size(); ++i) {
        enc.ids.push_back(item.ids[i]);
        enc.tokens.push_back(item.tokens[i]);
        enc.offsets.emplace_back(0, 0);
        enc.type_ids.push_back(item.type_id);
      }
    }
  }
  enc.attention_mask.assign(enc.ids.size(), 1);
}

Result<PostProcessor> PostProcessorFromJson(const boost::json::value& v) {
  auto type = StringField(v, "type");
  if (!type) return InvalidArgument("post_processor without a \"type\"");
  PostProcessor p;
  if (*type == "TemplateProcessing") {
    IM_ASSIGN_OR_RETURN(auto items, ParseTemplate(v));
    p.SetTemplate(std::move(items));
  } else if (*type == "BertProcessing" || *type == "RobertaProcessing") {
    IM_ASSIGN_OR_RETURN(auto cls, TokenPair(Field(v, "cls")));
    IM_ASSIGN_OR_RETURN(auto sep, TokenPair(Field(v, "sep")));
    p = PostProcessor::Wrap(cls.first, cls.second, sep.first, sep.second);
    if (*type == "RobertaProcessing") {
      p.trim_offsets_ = BoolField(v, "trim_offsets").value_or(true);
      p.add_prefix_space_ = BoolField(v, "add_prefix_space").value_or(true);
    }
  } else if (*type == "ByteLevel") {
    p.trim_offsets_ = BoolField(v, "trim_offsets").value_or(true);
    p.add_prefix_space_ = BoolField(v, "add_prefix_space").value_or(true);
  } else if (*type == "Sequence") {
    const auto* list = Field(v, "processors");
    if (list == nullptr || !list->is_array()) return InvalidArgument("Sequence without list");
    for (const auto& item : list->get_array()) {
      IM_ASSIGN_OR_RETURN(PostProcessor sub, PostProcessorFromJson(item));
      if (sub.num_special_ > 0) p.SetTemplate(sub.single_);
      if (sub.trim_offsets_) {
        p.trim_offsets_ = true;
        p.add_prefix_space_ = sub.add_prefix_space_;
      }
    }
  } else {
    return Unimplemented("unsupported post_processor type: " + *type);
  }
  return p;
}

}  // namespace infermesh::runtime::tok
