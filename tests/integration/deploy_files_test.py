#!/usr/bin/env python3
"""The other deployments in deploy/ (systemd units, the compose file, the Dockerfile, the
Kubernetes manifests' commands), checked against the real binary: every command line they
run is one `infermesh` accepts (`infermesh --check-args ...` parses it, with every error a
real start would report, and runs nothing),
every INFERMESH_* variable they set is a declared configuration key, the units pass
`systemd-analyze verify`, and the compose file passes yamllint. Docker images are not built
here (no registry for the base image).

    tests/integration/deploy_files_test.py BIN
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      "build/release/apps/infermesh/infermesh")
del sys.argv[1:2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def declared_env():
    with open(os.path.join(ROOT, "src", "core", "config_keys.cc")) as f:
        keys = re.findall(r'^\s*\{"([a-z0-9_.]+)",', f.read(), re.M)
    return {"INFERMESH_" + k.upper().replace(".", "_") for k in keys}


class CommandLines(unittest.TestCase):

    def assertAccepted(self, args, where):
        p = subprocess.run([BIN, "--check-args"] + list(args), capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, f"{where}: infermesh {' '.join(args)} is refused:\n"
                         f"{p.stderr}{p.stdout[-500:]}")

    def test_systemd_units(self):
        units = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))
        self.assertGreaterEqual(len(units), 3)
        env = declared_env()
        for u in units:
            with open(u) as f:
                text = f.read()
            m = re.search(r"^ExecStart=/usr/local/bin/infermesh (.*)$", text, re.M)
            self.assertTrue(m, f"{u}: no ExecStart of infermesh")
            self.assertAccepted(shlex.split(m.group(1).replace("%i", "8001")), u)
        with open(os.path.join(DEPLOY, "systemd", "infermesh.env")) as f:
            for name in re.findall(r"^#?\s*(INFERMESH_[A-Z0-9_]+)=", f.read(), re.M):
                self.assertIn(name, env, f"infermesh.env: {name} is not a configuration key")
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.fail("systemd-analyze is not installed")
        tmp = tempfile.mkdtemp(prefix="infermesh-units-")
        try:
            paths = []
            for u in units:
                with open(u) as f:
                    text = f.read().replace("/usr/local/bin/infermesh", BIN)
                # The units' user need not exist on the test machine.
                text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
                name = os.path.basename(u).replace("@.service", "@8001.service")
                path = os.path.join(tmp, name)
                with open(path, "w") as f:
                    f.write(text)
                paths.append(path)
            p = subprocess.run([analyze, "verify"] + paths, capture_output=True, text=True,
                               env=dict(os.environ, SYSTEMD_LOG_LEVEL="err"), timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_compose_file(self):
        path = os.path.join(DEPLOY, "compose", "compose.yaml")
        p = subprocess.run(["yamllint", "-s", "-c", os.path.join(DEPLOY, "k8s", ".yamllint"),
                            path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(path) as f:
            doc = yaml.safe_load(f)
        env = declared_env()
        services = doc["services"]
        self.assertIn("gateway", services)
        workers = [n for n in services if n.startswith("worker")]
        self.assertGreaterEqual(len(workers), 2)
        for name, svc in services.items():
            if svc.get("image", "").startswith("infermesh"):
                self.assertAccepted(svc["command"], f"compose service {name}")
                for var in svc.get("environment", {}):
                    self.assertIn(var, env, f"compose service {name}: {var}")
            for dep in svc.get("depends_on", []):
                self.assertIn(dep, services, f"{name} depends on a missing {dep}")
        # Workers register with the gateway service under names the gateway can reach.
        for w in workers:
            cmd = services[w]["command"]
            self.assertEqual(cmd[cmd.index("--gateway") + 1], "http://gateway:8000")
            self.assertTrue(services[w]["environment"]["INFERMESH_WORKER_ADVERTISE"]
                            .startswith(w + ":"))

    def test_dockerfile_and_kubernetes_commands(self):
        with open(os.path.join(DEPLOY, "docker", "Dockerfile")) as f:
            text = f.read()
        cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
        self.assertTrue(cmd)
        self.assertAccepted(yaml.safe_load(cmd.group(1)), "Dockerfile CMD")
        self.assertIn("scripts/install-deps.sh --run", text)
        for path in glob.glob(os.path.join(DEPLOY, "k8s", "rendered", "*.yaml")):
            with open(path) as f:
                for d in yaml.safe_load_all(f):
                    if not d or d.get("kind") != "Deployment":
                        continue
                    for c in d["spec"]["template"]["spec"]["containers"]:
                        if c["image"].startswith("infermesh"):
                            self.assertAccepted(c["args"], f"{path} {c['name']}")

    def test_check_args_refuses_a_bad_command_line(self):
        # The check above must be able to fail.
        for bad in (["worker", "--bogus", "1"], ["gateway", "--port", "x"], ["nope"],
                    ["jobs", "serve", "--state-dir"]):
            p = subprocess.run([BIN, "--check-args"] + bad, capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(p.returncode, 0, bad)
        p = subprocess.run([BIN, "--check-args", "worker", "--models", "/nonexistent",
                            "--port", "1"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)  # parsed; nothing was started

    def test_slurm_script_is_valid_bash(self):
        p = subprocess.run(["bash", "-n", os.path.join(DEPLOY, "slurm", "mesh.sbatch")],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
