"""Helm chart rendering and CRD validation for tests/tests/deploy_helm.rs.

Helm itself does the work: helm_python (PyPI helm-python-sdk) binds Helm v4's Go SDK
(helm.sh/helm/v4: the chart loader, the template engine with Sprig, `helm lint`'s rules), so
the chart is rendered and linted by the same code as `helm template` / `helm lint`.

  chart.py render CHART_DIR RELEASE NAMESPACE [VALUES.yaml]
      Lints (strict, against the Kubernetes version in $KUBE_VERSION, default v1.30.0) and
      renders the chart as `helm template` would; prints JSON
      {"helm": "<sdk version>", "lint": <report>, "manifests": {"<template path>": "<yaml>"},
       "documents": [<every object, parsed>]}. A template error exits 1 with Helm's message on
      stderr.
  chart.py parse FILE.yaml...
      Prints the objects of the files as a JSON list. YAML is parsed here with PyYAML (YAML
      1.1, like Kubernetes' own parser: `defaultMode: 0400` is octal).
  chart.py servicemonitor FILE.json
      Validates each ServiceMonitor (monitoring.coreos.com/v1) in the JSON list against the
      prometheus-operator CRD model (PyPI cloudcoil-models-prometheus-operator, generated from
      the CRD's OpenAPI schema), and rejects fields the CRD does not define.
"""

import json
import os
import sys


def render(chart_dir, release, namespace, values_file=None):
    import helm_python as helm
    import yaml

    values = None
    if values_file:
        with open(values_file, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    kube_version = os.environ.get("KUBE_VERSION", "v1.30.0")
    report = helm.lint(
        chart_dir, values, strict=True, namespace=namespace, kube_version=kube_version
    )
    try:
        with helm.Chart.load(chart_dir) as chart:
            manifests = chart.render(
                values, name=release, namespace=namespace, revision=1, is_install=True
            )
    except helm.HelmError as exc:
        print(f"helm render failed: {exc}", file=sys.stderr)
        sys.exit(1)
    documents = [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc is not None
    ]
    json.dump(
        {
            "helm": helm.helm_sdk_version(),
            "lint": report,
            "manifests": manifests,
            "documents": documents,
        },
        sys.stdout,
    )


def parse(paths):
    import yaml

    documents = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            documents.extend(doc for doc in yaml.safe_load_all(f) if doc is not None)
    json.dump(documents, sys.stdout)


def servicemonitor(path):
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    with open(path, encoding="utf-8") as f:
        docs = json.load(f)
    failed = 0
    for doc in docs:
        name = doc.get("metadata", {}).get("name")
        try:
            model = ServiceMonitor.model_validate(doc)
        except Exception as exc:  # pydantic.ValidationError, reported per document
            print(f"ERROR servicemonitor/{name}: {exc}")
            failed += 1
            continue
        # The model ignores unknown fields; what it did not keep is not in the CRD's schema.
        kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        if kept != doc:
            print(f"ERROR servicemonitor/{name}: fields outside the CRD schema: "
                  f"{json.dumps(doc, sort_keys=True)} != {json.dumps(kept, sort_keys=True)}")
            failed += 1
            continue
        print(f"INFO servicemonitor/{name} passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "render":
        render(*sys.argv[2:6])
    elif len(sys.argv) >= 3 and sys.argv[1] == "parse":
        parse(sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "servicemonitor":
        servicemonitor(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
