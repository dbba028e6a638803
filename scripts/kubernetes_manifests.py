#!/usr/bin/env python3
"""Schema validation of the Kubernetes manifests (scripts/check-kubernetes.sh runs it).

    kubernetes_manifests.py check DIR [-k VERSION ...]  every manifest in DIR against its schema
    kubernetes_manifests.py self-test DIR               broken copies of them must be rejected
    kubernetes_manifests.py extract CRD.yaml OUT --source TEXT
                                                        a CRD's openAPIV3Schema as a JSON Schema file

Built-in kinds are checked by kubernetes-validate in strict mode: an unknown
field is an error, as it is for `kubectl apply` (server-side field validation,
strict by default since Kubernetes 1.27), which would otherwise refuse the
manifest only at deploy time. Custom resources (KEDA's ScaledObject, the
Prometheus Operator's ServiceMonitor and PrometheusRule) are checked against
the openAPIV3Schema of their CRD, committed under DIR/schemas/ and made strict
the same way the API server prunes: an object that declares its properties
admits no others unless the CRD marks it x-kubernetes-preserve-unknown-fields.

The kustomization must list every manifest in DIR but the *.example.yaml
ones (validated, not deployed), so that a file added here is also deployed.
"""

import argparse
import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

# The oldest Kubernetes the manifests promise to work on, and the newest
# kubernetes-validate knows (appended at run time).
OLDEST_VERSION = "1.30"

KUSTOMIZATION = "kustomization.yaml"
EXAMPLE_SUFFIX = ".example.yaml"
KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "namespace", "namePrefix", "nameSuffix", "resources",
    "components", "labels", "commonLabels", "commonAnnotations", "images",
    "configMapGenerator", "secretGenerator", "generatorOptions", "patches", "replicas",
}

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# CRD schemas leave `metadata` open (the API server checks it as ObjectMeta);
# these are the ObjectMeta fields a manifest may set.
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_SUBDOMAIN},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}


# Keys whose values are schemas (or lists of them); `properties` maps names to schemas.
SUBSCHEMA_KEYS = ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not")


def map_schema(schema, node):
    """`node` applied to every (sub)schema, innermost first; property names are kept."""
    if isinstance(schema, list):
        return [map_schema(s, node) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: map_schema(sub, node) for name, sub in out["properties"].items()}
    for key in SUBSCHEMA_KEYS:
        if key in out:
            out[key] = map_schema(out[key], node)
    return node(out)


def strict(schema):
    """The CRD schema with unknown fields rejected where the API server would prune them."""
    def close(node):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    return map_schema(schema, close)


def load_crd_schemas(directory):
    """(apiVersion, kind) -> validator, from the committed schemas/*.json."""
    validators = {}
    for path in sorted((directory / "schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        schema = strict(schema)
        schema["properties"]["metadata"] = OBJECT_META
        for gvk in schema["x-kubernetes-group-version-kind"]:
            key = (f"{gvk['group']}/{gvk['version']}", gvk["kind"])
            validators[key] = (path.name, jsonschema.Draft7Validator(schema))
    return validators


def describe(doc):
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def validate_doc(doc, crds, versions):
    """Every problem with one document, as strings."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["not a Kubernetes object (no apiVersion/kind)"]
    crd = crds.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        name, validator = crd
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message} (schemas/{name})"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        ]
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kv_utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            problems.append(f"{path}: {e.message} (Kubernetes {version})")
        except kv_utils.SchemaNotFoundError as e:
            # An unknown kind is an error here, not a warning: nothing would check it.
            problems.append(f"{e.message}; a custom resource needs its CRD schema in schemas/")
    return problems


def manifest_files(directory):
    return sorted(p.name for p in directory.glob("*.yaml") if p.name != KUSTOMIZATION)


def deployed(name):
    """Whether the kustomization must list the file (examples are validated, not deployed)."""
    return not name.endswith(EXAMPLE_SUFFIX)


def kustomization_problems(kustomization, files):
    if not isinstance(kustomization, dict):
        return ["not a mapping"]
    problems = [f"unknown field {k}" for k in sorted(set(kustomization) - KUSTOMIZATION_KEYS)]
    if kustomization.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        problems.append("apiVersion: expected kustomize.config.k8s.io/v1beta1")
    if kustomization.get("kind") != "Kustomization":
        problems.append("kind: expected Kustomization")
    listed = kustomization.get("resources") or []
    for missing in sorted({f for f in files if deployed(f)} - set(listed)):
        problems.append(f"resources: {missing} is in the directory but not listed (never deployed)")
    for extra in sorted(set(listed) - set(files)):
        problems.append(f"resources: {extra} is listed but not in the directory")
    return problems


def load_all(directory):
    """{file name: [documents]} for the kustomization and every manifest."""
    docs = {}
    for name in [KUSTOMIZATION] + manifest_files(directory):
        with open(directory / name) as f:
            docs[name] = [d for d in yaml.safe_load_all(f) if d is not None]
    return docs


def problems_of(docs, crds, versions):
    """[(file, object, problem)] over everything in `docs`."""
    found = []
    files = [n for n in docs if n != KUSTOMIZATION]
    kustomization = docs.get(KUSTOMIZATION) or [None]
    for p in kustomization_problems(kustomization[0], files):
        found.append((KUSTOMIZATION, "Kustomization", p))
    for name in files:
        if not docs[name]:
            found.append((name, "-", "no documents"))
        for doc in docs[name]:
            for p in validate_doc(doc, crds, versions):
                found.append((name, describe(doc), p))
    return found


def versions_from(args):
    return args.kubernetes_version or [OLDEST_VERSION, kv_utils.latest_version()]


def check(args):
    directory = pathlib.Path(args.dir)
    versions = versions_from(args)
    crds = load_crd_schemas(directory)
    docs = load_all(directory)
    found = problems_of(docs, crds, versions)
    for name, what, problem in found:
        print(f"{directory / name}: {what}: {problem}", file=sys.stderr)
    if found:
        print(f"{len(found)} problem(s) in {directory}", file=sys.stderr)
        return 1
    objects = sum(len(d) for n, d in docs.items() if n != KUSTOMIZATION)
    kinds = sorted({describe(d) for n, ds in docs.items() if n != KUSTOMIZATION for d in ds})
    print(f"{directory}: {objects} objects valid (Kubernetes {', '.join(versions)}; "
          f"CRDs: {', '.join(sorted(k for _, k in crds))}): {', '.join(kinds)}")
    return 0


def _walk(doc, path):
    for step in path[:-1]:
        doc = doc[step]
    return doc, path[-1]


def rename(path, new):
    def apply(doc):
        parent, key = _walk(doc, path)
        parent[new] = parent.pop(key)
    return apply


def setting(path, value):
    def apply(doc):
        parent, key = _walk(doc, path)
        parent[key] = value
    return apply


def deleting(path):
    def apply(doc):
        parent, key = _walk(doc, path)
        del parent[key]
    return apply


CONTAINER = ["spec", "template", "spec", "containers", 0]
# (what is broken, file, kind, how): each must make the check fail.
BREAKAGES = [
    ("typo'd container field", "deployment.yaml", "Deployment",
     rename(CONTAINER + ["readinessProbe"], "readinesProbe")),
    ("port number as text", "deployment.yaml", "Deployment",
     setting(CONTAINER + ["ports", 0, "containerPort"], "9464/tcp")),
    ("typo'd pod field", "deployment.yaml", "Deployment",
     rename(["spec", "template", "spec", "securityContext"], "securityContex")),
    ("typo'd Service port field", "service.yaml", "Service",
     rename(["spec", "ports", 0, "targetPort"], "targetport")),
    ("typo'd PDB field", "poddisruptionbudget.yaml", "PodDisruptionBudget",
     rename(["spec", "maxUnavailable"], "maxUnavaliable")),
    ("typo'd ScaledObject field", "scaledobject.yaml", "ScaledObject",
     rename(["spec", "maxReplicaCount"], "maxReplicasCount")),
    ("ScaledObject trigger without its type", "scaledobject.yaml", "ScaledObject",
     deleting(["spec", "triggers", 0, "type"])),
    ("replica count as text", "scaledobject.yaml", "ScaledObject",
     setting(["spec", "minReplicaCount"], "two")),
    ("typo'd ServiceMonitor endpoint field", "servicemonitor.yaml", "ServiceMonitor",
     rename(["spec", "endpoints", 0, "path"], "paht")),
    ("typo'd alert rule field", "prometheusrule.yaml", "PrometheusRule",
     rename(["spec", "groups", 0, "rules", 0, "alert"], "alrt")),
    ("typo'd metadata field", "configmap.yaml", "ConfigMap",
     rename(["metadata", "name"], "nmae")),
    ("misspelt custom kind", "scaledobject.yaml", "ScaledObject",
     setting(["kind"], "ScaledObjekt")),
]


def self_test(args):
    """Breaks copies of the manifests one way at a time; the check must reject each."""
    directory = pathlib.Path(args.dir)
    versions = versions_from(args)
    crds = load_crd_schemas(directory)
    pristine = load_all(directory)
    if problems_of(pristine, crds, versions):
        print("self-test: the manifests themselves do not validate; run `check` first", file=sys.stderr)
        return 1
    missed = []
    for what, name, kind, apply in BREAKAGES:
        docs = copy.deepcopy(pristine)
        targets = [d for d in docs[name] if d.get("kind") == kind]
        if not targets:
            missed.append(f"{what}: no {kind} in {name} to break")
            continue
        apply(targets[0])
        found = problems_of(docs, crds, versions)
        if not found:
            missed.append(f"{what} ({name}) was accepted")
        else:
            print(f"self-test: {what} ({name}) rejected: {found[0][2]}")
    # A manifest the kustomization does not list is never deployed.
    docs = copy.deepcopy(pristine)
    docs[KUSTOMIZATION][0]["resources"].remove("service.yaml")
    if not problems_of(docs, crds, versions):
        missed.append("a manifest missing from the kustomization was accepted")
    for m in missed:
        print(f"self-test: {m}", file=sys.stderr)
    if missed:
        return 1
    print(f"self-test: {len(BREAKAGES) + 1} broken copies, each rejected")
    return 0


def strip_descriptions(schema):
    """The schema without human-readable text (it is in the CRD named by $comment)."""
    return map_schema(schema, lambda node: {k: v for k, v in node.items() if k != "description"})


def extract(args):
    crd = yaml.safe_load(pathlib.Path(args.crd).read_text())
    spec = crd["spec"]
    stored = [v for v in spec["versions"] if v.get("served") and v.get("storage")]
    if len(stored) != 1:
        print(f"{args.crd}: expected one served storage version", file=sys.stderr)
        return 1
    version = stored[0]
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"openAPIV3Schema of {crd['metadata']['name']} {version['name']}, "
                    f"descriptions removed; from {args.source}",
        "x-kubernetes-group-version-kind": [
            {"group": spec["group"], "version": version["name"], "kind": spec["names"]["kind"]}
        ],
    }
    schema.update(strip_descriptions(version["schema"]["openAPIV3Schema"]))
    pathlib.Path(args.out).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {spec['names']['kind']} {spec['group']}/{version['name']}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("check", check), ("self-test", self_test)):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("-k", "--kubernetes-version", action="append",
                       help=f"repeatable; default: {OLDEST_VERSION} and the newest known")
        p.set_defaults(func=func)
    p = sub.add_parser("extract")
    p.add_argument("crd")
    p.add_argument("out")
    p.add_argument("--source", required=True, help="where the CRD came from (repository, tag, path)")
    p.set_defaults(func=extract)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
