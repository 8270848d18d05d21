#include "core/hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <set>
#include <string>

namespace infermesh {
namespace {

TEST(HashTest, MatchesXxh3Reference) {
  const std::string data = "the quick brown fox";
  XXH128_hash_t ref = XXH3_128bits(data.data(), data.size());
  Hash128 h = HashBytes128(data);
  EXPECT_EQ(h.low, ref.low64);
  EXPECT_EQ(h.high, ref.high64);
  EXPECT_EQ(HashBytes128(""), HashBytes128(std::string_view()));
  EXPECT_NE(HashBytes128("a"), HashBytes128("b"));
}

TEST(HashTest, ToHexIsHighWordFirst) {
  Hash128 h{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(h.ToHex(), "fedcba98765432100123456789abcdef");
  EXPECT_EQ(Hash128{}.ToHex(), std::string(32, '0'));
}

TEST(KeyBuilderTest, FieldBoundariesAreUnambiguous) {
  KeyBuilder a, b;
  a.AddString("ab").AddString("c");
  b.AddString("a").AddString("bc");
  EXPECT_NE(a.material(), b.material());
  EXPECT_NE(a.Hash(), b.Hash());

  KeyBuilder empty1, empty2;
  empty1.AddString("").AddString("x");
  empty2.AddString("x").AddString("");
  EXPECT_NE(empty1.material(), empty2.material());
}

TEST(KeyBuilderTest, TypesAreTagged) {
  // An int and a string whose bytes equal the int's encoding still differ.
  KeyBuilder i, s, u, d;
  i.AddInt(7);
  s.AddString(std::string("\x07\0\0\0\0\0\0\0", 8));
  u.AddUint(7);
  d.AddDouble(7.0);
  std::set<std::string> all = {i.material(), s.material(), u.material(), d.material()};
  EXPECT_EQ(all.size(), 4u);
}

TEST(KeyBuilderTest, EncodingIsStableAndLittleEndian) {
  KeyBuilder kb;
  kb.AddString("hi").AddInt(-1).AddBool(true).AddFloat(1.0f);
  std::string want;
  want += 's';
  want += std::string("\x02\0\0\0\0\0\0\0", 8) + "hi";
  want += 'i';
  want += std::string(8, '\xff');
  want += 'b';
  want += '\x01';
  want += 'f';
  want += std::string("\x00\x00\x80\x3f", 4);
  EXPECT_EQ(kb.material(), want);
  EXPECT_EQ(kb.Hash(), HashBytes128(want));
}

TEST(KeyBuilderTest, SameFieldsSameKeyAndFloatsByBits) {
  KeyBuilder a, b;
  a.AddString("bge-small").AddInt(512).AddDouble(0.5);
  b.AddString("bge-small").AddInt(512).AddDouble(0.5);
  EXPECT_EQ(a.material(), b.material());
  EXPECT_EQ(a.Hash(), b.Hash());

  KeyBuilder pz, nz;
  pz.AddDouble(0.0);
  nz.AddDouble(-0.0);
  EXPECT_NE(pz.material(), nz.material());
}

TEST(KeyBuilderTest, TakeAndClear) {
  KeyBuilder kb;
  kb.AddString("x");
  Hash128 h = kb.Hash();
  std::string m = std::move(kb).TakeMaterial();
  EXPECT_EQ(HashBytes128(m), h);
  KeyBuilder kb2;
  kb2.AddInt(1);
  kb2.Clear();
  EXPECT_TRUE(kb2.material().empty());
}

}  // namespace
}  // namespace infermesh
