// The open-loop schedule, the latency percentiles and the response-head parser of
// `infermesh bench`.
#include "cli/bench_stats.h"

#include <gtest/gtest.h>

#include "cli/bench_load.h"

namespace infermesh::cli {
namespace {

TEST(OpenLoopScheduleTest, RequestsAreDueAtFixedIntervalsFromTheStart) {
  OpenLoopSchedule s(1'000'000, 1000.0);  // one every millisecond
  EXPECT_EQ(s.IntendedStartNs(0), 1'000'000);
  EXPECT_EQ(s.IntendedStartNs(1), 2'000'000);
  EXPECT_EQ(s.IntendedStartNs(1000), 1'001'000'000);
}

TEST(OpenLoopScheduleTest, DueByCountsRequestsWhoseStartHasPassed) {
  OpenLoopSchedule s(0, 1000.0);
  EXPECT_EQ(s.DueBy(-1), 0u);
  EXPECT_EQ(s.DueBy(0), 1u);  // request 0 is due at the start
  EXPECT_EQ(s.DueBy(999'999), 1u);
  EXPECT_EQ(s.DueBy(1'000'000), 2u);
  EXPECT_EQ(s.DueBy(10'500'000), 11u);
}

TEST(OpenLoopScheduleTest, DueByAgreesWithIntendedStartForAwkwardRates) {
  OpenLoopSchedule s(123, 3.0);  // period 333,333,333.3 ns: rounding matters
  for (uint64_t i = 0; i < 50; ++i) {
    const int64_t t = s.IntendedStartNs(i);
    EXPECT_EQ(s.DueBy(t), i + 1) << i;
    EXPECT_EQ(s.DueBy(t - 1), i) << i;
  }
}

TEST(OpenLoopScheduleTest, ScheduleDoesNotDependOnWhenRequestsFinish) {
  // The point of the open loop: a stalled server does not move later requests.
  OpenLoopSchedule s(0, 100.0);
  EXPECT_EQ(s.IntendedStartNs(5), 50'000'000);
  EXPECT_EQ(s.DueBy(2'000'000'000), 201u);  // after a 2 s stall, 201 requests are due
}

TEST(LatencyRecorderTest, EmptyRecorderReportsZero) {
  LatencyRecorder r;
  EXPECT_EQ(r.count(), 0u);
  EXPECT_EQ(r.PercentileNs(0.5), 0);
  EXPECT_EQ(r.MaxNs(), 0);
  EXPECT_EQ(r.MeanNs(), 0);
}

TEST(LatencyRecorderTest, NearestRankPercentiles) {
  LatencyRecorder r;
  for (int i = 100; i >= 1; --i) r.Record(i);  // 1..100, recorded out of order
  EXPECT_EQ(r.PercentileNs(0.0), 1);
  EXPECT_EQ(r.PercentileNs(0.5), 50);
  EXPECT_EQ(r.PercentileNs(0.9), 90);
  EXPECT_EQ(r.PercentileNs(0.99), 99);
  EXPECT_EQ(r.PercentileNs(0.29), 29);  // 0.29 * 100 is 28.999... in binary
  EXPECT_EQ(r.PercentileNs(1.0), 100);
  EXPECT_EQ(r.MaxNs(), 100);
  EXPECT_DOUBLE_EQ(r.MeanNs(), 50.5);
}

TEST(LatencyRecorderTest, OneSlowOutlierShowsInTheTail) {
  LatencyRecorder r;
  for (int i = 0; i < 999; ++i) r.Record(1'000);
  r.Record(5'000'000);
  EXPECT_EQ(r.PercentileNs(0.99), 1'000);
  EXPECT_EQ(r.PercentileNs(0.999), 1'000);
  EXPECT_EQ(r.PercentileNs(1.0), 5'000'000);
}

TEST(LatencyRecorderTest, MergeCombinesSamples) {
  LatencyRecorder a, b;
  a.Record(1);
  a.Record(3);
  b.Record(2);
  b.Record(4);
  a.Merge(b);
  EXPECT_EQ(a.count(), 4u);
  EXPECT_EQ(a.PercentileNs(0.5), 2);
  EXPECT_EQ(a.MaxNs(), 4);
}

TEST(ParseResponseHeadTest, IncompleteHeadIsNullopt) {
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").has_value());
}

TEST(ParseResponseHeadTest, StatusLengthAndKeepAlive) {
  const std::string r = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nServer: x\r\n\r\n[]";
  auto h = ParseResponseHead(r);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->head_bytes, r.size() - 2);
  EXPECT_EQ(h->body_bytes, 2u);
  EXPECT_FALSE(h->close);
}

TEST(ParseResponseHeadTest, ConnectionCloseAndErrorStatus) {
  auto h = ParseResponseHead(
      "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->status, 429);
  EXPECT_TRUE(h->close);
}

TEST(ParseResponseHeadTest, UnsupportedFramingIsMalformed) {
  auto chunked = ParseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_TRUE(chunked.has_value());
  EXPECT_EQ(chunked->status, -1);
  auto no_length = ParseResponseHead("HTTP/1.1 200 OK\r\n\r\n");
  ASSERT_TRUE(no_length.has_value());
  EXPECT_EQ(no_length->status, -1);
  auto garbage = ParseResponseHead("hello\r\n\r\n");
  ASSERT_TRUE(garbage.has_value());
  EXPECT_EQ(garbage->status, -1);
  auto no_content = ParseResponseHead("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_TRUE(no_content.has_value());
  EXPECT_EQ(no_content->status, 204);
}

}  // namespace
}  // namespace infermesh::cli
