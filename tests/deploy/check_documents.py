#!/usr/bin/env python3
"""Parses every deploy/ document and checks what a typo would break before AWS or Kubernetes sees it.

  check_documents.py DEPLOY_DIR [--extract OUT_DIR]

SSM documents (deploy/ssm/*.yaml): schemaVersion "2.2", mainSteps with unique names and an
action, every {{ parameter }} declared, every ENV_VAR parameter read by some script as
$SSM_<name>, runShellScript steps holding one POSIX sh script. --extract writes those scripts to
OUT_DIR/<document>.<step>.sh for shellcheck. Also: the Distributor manifest (JSON), the Kubernetes
manifests (YAML, with the security settings the DaemonSet promises: host network and PIDs,
exactly four capabilities, not privileged, read-only root), and the Terraform module
(every var.X declared, every declared variable used, README naming each variable and output).
Exit 77 (skipped) when PyYAML is missing.
"""

import json
import pathlib
import re
import sys

try:
    import yaml
except ImportError:
    print("SKIP: python3 has no yaml module (Debian: python3-yaml)")
    sys.exit(77)

PARAMETER_REF = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
failures = []


def fail(where, what):
    failures.append(f"{where}: {what}")


def check_ssm(path, extract_dir):
    doc = yaml.safe_load(path.read_text())
    where = path.name
    if not isinstance(doc, dict):
        fail(where, "not a mapping")
        return
    if doc.get("schemaVersion") != "2.2":
        fail(where, f"schemaVersion is {doc.get('schemaVersion')!r}, not '2.2'")
    if not doc.get("description"):
        fail(where, "no description")
    parameters = doc.get("parameters") or {}
    for name, spec in parameters.items():
        if spec.get("type") not in ("String", "StringList", "Boolean", "MapList", "StringMap"):
            fail(where, f"parameter {name}: bad type {spec.get('type')!r}")
        pattern = spec.get("allowedPattern")
        if pattern is not None:
            regex = re.compile(pattern)
            if "default" in spec and not regex.search(str(spec["default"])):
                fail(where, f"parameter {name}: default does not match its allowedPattern")
            if "'" in pattern.replace("[^'", ""):
                fail(where, f"parameter {name}: allowedPattern admits a single quote")
        if spec.get("type") == "String" and "allowedPattern" not in spec and "allowedValues" not in spec:
            fail(where, f"parameter {name}: free text without allowedPattern/allowedValues")
    steps = doc.get("mainSteps")
    if not isinstance(steps, list) or not steps:
        fail(where, "no mainSteps")
        return
    names = [step.get("name") for step in steps]
    if len(set(names)) != len(names) or not all(names):
        fail(where, f"step names missing or repeated: {names}")
    referenced = set(PARAMETER_REF.findall(json.dumps(doc.get("mainSteps"))))
    for name in referenced - set(parameters):
        fail(where, f"{{{{ {name} }}}} is not a declared parameter")
    scripts = []
    for step in steps:
        action = step.get("action", "")
        if not action.startswith("aws:"):
            fail(where, f"step {step.get('name')}: bad action {action!r}")
        inputs = step.get("inputs") or {}
        if action == "aws:runShellScript":
            commands = inputs.get("runCommand")
            if not isinstance(commands, list) or not commands:
                fail(where, f"step {step['name']}: no runCommand")
                continue
            script = "\n".join(commands)
            if not script.startswith("#!/bin/sh\n"):
                fail(where, f"step {step['name']}: script does not start with #!/bin/sh")
            scripts.append(script)
            if extract_dir:
                out = extract_dir / f"{path.stem}.{step['name']}.sh"
                out.write_text(script if script.endswith("\n") else script + "\n")
        elif action == "aws:configurePackage":
            for key in ("name", "action"):
                if key not in inputs:
                    fail(where, f"step {step['name']}: configurePackage without {key}")
    for name, spec in parameters.items():
        if spec.get("interpolationType") == "ENV_VAR":
            if not any(f"$SSM_{name}" in s or f"${{SSM_{name}" in s for s in scripts):
                fail(where, f"ENV_VAR parameter {name} is never read as $SSM_{name}")


def check_manifest(path):
    manifest = json.loads(path.read_text())
    where = path.name
    if manifest.get("schemaVersion") != "2.0":
        fail(where, "Distributor manifests use schemaVersion 2.0")
    files = manifest.get("files") or {}
    for platform, versions in (manifest.get("packages") or {}).items():
        for version, arches in versions.items():
            for arch, entry in arches.items():
                if entry.get("file") not in files:
                    fail(where, f"{platform}/{version}/{arch}: file {entry.get('file')!r} not in files")
    for name, entry in files.items():
        if "sha256" not in (entry.get("checksums") or {}):
            fail(where, f"file {name}: no sha256 checksum")


def check_kubernetes(path):
    where = path.name
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    daemonsets = [d for d in docs if d.get("kind") == "DaemonSet"]
    if not daemonsets:
        fail(where, "no DaemonSet")
    for doc in docs:
        if not doc.get("apiVersion") or not doc.get("metadata", {}).get("name"):
            fail(where, f"{doc.get('kind')}: no apiVersion or metadata.name")
    for ds in daemonsets:
        pod = ds["spec"]["template"]["spec"]
        if ds["spec"]["selector"]["matchLabels"].items() - ds["spec"]["template"]["metadata"]["labels"].items():
            fail(where, "selector does not match the pod labels")
        if pod.get("hostNetwork") is not True:
            fail(where, "hostNetwork is not true")
        # capd-peers finds the node process relaying a client's connection in /proc/PID/fd.
        if pod.get("hostPID") is not True:
            fail(where, "hostPID is not true")
        for container in pod["containers"]:
            context = container.get("securityContext", {})
            caps = context.get("capabilities", {})
            # Exactly four: capture (capd) and reading other users' /proc/PID/fd (capd-peers).
            wanted = ["DAC_READ_SEARCH", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"]
            if caps.get("drop") != ["ALL"] or sorted(caps.get("add", [])) != wanted:
                fail(where, f"{container['name']}: capabilities are not drop ALL, add "
                            + " ".join(wanted))
            if context.get("privileged") is True:
                fail(where, f"{container['name']}: privileged")
            if context.get("appArmorProfile", {}).get("type") != "Unconfined":
                fail(where, f"{container['name']}: the runtime's AppArmor profile would hide node "
                            "processes' /proc/PID/fd (appArmorProfile.type is not Unconfined)")
            if context.get("readOnlyRootFilesystem") is not True:
                fail(where, f"{container['name']}: root filesystem not read-only")
            if context.get("allowPrivilegeEscalation") is not False:
                fail(where, f"{container['name']}: allowPrivilegeEscalation is not false")
            limits = container.get("resources", {}).get("limits", {})
            if "cpu" not in limits or "memory" not in limits:
                fail(where, f"{container['name']}: no cpu/memory limits")


def check_terraform(directory):
    text = {p.name: p.read_text() for p in directory.glob("*.tf")}
    code = "\n".join(text.values())
    if code.count("{") != code.count("}"):
        fail("terraform", "unbalanced braces")
    declared = set(re.findall(r'^variable\s+"([A-Za-z0-9_]+)"', code, re.M))
    used = set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", code))
    locals_declared = set(re.findall(r"^\s+([a-z0-9_]+)\s*=", "\n".join(re.findall(r"locals\s*\{(.*?)\n\}", code, re.S)), re.M))
    locals_used = set(re.findall(r"\blocal\.([A-Za-z0-9_]+)", code))
    outputs = set(re.findall(r'^output\s+"([A-Za-z0-9_]+)"', code, re.M))
    for name in used - declared:
        fail("terraform", f"var.{name} is not declared")
    for name in declared - used:
        fail("terraform", f"variable {name} is declared but never used")
    for name in locals_used - locals_declared:
        fail("terraform", f"local.{name} is not declared")
    readme = (directory / "README.md").read_text()
    for name in declared | outputs:
        if f"`{name}`" not in readme:
            fail("terraform/README.md", f"{name} is not documented")
    for resource in ("aws_ec2_traffic_mirror_target", "aws_ec2_traffic_mirror_filter",
                     "aws_ec2_traffic_mirror_filter_rule", "aws_ec2_traffic_mirror_session",
                     "aws_security_group", "aws_iam_role", "aws_iam_instance_profile",
                     "aws_iam_role_policy_attachment"):
        if f'resource "{resource}"' not in code:
            fail("terraform", f"no {resource}")


def main():
    deploy = pathlib.Path(sys.argv[1])
    extract_dir = None
    if len(sys.argv) == 4 and sys.argv[2] == "--extract":
        extract_dir = pathlib.Path(sys.argv[3])
        extract_dir.mkdir(parents=True, exist_ok=True)
    documents = sorted((deploy / "ssm").glob("*.yaml"))
    if len(documents) < 5:
        fail("ssm", f"expected install, uninstall, start, stop, collect documents; found {len(documents)}")
    for path in documents:
        check_ssm(path, extract_dir)
    check_manifest(deploy / "ssm" / "distributor" / "manifest.json")
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        check_kubernetes(path)
    check_terraform(deploy / "terraform")
    for line in failures:
        print("FAIL", line)
    print(f"checked {len(documents)} SSM documents, the Distributor manifest, Kubernetes and Terraform:"
          f" {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
