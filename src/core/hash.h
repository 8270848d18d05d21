// 128-bit content hashing (XXH3-128) over a canonical byte string, and KeyBuilder,
// which produces that byte string from typed fields.
//
//   KeyBuilder kb;
//   kb.AddString(model).AddInt(max_tokens).AddString(text);
//   Hash128 h = kb.Hash();                  // routing / cache slot
//   cache.Lookup(h, kb.material());         // the material confirms every hit
//
// Encoding: every field is a one-byte type tag followed by a fixed-width
// little-endian payload; strings carry an 8-byte length before their bytes. So
// no two different field sequences share material: ("ab","c") != ("a","bc"), and
// AddInt(x) never equals an AddString of the same 8 bytes. Floats are encoded by
// their IEEE-754 bits, so -0.0 and 0.0 (and distinct NaN payloads) are different
// keys. The encoding is stable across runs and hosts: it may feed persistent
// caches (Redis) and consistent-hash routing, so changing it is a format change.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace infermesh {

struct Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;

  friend bool operator==(const Hash128&, const Hash128&) = default;
  // 32 lowercase hex digits, high word first (XXH3 canonical order).
  std::string ToHex() const;
};

// XXH3 128-bit hash of `bytes` (seed 0).
Hash128 HashBytes128(std::string_view bytes);

// std::unordered_map support; the words are already uniformly mixed.
struct Hash128Hasher {
  size_t operator()(const Hash128& h) const noexcept { return static_cast<size_t>(h.low); }
};

class KeyBuilder {
 public:
  KeyBuilder() = default;

  KeyBuilder& AddString(std::string_view s);  // also for arbitrary bytes
  KeyBuilder& AddInt(int64_t v);
  KeyBuilder& AddUint(uint64_t v);
  KeyBuilder& AddBool(bool v);
  KeyBuilder& AddFloat(float v);
  KeyBuilder& AddDouble(double v);

  // The canonical bytes built so far; pass these to the cache to confirm hits.
  const std::string& material() const { return material_; }
  std::string TakeMaterial() && { return std::move(material_); }
  Hash128 Hash() const { return HashBytes128(material_); }
  void Clear() { material_.clear(); }

 private:
  void AppendTag(char tag) { material_.push_back(tag); }
  void AppendLittleEndian(uint64_t v, int bytes);

  std::string material_;
};

}  // namespace infermesh
