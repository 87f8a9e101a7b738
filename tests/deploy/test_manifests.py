#!/usr/bin/env python3
"""The fleet files in deploy/ (docs/fleet.md) hold what the docs promise.

deploy/kubernetes/teleportd-daemonset.yaml: parses (python3-yaml), is a
ConfigMap and a DaemonSet whose selector matches its pods, whose every
volume mount has a volume, whose probes run `teleport health` with a
client certificate (kubelet's own grpc probe has none, and no TLS), whose
grace period outlasts teleportd's stop timeout, and whose teleportd.conf
teleportd itself accepts. deploy/nomad/teleportd.nomad.hcl: no HCL parser
is packaged in Debian, so only its teleportd.conf template is checked, by
teleportd, and the few settings the docs name.

Environment: JW_SOURCE_ROOT, JW_BUILD_ROOT (for server/teleportd).
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

SRC = os.environ.get("JW_SOURCE_ROOT",
                     os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("JW_BUILD_ROOT", os.path.join(SRC, "build"))
TELEPORTD = os.path.join(BUILD, "server", "teleportd")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        failures.append(name)
        if detail:
            print("     " + detail)


def teleportd_accepts(name, text):
    """teleportd --config parses text: with no certificates given, a good
    file gets as far as "missing --cacert"; a bad key or value is named
    with the file and line instead."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "teleportd.conf")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TELEPORTD_")}
        p = subprocess.run([TELEPORTD, "--config", path], env=env,
                           capture_output=True, text=True, timeout=60)
    check(name, p.returncode == 2 and "missing --cacert" in p.stderr
          and path not in p.stderr, "exit %d: %s" % (p.returncode, p.stderr))


def probe_runs_health(probe):
    cmd = probe.get("exec", {}).get("command", [])
    return (cmd[:1] == ["teleport"] and cmd[-1:] == ["health"]
            and "--cert" in cmd and "--key" in cmd and "--cacert" in cmd
            and "grpc" not in probe)


def kubernetes():
    path = os.path.join(SRC, "deploy", "kubernetes",
                        "teleportd-daemonset.yaml")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    kinds = [d.get("kind") for d in docs]
    check("kubernetes: a ConfigMap and a DaemonSet", kinds ==
          ["ConfigMap", "DaemonSet"], str(kinds))
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    check("kubernetes: apps/v1", ds["apiVersion"] == "apps/v1")
    spec = ds["spec"]
    pod = spec["template"]
    check("kubernetes: the selector matches the pods' labels",
          all(pod["metadata"]["labels"].get(k) == v
              for k, v in spec["selector"]["matchLabels"].items()))
    podspec = pod["spec"]
    volumes = {v["name"] for v in podspec["volumes"]}
    mounts = [m["name"] for c in podspec["containers"] +
              podspec.get("initContainers", [])
              for m in c.get("volumeMounts", [])]
    check("kubernetes: every volume mount has its volume",
          set(mounts) <= volumes, str(set(mounts) - volumes))
    main = next(c for c in podspec["containers"] if c["name"] == "teleportd")
    check("kubernetes: teleportd runs from --config",
          main["args"][:1] == ["--config"])
    cfg_mount = next(m for m in main["volumeMounts"]
                     if m["mountPath"] == os.path.dirname(main["args"][1]))
    cfg_file = os.path.basename(main["args"][1])
    check("kubernetes: --config names the ConfigMap's teleportd.conf",
          cfg_file in cm["data"] and next(
              v for v in podspec["volumes"]
              if v["name"] == cfg_mount["name"])["configMap"]["name"] ==
          cm["metadata"]["name"])
    mode = next(v for v in podspec["volumes"]
                if v["name"] == cfg_mount["name"])["configMap"].get(
                    "defaultMode", 0o644)
    check("kubernetes: the config file is not world-writable",
          mode & 0o002 == 0, oct(mode))
    teleportd_accepts("kubernetes: teleportd accepts the ConfigMap's "
                      "teleportd.conf", cm["data"][cfg_file])
    for kind in ("readinessProbe", "livenessProbe"):
        check("kubernetes: %s runs teleport health with a client "
              "certificate" % kind, probe_runs_health(main.get(kind, {})),
              str(main.get(kind)))
    check("kubernetes: privileged, for cgroups and namespaces",
          main["securityContext"].get("privileged") is True)
    stop = re.search(r"^stop-timeout = (\d+)s$", cm["data"][cfg_file], re.M)
    grace = podspec.get("terminationGracePeriodSeconds", 30)
    check("kubernetes: the grace period outlasts --stop-timeout plus 5 s",
          stop is not None and grace > int(stop.group(1)) + 5, str(grace))


def nomad():
    path = os.path.join(SRC, "deploy", "nomad", "teleportd.nomad.hcl")
    with open(path) as f:
        text = f.read()
    check("nomad: a system job", re.search(r'^\s*type\s*=\s*"system"', text,
                                           re.M) is not None)
    check("nomad: raw_exec", 'driver = "raw_exec"' in text)
    check("nomad: braces balance", text.count("{") == text.count("}"))
    m = re.search(r'destination = "\$\{NOMAD_SECRETS_DIR\}/teleportd.conf"'
                  r'.*?<<-EOT\n(.*?)\n\s*EOT', text, re.S)
    check("nomad: a teleportd.conf template", m is not None)
    if m is None:
        return
    conf = "\n".join(line.strip() for line in m.group(1).splitlines())
    # What Nomad fills in, and no certificates, so teleportd stops at
    # "missing --cacert" after reading every other key.
    conf = re.sub(r'\{\{ env "NOMAD_IP_grpc" \}\}', "127.0.0.1", conf)
    conf = re.sub(r'\{\{ env "NOMAD_PORT_grpc" \}\}', "3000", conf)
    conf = re.sub(r"^(cacert|cert|key) = .*$", "", conf, flags=re.M)
    conf = re.sub(r"\{\{.*?\}\}", "x", conf)
    teleportd_accepts("nomad: teleportd accepts the teleportd.conf template",
                      conf)


kubernetes()
nomad()
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
