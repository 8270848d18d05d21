// Unigram (Metaspace) and byte-level BPE (RoBERTa-style) on tiny in-memory files.
#include <gtest/gtest.h>

#include <string>

#include "runtime/tokenizer.h"

namespace infermesh::runtime {
namespace {

using Ids = std::vector<int64_t>;
using Offsets = std::vector<std::pair<uint32_t, uint32_t>>;

constexpr const char* kUnigram = R"({
  "added_tokens":[{"id":1,"content":"<s>","special":true,"normalized":false},
                  {"id":2,"content":"</s>","special":true,"normalized":false}],
  "normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Strip"}]},
  "pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},
  "post_processor":{"type":"TemplateProcessing",
    "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
              {"SpecialToken":{"id":"</s>","type_id":0}}],
    "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},
                      "</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}},
  "model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["<s>",0],["</s>",0],
    ["\u2581hello",-1],["\u2581world",-2],["\u2581",-3],["h",-4],["e",-4],["l",-4],["o",-4],
    ["\u2581he",-2],["llo",-2],["fi",-3]]}})";

TEST(TokenizerUnigram, ViterbiMetaspaceAndUnknowns) {
  auto t = Tokenizer::FromJson(kUnigram);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto enc = (*t)->Encode("hello  world");
  ASSERT_TRUE(enc.ok());
  // Two spaces: "▁hello", "▁", "▁world".
  EXPECT_EQ(enc->ids, (Ids{1, 3, 5, 4, 2}));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 5}, {5, 6}, {6, 12}, {0, 0}}));
  // Unknown characters fuse into one <unk>; NFKC turns the ligature into "fi".
  auto unk = (*t)->Encode("hexyz\xef\xac\x81");
  ASSERT_TRUE(unk.ok());
  EXPECT_EQ(unk->ids, (Ids{1, 10, 0, 12, 2}));
  EXPECT_EQ(unk->offsets[2], (std::pair<uint32_t, uint32_t>{2, 5}));
  EXPECT_EQ(unk->offsets[3], (std::pair<uint32_t, uint32_t>{5, 8}));
  EXPECT_EQ((*t)->Encode("  ")->ids, (Ids{1, 2}));
  EXPECT_EQ((*t)->num_special_tokens(), 2u);
  auto left = (*t)->Encode("hello world hello", {.max_length = 3, .side = TruncationSide::kLeft});
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->ids, (Ids{1, 3, 2}));
  EXPECT_TRUE(left->truncated);
}

constexpr const char* kBpe = R"({
  "added_tokens":[{"id":0,"content":"<s>","special":true,"normalized":false},
                  {"id":1,"content":"</s>","special":true,"normalized":false},
                  {"id":2,"content":"<mask>","special":true,"normalized":false,"lstrip":true}],
  "normalizer":null,
  "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
  "post_processor":{"type":"RobertaProcessing","sep":["</s>",1],"cls":["<s>",0],
                    "trim_offsets":true,"add_prefix_space":false},
  "model":{"type":"BPE","unk_token":null,"vocab":{"<s>":0,"</s>":1,"<mask>":2,"\u0120":3,"h":4,
    "e":5,"l":6,"o":7,"he":8,"ll":9,"llo":10,"hello":11,"\u0120hello":12,"'":13,"s":14,"'s":15,
    "\u00c3":16,"\u00a9":17},
    "merges":[["h","e"],["l","l"],["ll","o"],["he","llo"],["\u0120","hello"],["'","s"]]}})";

TEST(TokenizerBpe, ByteLevelMergesAndRoberta) {
  auto t = Tokenizer::FromJson(kBpe);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto enc = (*t)->Encode("hello hello's");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{0, 11, 12, 15, 1}));
  EXPECT_EQ(enc->tokens, (std::vector<std::string>{"<s>", "hello", "\u0120hello", "'s", "</s>"}));
  // trim_offsets: the leading space of "Ġhello" is not part of its offsets.
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 5}, {6, 11}, {11, 13}, {0, 0}}));
  // Characters the vocabulary lacks are dropped (no unk token); é is two byte-chars.
  auto odd = (*t)->Encode("hex\xc3\xa9", {.add_special_tokens = false});
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->ids, (Ids{8, 16, 17}));
  // <mask> swallows the space before it (lstrip).
  auto mask = (*t)->Encode("hello <mask>", {.add_special_tokens = false});
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(mask->ids, (Ids{11, 2}));
  EXPECT_EQ(mask->offsets[1], (std::pair<uint32_t, uint32_t>{6, 12}));
}

TEST(TokenizerBpe, MergeFormatsAndErrors) {
  std::string json = kBpe;
  // Old-style "a b" string merges load too.
  size_t b = json.find("\"merges\"");
  size_t e = json.find("]]}}", b);
  json.replace(b, e + 2 - b, R"("merges":["h e","l l","ll o","he llo","\u0120 hello","' s"])");
  auto t = Tokenizer::FromJson(json);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Encode("hello")->ids, (Ids{0, 11, 1}));
  std::string bad = kBpe;
  bad.replace(bad.find("[\"h\",\"e\"]"), 9, "[\"h\",\"q\"]");
  EXPECT_EQ(Tokenizer::FromJson(bad).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace infermesh::runtime
