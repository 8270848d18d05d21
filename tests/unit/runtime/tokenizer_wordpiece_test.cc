// WordPiece tokenizer: BertNormalizer, BertPreTokenizer, truncation, special tokens,
// offsets and bad input, on a tiny in-memory tokenizer.json.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "runtime/tokenizer.h"

namespace infermesh::runtime {
namespace {

using Ids = std::vector<int64_t>;
using Offsets = std::vector<std::pair<uint32_t, uint32_t>>;

const char* kVocab[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",    "hello",
                        "world", ",",     "!",     "token", "##ization", "##s",
                        "中",    "cafe",  "a",     "##b",   "."};

std::string BertJson(const std::string& normalizer_extra = "") {
  std::string vocab;
  for (size_t i = 0; i < std::size(kVocab); ++i) {
    if (i > 0) vocab.append(",");
    vocab.append("\"").append(kVocab[i]).append("\":").append(std::to_string(i));
  }
  return R"({"version":"1.0","added_tokens":[
    {"id":0,"content":"[PAD]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":1,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":2,"content":"[CLS]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":3,"content":"[SEP]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
  "normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,
                "strip_accents":null,"lowercase":true)" +
         normalizer_extra + R"(},
  "pre_tokenizer":{"type":"BertPreTokenizer"},
  "post_processor":{"type":"TemplateProcessing",
    "single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
              {"SpecialToken":{"id":"[SEP]","type_id":0}}],
    "special_tokens":{"[CLS]":{"id":"[CLS]","ids":[2],"tokens":["[CLS]"]},
                      "[SEP]":{"id":"[SEP]","ids":[3],"tokens":["[SEP]"]}}},
  "model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",
           "max_input_chars_per_word":100,"vocab":{)" +
         vocab + "}}}";
}

std::unique_ptr<Tokenizer> Bert() {
  auto t = Tokenizer::FromJson(BertJson());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

TEST(TokenizerWordPiece, NormalizesAndSplits) {
  auto tok = Bert();
  auto enc = tok->Encode("Héllo, WORLD! tokenizations");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{2, 5, 7, 6, 8, 9, 10, 11, 3}));
  EXPECT_EQ(enc->tokens, (std::vector<std::string>{"[CLS]", "hello", ",", "world", "!", "token",
                                                   "##ization", "##s", "[SEP]"}));
  // Byte offsets into the original: "Héllo" is 6 bytes.
  EXPECT_EQ(
      enc->offsets,
      (Offsets{{0, 0}, {0, 6}, {6, 7}, {8, 13}, {13, 14}, {15, 20}, {20, 27}, {27, 28}, {0, 0}}));
  EXPECT_EQ(enc->type_ids, Ids(9, 0));
  EXPECT_EQ(enc->attention_mask, Ids(9, 1));
  EXPECT_FALSE(enc->truncated);
  EXPECT_EQ(tok->num_special_tokens(), 2u);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->TokenToId("world"), 6);
  EXPECT_EQ(tok->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(tok->vocab_size(), std::size(kVocab));
}

TEST(TokenizerWordPiece, CleansControlsChineseAndAccents) {
  auto tok = Bert();
  // NUL, zero-width space and U+FFFD are dropped; \u3000 and tabs split words; CJK
  // ideographs become words of their own; combining accents are stripped.
  static constexpr char kText[] =
      "cafe\xcc\x81\x00hello\xe2\x80\x8b\tworld\xe3\x80\x80"
      "a中b";
  // sizeof - 1: the embedded NUL is part of the input, the terminator is not.
  auto enc = tok->Encode(std::string_view(kText, sizeof(kText) - 1));
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{2, 1, 6, 14, 12, 1, 3}));
  // "cafe" + U+0301 + NUL + "hello" + ZWSP glue into one unknown word.
  EXPECT_EQ(enc->offsets[1], (std::pair<uint32_t, uint32_t>{0, 12}));
  EXPECT_EQ(enc->offsets[4], (std::pair<uint32_t, uint32_t>{25, 28}));
}

TEST(TokenizerWordPiece, UnknownPiecesAndLongWords) {
  auto tok = Bert();
  auto enc = tok->Encode("ab abx " + std::string(101, 'a') + " " + std::string(100, 'a'));
  ASSERT_TRUE(enc.ok());
  // "ab" = a ##b; "abx" has no split; >100 chars is [UNK]; exactly 100 "a" fails too.
  EXPECT_EQ(enc->ids, (Ids{2, 14, 15, 1, 1, 1, 3}));
  EXPECT_EQ(enc->offsets[4], (std::pair<uint32_t, uint32_t>{7, 108}));
}

TEST(TokenizerWordPiece, TruncatesBothSides) {
  auto tok = Bert();
  EncodeOptions right{.add_special_tokens = true, .max_length = 4, .side = TruncationSide::kRight};
  auto r = tok->Encode("hello world ! hello", right);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ids, (Ids{2, 5, 6, 3}));
  EXPECT_TRUE(r->truncated);
  EncodeOptions left = right;
  left.side = TruncationSide::kLeft;
  auto l = tok->Encode("hello world ! hello", left);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->ids, (Ids{2, 8, 5, 3}));
  EXPECT_EQ(l->offsets[1], (std::pair<uint32_t, uint32_t>{12, 13}));
  // Exactly fitting is not truncation.
  auto fit = tok->Encode("hello world", right);
  ASSERT_TRUE(fit.ok());
  EXPECT_FALSE(fit->truncated);
  // Without special tokens the whole budget goes to the text.
  EncodeOptions plain{.add_special_tokens = false, .max_length = 2};
  auto p = tok->Encode("hello world ! hello", plain);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ids, (Ids{5, 6}));
  // A budget smaller than the special tokens is an error, not a crash.
  EncodeOptions tiny{.max_length = 1};
  EXPECT_EQ(tok->Encode("hello", tiny).status().code(), StatusCode::kInvalidArgument);
  EncodeOptions two{.max_length = 2};
  EXPECT_EQ(tok->Encode("hello", two)->ids, (Ids{2, 3}));
}

TEST(TokenizerWordPiece, SpecialTokensInTextAndDisabled) {
  auto tok = Bert();
  auto enc = tok->Encode("hello[SEP]world");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{2, 5, 3, 6, 3}));
  EXPECT_EQ(enc->offsets[2], (std::pair<uint32_t, uint32_t>{5, 10}));
  auto plain = tok->Encode("hello", {.add_special_tokens = false});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->ids, (Ids{5}));
}

TEST(TokenizerWordPiece, EmptyAndInvalidInput) {
  auto tok = Bert();
  auto empty = tok->Encode("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->ids, (Ids{2, 3}));
  auto spaces = tok->Encode(" \t\n ");
  ASSERT_TRUE(spaces.ok());
  EXPECT_EQ(spaces->ids, (Ids{2, 3}));
  for (std::string bad : {std::string("ab\xff"), std::string("\xc0\xaf"),  // overlong '/'
                          std::string("\xed\xa0\x80"),                     // surrogate
                          std::string("\xf4\x90\x80\x80"),                 // > U+10FFFF
                          std::string("x\xe4\xb8")}) {                     // truncated
    auto r = tok->Encode(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("UTF-8"), std::string::npos);
  }
}

TEST(TokenizerWordPiece, LongInputIsLinear) {
  auto tok = Bert();
  std::string big;
  for (int i = 0; i < 100000; ++i) big += "hello world, ";
  std::string word(1 << 20, 'x');  // one 1 MiB word
  auto t0 = std::chrono::steady_clock::now();
  auto enc = tok->Encode(big);
  auto w = tok->Encode(word);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(enc->ids.size(), 300002u);
  EXPECT_EQ(w->ids, (Ids{2, 1, 3}));
  EXPECT_LT(s, 5.0);
}

TEST(TokenizerWordPiece, CasedNormalizerKeepsAccents) {
  auto t = Tokenizer::FromJson(
      BertJson().replace(BertJson().find("\"lowercase\":true"), 16, "\"lowercase\":false"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto enc = (*t)->Encode("hello Hello café");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{2, 5, 1, 1, 3}));
}

TEST(TokenizerWordPiece, VocabTxtFallback) {
  std::string path = std::string(INFERMESH_BINARY_DIR) + "/tokenizer_wordpiece_test_vocab.txt";
  {
    std::ofstream out(path);
    for (const char* v : kVocab) out << v << "\n";
  }
  auto t = Tokenizer::FromVocabTxt(path);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto enc = (*t)->Encode("Héllo, WORLD! tokenizations [MASK]");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (Ids{2, 5, 7, 6, 8, 9, 10, 11, 4, 3}));
  EXPECT_EQ((*t)->pad_id(), 0);
  std::remove(path.c_str());
  EXPECT_EQ(Tokenizer::FromVocabTxt(path).status().code(), StatusCode::kNotFound);
}

TEST(TokenizerWordPiece, BertProcessingAndBadJson) {
  std::string json = BertJson();
  size_t b = json.find("\"post_processor\"");
  size_t e = json.find("\"model\"");
  json.replace(
      b, e - b,
      R"("post_processor":{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]},)");
  auto t = Tokenizer::FromJson(json);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Encode("hello")->ids, (Ids{2, 5, 3}));
  EXPECT_EQ(Tokenizer::FromJson("{not json").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(Tokenizer::FromJson(R"({"model":{"type":"Nope"}})").ok());
  EXPECT_EQ(Tokenizer::FromJsonFile("/nonexistent/tokenizer.json").status().code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace infermesh::runtime
