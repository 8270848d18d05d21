#include "gateway/outlier.h"

#include <string>

#include <gtest/gtest.h>

namespace infermesh::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = OutlierDetector::Clock;

// One interval of traffic: `calls` per member, every `fail_every`-th of "bad" failing.
void Interval(OutlierDetector& d, Clock::time_point start, int members, int calls, int fail_every) {
  for (int i = 0; i < calls; ++i) {
    for (int m = 0; m < members; ++m) {
      const bool failed = m == 0 && fail_every > 0 && i % fail_every == 0;
      d.Record("w" + std::to_string(m), failed, start + std::chrono::milliseconds(i));
    }
  }
}

TEST(OutlierDetector, EjectsAWorkerFailingHalfItsCallsForLongerEachTime) {
  OutlierDetector d;  // 50%, 20 calls, 10 s interval, 30 s base
  auto t = Clock::time_point{} + 1h;
  Interval(d, t, 3, 40, 2);  // w0 fails every other call: never 5 in a row
  t += 10s;
  EXPECT_TRUE(d.Ejected("w0", t));
  EXPECT_FALSE(d.Ejected("w1", t));
  EXPECT_TRUE(d.Ejected("w0", t + 29s));
  EXPECT_FALSE(d.Ejected("w0", t + 31s));
  EXPECT_EQ(d.ejections_total(), 1u);
  // Back, and still failing: ejected again, for 60 s this time.
  t += 31s;
  Interval(d, t, 3, 40, 2);
  t += 10s;
  ASSERT_TRUE(d.Ejected("w0", t));
  EXPECT_TRUE(d.Ejected("w0", t + 59s));
  EXPECT_FALSE(d.Ejected("w0", t + 61s));
}

TEST(OutlierDetector, LowRatesAndFewCallsAreLeftAlone) {
  OutlierDetector d;
  auto t = Clock::time_point{} + 1h;
  Interval(d, t, 3, 40, 4);       // 25% failures
  Interval(d, t + 5s, 3, 10, 1);  // then 10 failures: 20 of 50 in the interval, 40%
  EXPECT_FALSE(d.Ejected("w0", t + 10s));
  OutlierDetector few;
  Interval(few, t, 3, 10, 1);  // all fail, but only 10 calls
  EXPECT_FALSE(few.Ejected("w0", t + 10s));
}

TEST(OutlierDetector, NeverEjectsMoreThanTheCap) {
  OutlierDetector d;  // 50% of 4 = 2
  auto t = Clock::time_point{} + 1h;
  for (int i = 0; i < 40; ++i) {
    for (int m = 0; m < 4; ++m) d.Record("w" + std::to_string(m), m < 3, t);
  }
  EXPECT_EQ(d.ejected_count(t + 10s), 2u);
  EXPECT_FALSE(d.Ejected("w3", t + 10s));
  // With one member nothing is ejected: there would be nowhere to send traffic.
  OutlierDetector one;
  for (int i = 0; i < 40; ++i) one.Record("only", true, t);
  EXPECT_FALSE(one.Ejected("only", t + 10s));
}

}  // namespace
}  // namespace infermesh::gateway
