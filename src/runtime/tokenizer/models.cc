// WordPiece, Unigram and BPE, each following HF tokenizers' algorithm step by step so
// that ties resolve the same way; see models.h.
#include "runtime/tokenizer/models.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>

#include "runtime/tokenizer/json_util.h"
#include "runtime/tokenizer/unicode.h"

namespace infermesh::runtime::tok {
namespace {

// A piece as UTF-8 plus, for every byte, the index of the NChar it belongs to.
struct PieceBytes {
  std::string s;
  std::vector<uint32_t> owner;

  explicit PieceBytes(const NText& piece) {
    s.reserve(piece.size());
    owner.reserve(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) {
      size_t before = s.size();
      AppendUtf8(piece[i].c, s);
      owner.insert(owner.end(), s.size() - before, static_cast<uint32_t>(i));
    }
  }
  // Original range of bytes [a, b) of s.
  std::pair<uint32_t, uint32_t> Range(const NText& piece, size_t a, size_t b) const {
    // Min/max rather than first/last: canonical reordering can permute characters.
    uint32_t lo = piece[owner[a]].begin, hi = piece[owner[b - 1]].end;
    for (size_t i = owner[a]; i <= owner[b - 1]; ++i) {
      lo = std::min(lo, piece[i].begin);
      hi = std::max(hi, piece[i].end);
    }
    return {lo, hi};
  }
};

std::pair<uint32_t, uint32_t> WholeRange(const NText& piece) {
  uint32_t b = piece.front().begin, e = piece.front().end;
  for (const NChar& c : piece) {
    b = std::min(b, c.begin);
    e = std::max(e, c.end);
  }
  return {b, e};
}

class WordPiece final : public Model {
 public:
  WordPiece(Vocab vocab, WordPieceOptions opts, int64_t unk_id)
      : opts_(std::move(opts)), unk_id_(unk_id) {
    vocab_ = std::move(vocab);
  }

  void Tokenize(const NText& piece, std::vector<Token>& out) const override {
    if (piece.empty()) return;
    if (piece.size() > opts_.max_input_chars_per_word) {
      auto [b, e] = WholeRange(piece);
      out.push_back({unk_id_, opts_.unk_token, b, e});
      return;
    }
    PieceBytes pb(piece);
    const std::string& s = pb.s;
    size_t first = out.size();
    size_t start = 0;
    std::string candidate;
    while (start < s.size()) {
      size_t end = s.size();
      bool found = false;
      while (start < end) {
        candidate.clear();
        if (start > 0) candidate = opts_.continuing_subword_prefix;
        candidate.append(s, start, end - start);
        auto it = vocab_.find(candidate);
        if (it != vocab_.end()) {
          auto [b, e] = pb.Range(piece, start, end);
          out.push_back({it->second, candidate, b, e});
          found = true;
          break;
        }
        // Step back one whole character.
        do {
          --end;
        } while (end > start && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80);
      }
      if (!found) {
        out.resize(first);
        auto [b, e] = pb.Range(piece, 0, s.size());
        out.push_back({unk_id_, opts_.unk_token, b, e});
        return;
      }
      start = end;
    }
  }

 private:
  WordPieceOptions opts_;
  int64_t unk_id_;
};

class Unigram final : public Model {
 public:
  Unigram(std::vector<std::pair<std::string, double>> pieces, std::optional<int64_t> unk_id,
          bool fuse_unk)
      : unk_id_(unk_id), fuse_unk_(fuse_unk) {
    double min_score = std::numeric_limits<double>::infinity();
    scores_.reserve(pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i) {
      vocab_.emplace(pieces[i].first, static_cast<int64_t>(i));
      scores_.push_back(pieces[i].second);
      min_score = std::min(min_score, pieces[i].second);
      max_piece_bytes_ = std::max(max_piece_bytes_, pieces[i].first.size());
    }
    unk_score_ = min_score - 10.0;  // HF's K_UNK_PENALTY
  }

  void Tokenize(const NText& piece, std::vector<Token>& out) const override {
    if (piece.empty()) return;
    PieceBytes pb(piece);
    const std::string& s = pb.s;
    const size_t n = s.size();
    struct Node {
      int64_t id = -1;
      double score = 0;
      int64_t start = -1;  // -1: unreached
    };
    std::vector<Node> best(n + 1);
    best[0].start = 0;
    size_t pos = 0;
    while (pos < n) {
      size_t mblen = Utf8Length(0);
      {
        size_t j = pos;
        DecodeUtf8(s, j);
        mblen = j - pos;
      }
      double base = best[pos].score;
      bool has_single = false;
      // Common-prefix search: every vocabulary piece that starts here, shortest first.
      size_t limit = std::min(n, pos + max_piece_bytes_);
      for (size_t end = pos + 1; end <= limit; ++end) {
        if (end < n && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) continue;
        auto it = vocab_.find(std::string_view(s).substr(pos, end - pos));
        if (it == vocab_.end()) continue;
        double cand = base + scores_[static_cast<size_t>(it->second)];
        Node& t = best[end];
        if (t.start < 0 || cand > t.score) {
          t = {it->second, cand, static_cast<int64_t>(pos)};
        }
        if (end - pos == mblen) has_single = true;
      }
      if (!has_single) {
        Node& t = best[pos + mblen];
        double cand = base + unk_score_;
        if (t.start < 0 || cand > t.score) {
          t = {unk_id_.value_or(-1), cand, static_cast<int64_t>(pos)};
        }
      }
      pos += mblen;
    }
    // Backtrack; consecutive unknowns fuse into one token when fuse_unk is set.
    std::vector<std::pair<size_t, size_t>> spans;
    size_t end = n;
    size_t unk_end = 0;
    bool in_unk = false;
    while (end > 0) {
      const Node& node = best[end];
      size_t start = static_cast<size_t>(node.start);
      bool is_unk = unk_id_.has_value() && node.id == *unk_id_;
      if (fuse_unk_ && is_unk) {
        if (!in_unk) unk_end = end;
        in_unk = true;
      } else {
        if (in_unk) spans.emplace_back(end, unk_end);
        in_unk = false;
        spans.emplace_back(start, end);
      }
      end = start;
    }
    if (in_unk) spans.emplace_back(0, unk_end);
    std::reverse(spans.begin(), spans.end());
    for (auto [a, b] : spans) {
      std::string text = s.substr(a, b - a);
      auto it = vocab_.find(text);
      int64_t id = it != vocab_.end() ? it->second : unk_id_.value_or(0);
      auto [ob, oe] = pb.Range(piece, a, b);
      out.push_back({id, std::move(text), ob, oe});
    }
  }

 private:
  std::vector<double> scores_;
  std::optional<int64_t> unk_id_;
  bool fuse_unk_;
  double unk_score_ = 0;
  size_t max_piece_bytes_ = 0;
};

class Bpe final : public Model {
 public:
  struct MergeInfo {
    uint32_t rank;
    int64_t new_id;
  };

  Bpe(Vocab vocab, std::unordered_map<uint64_t, MergeInfo> merges, std::optional<int64_t> unk,
      std::string unk_token, bool fuse_unk, bool ignore_merges)
      : merges_(std::move(merges)),
        unk_id_(unk),
        unk_token_(std::move(unk_token)),
        fuse_unk_(fuse_unk),
        ignore_merges_(ignore_merges) {
    vocab_ = std::move(vocab);
    int64_t max_id = -1;
    for (const auto& [k, v] : vocab_) max_id = std::max(max_id, v);
    id_to_token_.resize(static_cast<size_t>(max_id + 1));
    for (const auto& [k, v] : vocab_) id_to_token_[static_cast<size_t>(v)] = k;
  }

  void Tokenize(const NText& piece, std::vector<Token>& out) const override {
    if (piece.empty()) return;
    if (ignore_merges_) {
      std::string whole = ToUtf8(piece);
      if (auto it = vocab_.find(whole); it != vocab_.end()) {
        auto [b, e] = WholeRange(piece);
        out.push_back({it->second, std::move(whole), b, e});
        return;
      }
    }
    struct Symbol {
      int64_t id;
      int64_t prev, next;
      uint32_t begin, end;  // original range
      bool alive;
    };
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    std::string buf;
    // HF places each symbol by the summed UTF-8 lengths of the symbols before it, in
    // the normalized piece. A character it drops (no vocabulary entry and no unk)
    // therefore shifts every later symbol of the piece left by its length: keep that
    // quirk, so offsets match (found by the tokenizer parity test: Old English "þǽm"
    // under a byte-level BPE whose vocabulary lacks one of ǽ's bytes).
    std::vector<uint32_t> char_start;  // normalized byte offset of each piece character
    uint32_t total = 0;
    for (const NChar& c : piece) {
      char_start.push_back(total);
      total += static_cast<uint32_t>(Utf8Length(c.c));
    }
    auto at = [&](uint32_t byte) -> const NChar& {
      auto it = std::upper_bound(char_start.begin(), char_start.end(), byte);
      return piece[static_cast<size_t>(it - char_start.begin()) - 1];
    };
    uint32_t cursor = 0;  // normalized bytes of the characters kept so far
    for (const NChar& c : piece) {
      buf.clear();
      AppendUtf8(c.c, buf);
      const auto len = static_cast<uint32_t>(buf.size());
      auto it = vocab_.find(buf);
      int64_t id;
      if (it != vocab_.end()) {
        id = it->second;
      } else if (unk_id_) {
        id = *unk_id_;
        if (fuse_unk_ && !sym.empty() && sym.back().id == *unk_id_) {
          sym.back().end = at(cursor + len - 1).end;
          cursor += len;
          continue;
        }
      } else {
        continue;  // HF drops characters it cannot represent when there is no unk
      }
      int64_t idx = static_cast<int64_t>(sym.size());
      sym.push_back({id, idx - 1, idx + 1, at(cursor).begin, at(cursor + len - 1).end, true});
      cursor += len;
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    struct Merge {
      size_t pos;
      uint32_t rank;
      int64_t new_id;
    };
    // Lowest rank first, then leftmost position (HF's Merge ordering).
    auto cmp = [](const Merge& a, const Merge& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    std::priority_queue<Merge, std::vector<Merge>, decltype(cmp)> queue(cmp);
    auto find = [&](int64_t a, int64_t b) -> const MergeInfo* {
      auto it = merges_.find(Key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      if (const MergeInfo* m = find(sym[i].id, sym[i + 1].id)) queue.push({i, m->rank, m->new_id});
    }
    while (!queue.empty()) {
      Merge top = queue.top();
      queue.pop();
      Symbol& cur = sym[top.pos];
      if (!cur.alive || cur.next < 0) continue;
      size_t next_pos = static_cast<size_t>(cur.next);
      const MergeInfo* m = find(cur.id, sym[next_pos].id);
      if (m == nullptr || m->new_id != top.new_id) continue;
      Symbol right = sym[next_pos];
      cur.id = top.new_id;
      cur.end = right.end;
      cur.next = right.next;
      sym[next_pos].alive = false;
      if (right.next >= 0)
        sym[static_cast<size_t>(right.next)].prev = static_cast<int64_t>(top.pos);
      if (cur.prev >= 0) {
        size_t prev = static_cast<size_t>(cur.prev);
        if (const MergeInfo* pm = find(sym[prev].id, cur.id)) {
          queue.push({prev, pm->rank, pm->new_id});
        }
      }
      if (cur.next >= 0) {
        if (const MergeInfo* nm = find(cur.id, sym[static_cast<size_t>(cur.next)].id)) {
          queue.push({top.pos, nm->rank, nm->new_id});
        }
      }
    }
    for (const Symbol& s : sym) {
      if (!s.alive) continue;
      const std::string& text = (unk_id_ && s.id == *unk_id_ && !unk_token_.empty())
                                    ? unk_token_
                                    : id_to_token_[static_cast<size_t>(s.id)];
      out.push_back({s.id, text, s.begin, s.end});
    }
  }

  static uint64_t Key(int64_t a, int64_t b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b & 0xFFFFFFFF);
  }

 private:
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::vector<std::string> id_to_token_;
  std::optional<int64_t> unk_id_;
  std::string unk_token_;
  bool fuse_unk_;
  bool ignore_merges_;
};

Result<Vocab> VocabFromJson(const boost::json::value* v) {
  if (v == nullptr || !v->is_object()) return InvalidArgument("model.vocab must be an object");
  Vocab vocab;
  for (const auto& kv : v->get_object()) {
    if (!kv.value().is_int64() && !kv.value().is_uint64()) {
      return InvalidArgument("model.vocab values must be integers");
    }
    int64_t id = kv.value().is_int64() ? kv.value().get_int64()
                                       : static_cast<int64_t>(kv.value().get_uint64());
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return InvalidArgument("model.vocab id out of range");
    }
    vocab.emplace(std::string(kv.key()), id);
  }
  return vocab;
}

Result<std::unique_ptr<Model>> BpeFromJson(const boost::json::value& v) {
  IM_ASSIGN_OR_RETURN(Vocab vocab, VocabFromJson(Field(v, "vocab")));
  if (!StringField(v, "continuing_subword_prefix").value_or("").empty() ||
      !StringField(v, "end_of_word_suffix").value_or("").empty()) {
    return Unimplemented("BPE with continuing_subword_prefix/end_of_word_suffix");
  }
  if (BoolField(v, "byte_fallback").value_or(false)) return Unimplemented("BPE byte_fallback");
  std::unordered_map<uint64_t, Bpe::MergeInfo> merges;
  const auto* list = Field(v, "merges");
  if (list != nullptr) {
    if (!list->is_array()) return InvalidArgument("model.merges must be an array");
    uint32_t rank = 0;
    for (const auto& m : list->get_array()) {
      std::string a, b;
      if (m.is_string()) {
        std::string_view s = m.get_string();
        size_t sp = s.find(' ');
        if (sp == std::string_view::npos) return InvalidArgument("bad merge: " + std::string(s));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.get_array().size() == 2 && m.get_array()[0].is_string() &&
                 m.get_array()[1].is_string()) {
        a = m.get_array()[0].get_string();
        b = m.get_array()[1].get_string();
      } else {
        return InvalidArgument("bad merge entry");
      }
      auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
      if (ia == vocab.end() || ib == vocab.end() || iab == vocab.end()) {
        return InvalidArgument("merge refers to unknown token: " + a + " " + b);
      }
      merges.emplace(Bpe::Key(ia->second, ib->second), Bpe::MergeInfo{rank++, iab->second});
    }
  }
  std::optional<int64_t> unk;
  std::string unk_token = StringField(v, "unk_token").value_or("");
  if (!unk_token.empty()) {
    auto it = vocab.find(unk_token);
    if (it == vocab.end()) return InvalidArgument("BPE unk_token not in vocab");
    unk = it->second;
  }
  return std::unique_ptr<Model>(new Bpe(std::move(vocab), std::move(merges), unk, unk_token,
                                        BoolField(v, "fuse_unk").value_or(false),
                                        BoolField(v, "ignore_merges").value_or(false)));
}

Result<std::unique_ptr<Model>> UnigramFromJson(const boost::json::value& v) {
  const auto* list = Field(v, "vocab");
  if (list == nullptr || !list->is_array()) return InvalidArgument("Unigram vocab must be a list");
  std::vector<std::pair<std::string, double>> pieces;
  pieces.reserve(list->get_array().size());
  for (const auto& p : list->get_array()) {
    const auto* a = p.if_array();
    if (a == nullptr || a->size() != 2 || !(*a)[0].is_string()) {
      return InvalidArgument("Unigram vocab entries must be [piece, score]");
    }
    auto score = AsNumber((*a)[1]);
    if (!score) return InvalidArgument("Unigram score must be a number");
    pieces.emplace_back(std::string((*a)[0].get_string()), *score);
  }
  std::optional<int64_t> unk;
  if (auto u = NumberField(v, "unk_id")) {
    if (*u < 0 || *u >= static_cast<double>(pieces.size())) {
      return InvalidArgument("Unigram unk_id out of range");
    }
    unk = static_cast<int64_t>(*u);
  }
  if (BoolField(v, "byte_fallback").value_or(false)) return Unimplemented("Unigram byte_fallback");
  return std::unique_ptr<Model>(new Unigram(std::move(pieces), unk, /*fuse_unk=*/true));
}

}  // namespace

Result<std::unique_ptr<Model>> MakeWordPiece(Vocab vocab, const WordPieceOptions& opts) {
  auto it = vocab.find(opts.unk_token);
  if (it == vocab.end()) return InvalidArgument("WordPiece unk_token not in vocab");
  int64_t unk = it->second;
  return std::unique_ptr<Model>(new WordPiece(std::move(vocab), opts, unk));
}

Result<std::unique_ptr<Model>> ModelFromJson(const boost::json::value& v) {
  auto type = StringField(v, "type");
  // Old files omit the type; infer it from the fields.
  if (!type) {
    if (Field(v, "merges") != nullptr) {
      type = "BPE";
    } else if (Field(v, "continuing_subword_prefix") != nullptr) {
      type = "WordPiece";
    } else if (const auto* voc = Field(v, "vocab"); voc != nullptr && voc->is_array()) {
      type = "Unigram";
    } else {
      return InvalidArgument("model without a \"type\"");
    }
  }
  if (*type == "WordPiece") {
    IM_ASSIGN_OR_RETURN(Vocab vocab, VocabFromJson(Field(v, "vocab")));
    WordPieceOptions o;
    o.unk_token = StringField(v, "unk_token").value_or("[UNK]");
    o.continuing_subword_prefix = StringField(v, "continuing_subword_prefix").value_or("##");
    o.max_input_chars_per_word =
        static_cast<size_t>(NumberField(v, "max_input_chars_per_word").value_or(100));
    return MakeWordPiece(std::move(vocab), o);
  }
  if (*type == "BPE") return BpeFromJson(v);
  if (*type == "Unigram") return UnigramFromJson(v);
  return Unimplemented("unsupported model type: " + *type);
}

}  // namespace infermesh::runtime::tok
