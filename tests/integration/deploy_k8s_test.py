#!/usr/bin/env python3
"""The Kubernetes chart (deploy/k8s/infermesh) and its rendered manifests
(deploy/k8s/rendered), checked without a cluster: Helm is not installable here, and
`kubectl apply --dry-run=client` needs an API server for discovery, so this is a schema
and consistency check of our own, plus yamllint.

- rendered/ is exactly what the chart renders with its values (deploy/k8s/render.py);
- yamllint passes on the rendered manifests and the chart's YAML;
- every document has apiVersion, kind and a name, of the kinds the chart uses;
- each Deployment's selector matches its pod labels; each probe and Service targetPort
  names a declared container port; each volumeMount a declared volume;
- each Service selects a Deployment's pods; the headless Service the gateway resolves
  (`--workers dns:NAME:PORT`) exists, is headless and has that port;
- the HPA scales an existing Deployment on a metric the gateway really exports, and that
  metric's Service exists;
- every INFERMESH_* variable in the ConfigMap is a declared configuration key;
- with redis.enabled the gateway is pointed at the Redis Service, which exists.

    tests/integration/deploy_k8s_test.py BIN
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/apps/infermesh/infermesh"
del sys.argv[1:2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
sys.path.insert(0, K8S)
import render  # noqa: E402

KINDS = {("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"),
         ("autoscaling/v2", "HorizontalPodAutoscaler")}


def declared_keys():
    with open(os.path.join(ROOT, "src", "core", "config_keys.cc")) as f:
        return set(re.findall(r'^\s*\{"([a-z0-9_.]+)",', f.read(), re.M))


def env_name(key):
    return "INFERMESH_" + key.upper().replace(".", "_")


def docs(rendered):
    out = []
    for name, text in rendered.items():
        for d in yaml.safe_load_all(text):
            if d is not None:
                out.append(d)
    return out


class Chart(unittest.TestCase):

    def check_manifests(self, documents):
        by_kind = {}
        for d in documents:
            self.assertIn((d.get("apiVersion"), d.get("kind")), KINDS, d)
            self.assertTrue(d["metadata"]["name"], d)
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        deployments = by_kind.get("Deployment", {})
        services = by_kind.get("Service", {})
        self.assertIn("infermesh-gateway", deployments)
        self.assertIn("infermesh-worker", deployments)
        ports_of = {}
        for name, dep in deployments.items():
            spec = dep["spec"]
            labels = spec["template"]["metadata"]["labels"]
            for k, v in spec["selector"]["matchLabels"].items():
                self.assertEqual(labels.get(k), v, f"{name}: selector {k} does not match")
            volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
            ports = {}
            for c in spec["template"]["spec"]["containers"]:
                self.assertTrue(c.get("image"), c)
                for p in c.get("ports", []):
                    ports[p["name"]] = p["containerPort"]
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe in c:
                        port = c[probe]["httpGet"]["port"]
                        self.assertIn(port, ports, f"{name}: {probe} port {port}")
                        self.assertTrue(c[probe]["httpGet"]["path"].startswith("/"))
                for m in c.get("volumeMounts", []):
                    self.assertIn(m["name"], volumes, f"{name}: volumeMount {m['name']}")
                if "resources" in c:
                    self.assertIn("requests", c["resources"])
            ports_of[name] = (labels, ports)
        for name, svc in services.items():
            sel = svc["spec"]["selector"]
            targets = [d for d, (labels, _) in ports_of.items()
                       if all(labels.get(k) == v for k, v in sel.items())]
            self.assertEqual(len(targets), 1, f"Service {name} selects {targets}")
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], ports_of[targets[0]][1],
                              f"Service {name}: targetPort {p['targetPort']}")
        # The gateway's DNS membership names the headless workers Service and its port.
        gw = deployments["infermesh-gateway"]["spec"]["template"]["spec"]["containers"][0]
        args = gw["args"]
        dns = args[args.index("--workers") + 1]
        m = re.fullmatch(r"dns:([\w-]+):(\d+)", dns)
        self.assertTrue(m, dns)
        headless = services[m.group(1)]
        self.assertEqual(headless["spec"].get("clusterIP"), "None")
        self.assertIn(int(m.group(2)), [p["port"] for p in headless["spec"]["ports"]])
        # Every configuration variable is a declared key.
        env_keys = {env_name(k) for k in declared_keys()}
        for cm in by_kind.get("ConfigMap", {}).values():
            for k, v in cm["data"].items():
                self.assertIsInstance(v, str, f"ConfigMap {k} must be a string")
                self.assertIn(k, env_keys, f"ConfigMap {k} is not a configuration key")
        for env in gw.get("env", []):
            self.assertIn(env["name"], env_keys, env)
        return by_kind

    def test_rendered_manifests_are_the_charts_and_pass_the_checks(self):
        fresh = render.render_chart()
        for name, text in fresh.items():
            with open(os.path.join(K8S, "rendered", name)) as f:
                self.assertEqual(f.read(), text, f"deploy/k8s/rendered/{name} is stale: "
                                 "run deploy/k8s/render.py")
        self.assertEqual(sorted(os.listdir(os.path.join(K8S, "rendered"))), sorted(fresh))
        by_kind = self.check_manifests(docs(fresh))
        hpa = by_kind["HorizontalPodAutoscaler"]["infermesh-worker"]["spec"]
        self.assertIn(hpa["scaleTargetRef"]["name"], by_kind["Deployment"])
        self.assertLessEqual(hpa["minReplicas"], hpa["maxReplicas"])
        metric = hpa["metrics"][0]["object"]
        self.assertIn(metric["describedObject"]["name"], by_kind["Service"])
        # The metric is one the gateway exports (its name appears in its source).
        sources = ""
        for name in sorted(os.listdir(os.path.join(ROOT, "src", "gateway"))):
            if name.endswith(".cc"):
                with open(os.path.join(ROOT, "src", "gateway", name)) as f:
                    sources += f.read()
        self.assertIn(f'"{metric["metric"]["name"]}"', sources)
        self.assertNotIn("infermesh-redis", by_kind["Deployment"])

    def test_with_redis_the_gateway_uses_the_redis_service(self):
        by_kind = self.check_manifests(docs(render.render_chart(["redis.enabled=true"])))
        self.assertIn("infermesh-redis", by_kind["Deployment"])
        gw = by_kind["Deployment"]["infermesh-gateway"]["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in gw["containers"][0]["env"]}
        self.assertEqual(env["INFERMESH_GATEWAY_REDIS"], "redis://infermesh-redis:6379")
        self.assertIn("infermesh-redis", by_kind["Service"])

    def test_without_autoscaling_there_is_no_hpa(self):
        kinds = {d["kind"] for d in docs(render.render_chart(["autoscaling.enabled=false"]))}
        self.assertNotIn("HorizontalPodAutoscaler", kinds)

    def test_the_renderer_refuses_what_it_cannot_render_like_helm(self):
        with self.assertRaises(ValueError):
            render.render("{{ include \"x\" . }}", {"Values": {}})
        with self.assertRaises(KeyError):
            render.render("{{ .Values.missing }}", {"Values": {}})

    def test_yamllint(self):
        if shutil.which("yamllint") is None:
            self.fail("yamllint is not installed (scripts/install-deps.sh installs it)")
        files = [os.path.join(K8S, "rendered"), os.path.join(K8S, "infermesh", "values.yaml"),
                 os.path.join(K8S, "infermesh", "Chart.yaml")]
        p = subprocess.run(["yamllint", "-s", "-c", os.path.join(K8S, ".yamllint")] + files,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_render_check_mode_sees_a_stale_file(self):
        tmp = tempfile.mkdtemp(prefix="infermesh-k8s-")
        try:
            out = os.path.join(tmp, "r")
            script = os.path.join(K8S, "render.py")
            p = subprocess.run([sys.executable, script, "--out", out], capture_output=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            p = subprocess.run([sys.executable, script, "--out", out, "--check"])
            self.assertEqual(p.returncode, 0)
            with open(os.path.join(out, "gateway.yaml"), "a") as f:
                f.write("# edited\n")
            p = subprocess.run([sys.executable, script, "--out", out, "--check"],
                               capture_output=True)
            self.assertEqual(p.returncode, 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
