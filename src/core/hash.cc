#include "core/hash.h"

#include <xxhash.h>

#include <bit>

namespace infermesh {
namespace {

// Type tags. Values are part of the persistent encoding: never renumber.
constexpr char kTagString = 's';
constexpr char kTagInt = 'i';
constexpr char kTagUint = 'u';
constexpr char kTagBool = 'b';
constexpr char kTagFloat = 'f';
constexpr char kTagDouble = 'd';

}  // namespace

std::string Hash128::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(high >> (4 * i)) & 0xF];
    out[31 - i] = kDigits[(low >> (4 * i)) & 0xF];
  }
  return out;
}

Hash128 HashBytes128(std::string_view bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return Hash128{h.low64, h.high64};
}

void KeyBuilder::AppendLittleEndian(uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) material_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

KeyBuilder& KeyBuilder::AddString(std::string_view s) {
  AppendTag(kTagString);
  AppendLittleEndian(s.size(), 8);
  material_.append(s);
  return *this;
}

KeyBuilder& KeyBuilder::AddInt(int64_t v) {
  AppendTag(kTagInt);
  AppendLittleEndian(static_cast<uint64_t>(v), 8);
  return *this;
}

KeyBuilder& KeyBuilder::AddUint(uint64_t v) {
  AppendTag(kTagUint);
  AppendLittleEndian(v, 8);
  return *this;
}

KeyBuilder& KeyBuilder::AddBool(bool v) {
  AppendTag(kTagBool);
  material_.push_back(v ? 1 : 0);
  return *this;
}

KeyBuilder& KeyBuilder::AddFloat(float v) {
  AppendTag(kTagFloat);
  AppendLittleEndian(std::bit_cast<uint32_t>(v), 4);
  return *this;
}

KeyBuilder& KeyBuilder::AddDouble(double v) {
  AppendTag(kTagDouble);
  AppendLittleEndian(std::bit_cast<uint64_t>(v), 8);
  return *this;
}

}  // namespace infermesh
