#!/usr/bin/env python3
"""Renders the infermesh chart (deploy/k8s/infermesh) into plain manifests, as
`helm template` would: Helm is not installable where this chart is developed, and its
templates keep to a subset that this renders exactly as Helm does:

    {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}  {{ .Chart.Version }}
    {{ .Values.a.b | quote }}    {{- if .Values.a.b }} ... {{- end }}   (not nested)

    deploy/k8s/render.py                      # writes deploy/k8s/rendered/*.yaml
    deploy/k8s/render.py --check              # exit 1 if rendered/ is out of date
    deploy/k8s/render.py --set redis.enabled=true --out /tmp/r   # other values

Anything else between braces is an error, so a template that needs more of Helm fails
here instead of rendering differently.
"""
import argparse
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "infermesh")
RENDERED = os.path.join(HERE, "rendered")
RELEASE = {"Name": "infermesh", "Namespace": "default"}

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}")


def lookup(path, ctx):
    if not path.startswith("."):
        raise ValueError(f"unsupported template expression: {path!r}")
    node = ctx
    for part in path[1:].split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path}: no value '{part}'")
        node = node[part]
    return node


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def evaluate(expr, ctx):
    parts = [p.strip() for p in expr.split("|")]
    value = lookup(parts[0], ctx)
    for f in parts[1:]:
        if f == "quote":
            value = json.dumps(scalar(value))
        else:
            raise ValueError(f"unsupported template function: {f!r}")
    return scalar(value) if not isinstance(value, str) else value


def truthy(v):
    return bool(v) and v not in ("false", "0")


def render(text, ctx):
    out, pos, skipping, in_if = [], 0, False, False
    for m in ACTION.finditer(text):
        lead, expr, trail = m.group(1), m.group(2), m.group(3)
        chunk = text[pos:m.start()]
        if lead == "-":
            chunk = chunk.rstrip(" \t\n")
        if not skipping:
            out.append(chunk)
        pos = m.end()
        if trail == "-":
            while pos < len(text) and text[pos] in " \t\n":
                pos += 1
        if expr.startswith("if "):
            if in_if:
                raise ValueError("nested if is not supported")
            in_if, skipping = True, not truthy(lookup(expr[3:].strip(), ctx))
        elif expr == "end":
            if not in_if:
                raise ValueError("end without if")
            in_if, skipping = False, False
        elif expr.startswith("/*"):
            continue
        elif not skipping:
            out.append(evaluate(expr, ctx))
    if in_if:
        raise ValueError("if without end")
    out.append(text[pos:])
    return "".join(out)


def set_value(values, assignment):
    key, _, raw = assignment.partition("=")
    node = values
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(raw)


def render_chart(overrides=()):
    """{template file name: rendered text} (templates that render empty are left out)."""
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for o in overrides:
        set_value(values, o)
    ctx = {"Values": values, "Release": RELEASE,
           "Chart": {"Name": chart["name"], "Version": chart["version"],
                     "AppVersion": chart["appVersion"]}}
    out = {}
    tdir = os.path.join(CHART, "templates")
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(tdir, name)) as f:
            text = render(f.read(), ctx).strip()
        if text:
            out[name] = f"---\n# Source: infermesh/templates/{name}\n{text}\n"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=RENDERED)
    a = ap.parse_args()
    rendered = render_chart(a.set)
    if a.check:
        stale = []
        for name, text in rendered.items():
            path = os.path.join(a.out, name)
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(name)
        extra = set(os.listdir(a.out)) - set(rendered) if os.path.isdir(a.out) else set()
        if stale or extra:
            print(f"rendered manifests out of date: {sorted(stale)} extra: {sorted(extra)}; "
                  "run deploy/k8s/render.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(a.out, exist_ok=True)
    for name in os.listdir(a.out):
        if name.endswith(".yaml") and name not in rendered:
            os.remove(os.path.join(a.out, name))
    for name, text in rendered.items():
        with open(os.path.join(a.out, name), "w") as f:
            f.write(text)
    print(f"wrote {len(rendered)} files to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
