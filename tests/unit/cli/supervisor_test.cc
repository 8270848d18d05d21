// ProcessSupervisor against real child processes (/bin/sh scripts): ports from their
// "listening on" lines, role-prefixed output, restarts after a crash or a kill -9 with the
// count kept, an exit before listening reported, ordered stop, SIGKILL for a child that
// ignores SIGTERM. Backoffs are milliseconds so the tests never wait long; nothing here
// asserts on how fast anything happens.
#include "cli/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace infermesh::cli {
namespace {

using namespace std::chrono_literals;

ChildSpec Sh(std::string role, std::string script, int stop_order = 0) {
  return {std::move(role), {"/bin/sh", "-c", std::move(script)}, stop_order};
}

struct Lines {
  std::mutex mu;
  std::vector<std::string> all;
  SupervisorOptions Options() {
    SupervisorOptions o;
    o.backoff_min = 10ms;
    o.backoff_max = 40ms;
    o.stop_timeout = 5s;
    o.on_line = [this](std::string_view role, bool is_stderr, std::string_view line) {
      std::lock_guard<std::mutex> lock(mu);
      all.push_back(std::string(role) + (is_stderr ? " 2| " : " 1| ") + std::string(line));
    };
    return o;
  }
  bool Has(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& l : all) {
      if (l == s) return true;
    }
    return false;
  }
};

template <typename F>
bool Eventually(F f, std::chrono::milliseconds limit = 20s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return f();
}

TEST(ListeningPort, ParsesTheRolesFirstLine) {
  EXPECT_EQ(ListeningPort("infermesh worker listening on 127.0.0.1:41234"), 41234);
  EXPECT_EQ(ListeningPort("infermesh jobs listening on [::1]:8090\r"), 8090);
  EXPECT_EQ(ListeningPort("infermesh gateway listening on 0.0.0.0:8000"), 8000);
  EXPECT_EQ(ListeningPort("ts=1 msg=\"gateway listening\" address=127.0.0.1:8000"), 0);
  EXPECT_EQ(ListeningPort("infermesh worker listening on 127.0.0.1:"), 0);
  EXPECT_EQ(ListeningPort("infermesh worker listening on 127.0.0.1:99999"), 0);
  EXPECT_EQ(ListeningPort("infermesh worker listening on 127.0.0.1:80a"), 0);
  EXPECT_EQ(ListeningPort(""), 0);
}

TEST(ProcessSupervisor, ReportsThePortAndPrefixesBothStreams) {
  Lines lines;
  ProcessSupervisor sup(lines.Options());
  const int a = sup.Add(Sh("alpha",
                           "echo 'to stderr' >&2; echo 'infermesh alpha listening on "
                           "127.0.0.1:4321'; exec sleep 60"));
  sup.Start();
  auto port = sup.WaitForPort(a, 20s);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(*port, 4321);
  EXPECT_TRUE(Eventually([&] { return lines.Has("alpha 2| to stderr"); }));
  EXPECT_TRUE(lines.Has("alpha 1| infermesh alpha listening on 127.0.0.1:4321"));
  auto snap = sup.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_TRUE(snap[0].running);
  EXPECT_GT(snap[0].pid, 0);
  EXPECT_EQ(snap[0].port, 4321);
  EXPECT_EQ(snap[0].restarts, 0u);
  sup.Stop();
  snap = sup.Snapshot();
  EXPECT_FALSE(snap[0].running);
  EXPECT_EQ(snap[0].exits, 0u) << "a stop is not an unexpected exit";
}

TEST(ProcessSupervisor, AnExitBeforeListeningIsAnErrorAndTheRoleIsRestarted) {
  Lines lines;
  ProcessSupervisor sup(lines.Options());
  const int a = sup.Add(Sh("broken", "echo 'bad flag' >&2; exit 3"));
  sup.Start();
  auto port = sup.WaitForPort(a, 20s);
  ASSERT_FALSE(port.ok());
  EXPECT_NE(port.status().message().find("exit 3"), std::string::npos) << port.status().message();
  EXPECT_TRUE(Eventually([&] { return sup.Snapshot()[0].restarts >= 2; }));
  EXPECT_EQ(sup.Snapshot()[0].last_exit, "exit 3");
  sup.Stop();
}

TEST(ProcessSupervisor, AKilledRoleComesBackAndIsCounted) {
  Lines lines;
  ProcessSupervisor sup(lines.Options());
  // Each start prints a different port, so the test sees the new process's.
  const std::string marker =
      (std::filesystem::temp_directory_path() / ("sup-test-" + std::to_string(getpid()))).string();
  std::filesystem::remove(marker);
  const int a =
      sup.Add(Sh("w", "if [ -e " + marker + " ]; then p=2002; else p=2001; touch " + marker +
                          "; fi; echo \"infermesh w listening on h:$p\"; "
                          "exec sleep 60"));
  sup.Start();
  auto first = sup.WaitForPort(a, 20s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, 2001);
  const pid_t pid = sup.Snapshot()[0].pid;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] {
    auto s = sup.Snapshot()[0];
    return s.running && s.pid != pid && s.port == 2002;
  }));
  auto s = sup.Snapshot()[0];
  EXPECT_EQ(s.restarts, 1u);
  EXPECT_EQ(s.exits, 1u);
  EXPECT_EQ(s.starts, 2u);
  EXPECT_NE(s.last_exit.find("signal 9"), std::string::npos) << s.last_exit;
  sup.Stop();
  std::filesystem::remove(marker);
}

TEST(ProcessSupervisor, StopsInOrderAndKillsWhatIgnoresSigterm) {
  const std::string log =
      (std::filesystem::temp_directory_path() / ("sup-order-" + std::to_string(getpid()))).string();
  std::filesystem::remove(log);
  Lines lines;
  SupervisorOptions o = lines.Options();
  o.stop_timeout = 300ms;
  ProcessSupervisor sup(o);
  auto role = [&](const std::string& name) {
    // The trap runs between short sleeps; it appends the role's name as it stops.
    return "trap 'echo " + name + " >> " + log + "; exit 0' TERM; echo 'infermesh " + name +
           " listening on h:1'; while true; do sleep 0.02; done";
  };
  const int second = sup.Add(Sh("second", role("second"), 2));
  const int first = sup.Add(Sh("first", role("first"), 0));
  const int stubborn = sup.Add(
      Sh("stubborn", "trap '' TERM; echo 'infermesh s listening on h:1'; exec sleep 60", 1));
  sup.Start();
  for (int i : {second, first, stubborn}) ASSERT_TRUE(sup.WaitForPort(i, 20s).ok());
  sup.Stop();
  for (const auto& s : sup.Snapshot()) EXPECT_FALSE(s.running) << s.role;
  std::ifstream in(log);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), "first\nsecond\n");
  std::filesystem::remove(log);
}

TEST(ProcessSupervisor, ChildrenAddedAfterStartRunAndStopWithoutStartIsSafe) {
  {
    ProcessSupervisor idle(SupervisorOptions{});
    idle.Add(Sh("never", "exit 0"));
    idle.Stop();  // never started: nothing to stop
  }
  Lines lines;
  ProcessSupervisor sup(lines.Options());
  sup.Start();
  const int late = sup.Add(Sh("late", "echo 'infermesh late listening on h:7'; exec sleep 60"));
  auto port = sup.WaitForPort(late, 20s);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(*port, 7);
  sup.Stop();
  EXPECT_FALSE(sup.Snapshot()[0].running);
}

}  // namespace
}  // namespace infermesh::cli
