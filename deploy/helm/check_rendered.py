"""Check what a rendered fedbus or fedbus-site chart promises about disruptions and the network.

Called by deploy/helm/lint.sh and lint-site.sh on the output of ``helm template``:

- every container of a Deployment, StatefulSet or Job has resource requests (cpu and memory)
  and a memory limit;
- every Deployment and StatefulSet has exactly one PodDisruptionBudget selecting its pods (and
  no other workload's), when the chart makes them (``--pdb``);
- the NetworkPolicy of the trainers selects every trainer pod and no other pod; it allows no
  ingress but from ``networkPolicy.metricsFrom`` to the HTTP port, and egress only to the
  Kafka, MinIO and DNS peers and ports of the values (plus ``extraEgress``), each rule naming
  its peers (an egress rule without ``to`` would allow every destination), and it allows the
  port of every Kafka bootstrap server.

Usage: python check_rendered.py CHART_DIR RENDERED.yaml [--pdb] [-f VALUES.yaml ...]; the
values are merged over CHART_DIR/values.yaml as helm merges them (maps deeply, lists replaced).
Prints one line per finding and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = ("Deployment", "StatefulSet", "Job")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge key by key, anything else is replaced, null deletes."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects a pod with these labels."""
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def resource_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            res = c.get("resources", {})
            requests, limits = res.get("requests", {}), res.get("limits", {})
            if not {"cpu", "memory"} <= set(requests) or "memory" not in limits:
                problems.append(
                    f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}: "
                    f"requests {requests}, limits {limits}"
                )
    return problems


def pdb_problems(docs: list[dict[str, Any]]) -> list[str]:
    pods = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    problems = []
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for workload, labels in pods.items():
        mine = [b["metadata"]["name"] for b in budgets if selects(b["spec"]["selector"], labels)]
        if len(mine) != 1:
            problems.append(f"{workload}: PodDisruptionBudgets {mine}, expected exactly one")
    for budget in budgets:
        spec = budget["spec"]
        if ("maxUnavailable" in spec) == ("minAvailable" in spec):
            problems.append(
                f"PodDisruptionBudget/{budget['metadata']['name']}: set one of "
                f"maxUnavailable, minAvailable: {spec}"
            )
        if not any(selects(spec["selector"], labels) for labels in pods.values()):
            problems.append(f"PodDisruptionBudget/{budget['metadata']['name']} selects no pod")
    return problems


def _rule(to: list[dict[str, Any]], ports: list[int], protocols: tuple[str, ...]) -> dict[str, Any]:
    return {
        "to": to,
        "ports": [{"port": p, "protocol": proto} for p in ports for proto in protocols],
    }


def network_problems(docs: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    np = values["networkPolicy"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    trainer_pods = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] == "StatefulSet"
    }
    other_pods = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }
    if not np["enabled"] or not trainer_pods:
        return (
            [f"NetworkPolicy rendered with networkPolicy.enabled off: {len(policies)}"]
            if policies
            else []
        )
    if len(policies) != 1:
        return [f"{len(policies)} NetworkPolicies, expected one for the trainers"]
    spec = policies[0]["spec"]
    problems = [
        f"{name} is not selected by the trainers' NetworkPolicy"
        for name, labels in trainer_pods.items()
        if not selects(spec["podSelector"], labels)
    ]
    problems += [
        f"{name} is selected by the trainers' NetworkPolicy"
        for name, labels in other_pods.items()
        if selects(spec["podSelector"], labels)
    ]
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        problems.append(f"policyTypes {spec.get('policyTypes')}: ingress or egress not restricted")
    ingress = (
        [{"from": np["metricsFrom"], "ports": [{"port": "http", "protocol": "TCP"}]}]
        if np.get("metricsFrom")
        else []
    )
    if spec.get("ingress") != ingress:
        problems.append(f"ingress {spec.get('ingress')}, expected {ingress}")
    egress = [
        _rule(np["kafka"]["to"], np["kafka"]["ports"], ("TCP",)),
        _rule(np["minio"]["to"], np["minio"]["ports"], ("TCP",)),
        _rule(np["dns"]["to"], np["dns"]["ports"], ("UDP", "TCP")),
        *np.get("extraEgress", []),
    ]
    if spec.get("egress") != egress:
        problems.append(f"egress {spec.get('egress')}, expected Kafka, MinIO, DNS: {egress}")
    if any(not rule.get("to") for rule in spec.get("egress", [])):
        problems.append("an egress rule without `to` allows every destination")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path)
    parser.add_argument("rendered", type=Path)
    parser.add_argument("--pdb", action="store_true", help="expect PodDisruptionBudgets")
    parser.add_argument("-f", dest="values", type=Path, action="append", default=[])
    args = parser.parse_args()
    values = yaml.safe_load((args.chart / "values.yaml").read_text(encoding="utf-8"))
    for path in args.values:
        values = merge(values, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    docs = [d for d in yaml.safe_load_all(args.rendered.read_text(encoding="utf-8")) if d]
    problems = resource_problems(docs) + network_problems(docs, values)
    if args.pdb:
        problems += pdb_problems(docs)
    where = f"{args.chart.name} {args.rendered.name}"
    if problems:
        sys.exit(f"[helm-lint] {where}:\n  " + "\n  ".join(problems))
    budgets = sum(d["kind"] == "PodDisruptionBudget" for d in docs)
    print(
        f"[helm-lint] {where}: every container has cpu/memory requests and a memory limit; "
        + (f"{budgets} PodDisruptionBudgets, one per workload; " if args.pdb else "")
        + "the trainers' NetworkPolicy allows egress to Kafka, MinIO and DNS only, ingress "
        + ("from metricsFrom only" if values["networkPolicy"].get("metricsFrom") else "none")
    )


if __name__ == "__main__":
    main()
