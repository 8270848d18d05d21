"""One `infermesh worker` (or `gateway`) process for the integration tests, and a polling
helper.

    w = WorkerProcess(BIN, repo, ["worker.max_batch_tokens=600"], log_path)
    r = w.post("/embed", {"inputs": ["hello"]})
    assert w.stop() == 0

The worker binds port 0 and prints `infermesh worker listening on HOST:PORT` as its first
stdout line; stderr (logfmt) goes to `log_path` for diagnostics.
"""
import os
import select
import signal
import subprocess
import time

import requests

TIMEOUT = 60  # seconds for any single HTTP call: only catches hangs


class WorkerProcess:

    ROLE = "worker"

    def __init__(self, binary, repo, settings, log_path, start_timeout=120, port=0,
                 role_args=None, env=None):
        self.log_path = log_path
        args = [binary]
        for s in settings:
            args += ["--set", s]
        args += role_args if role_args is not None else ["worker", "--models", repo]
        args += ["--port", str(port)]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL,
                                     env=None if env is None else {**os.environ, **env})
        line = self._read_line(start_timeout)
        prefix = f"infermesh {self.ROLE} listening on "
        if not line.startswith(prefix):
            self.kill()
            raise AssertionError(f"unexpected first stdout line {line!r}; log:\n{self.logs()}")
        self.host, port = line[len(prefix):].rsplit(":", 1)
        self.port = int(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace").strip()

    def logs(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def get(self, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.session.get(self.url + path, **kw)

    def post(self, path, body=None, **kw):
        kw.setdefault("timeout", TIMEOUT)
        if body is not None and not isinstance(body, (bytes, str)):
            kw["json"] = body
        elif body is not None:
            kw["data"] = body
            kw.setdefault("headers", {"Content-Type": "application/json"})
        return self.session.post(self.url + path, **kw)

    def metrics(self):
        """{'name{labels}': value} from /metrics."""
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"worker did not exit {timeout}s after {sig!r}")
        self.session.close()
        self.log.close()
        self.proc.stdout.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def wait_for(pred, timeout=60, step=0.05):
    """Polls pred until it returns something true or `timeout` seconds pass; returns
    its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()
