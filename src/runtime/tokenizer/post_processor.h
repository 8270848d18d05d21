// Post-processing: wraps one encoded sequence in special tokens (TemplateProcessing,
// BertProcessing, RobertaProcessing), sets type ids, and trims byte-level offsets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/status.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer/models.h"

namespace infermesh::runtime::tok {

struct TemplateItem {
  bool is_sequence = false;  // true: the input tokens ($A); false: special tokens
  int64_t type_id = 0;
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
};

class PostProcessor {
 public:
  // No special tokens, type id 0: what a null post_processor means.
  PostProcessor() : single_{TemplateItem{true, 0, {}, {}}} {}
  static PostProcessor Wrap(const std::string& cls, int64_t cls_id, const std::string& sep,
                            int64_t sep_id);

  size_t num_special_tokens() const { return num_special_; }
  // Appends the final sequence to `enc` (ids, tokens, offsets, type ids, mask).
  void Apply(std::vector<Token>& tokens, bool add_special_tokens, Encoding& enc) const;

  friend Result<PostProcessor> PostProcessorFromJson(const boost::json::value& v);

 private:
  void SetTemplate(std::vector<TemplateItem> items);

  std::vector<TemplateItem> single_;
  size_t num_special_ = 0;
  bool trim_offsets_ = false;      // RoBERTa / ByteLevel: offsets exclude spaces
  bool add_prefix_space_ = false;  // ... except the prefix space of the first token
};

Result<PostProcessor> PostProcessorFromJson(const boost::json::value& v);

}  // namespace infermesh::runtime::tok
