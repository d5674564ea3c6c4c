"""deploy/: the container image recipe, the Kubernetes and KServe manifests, validated offline.

No cluster and no Docker engine are available where these run, so they check what can be
checked without one:
- yamllint, the Kubernetes API schemas and field names (scripts/validate_deploy.sh with the
  pinned npm validator), and `kubectl kustomize` rendering, each skipped when its tool is
  missing or the npm registry cannot be reached;
- that the validator really rejects broken manifests (tests/deploy/bad/);
- that the manifests agree with the server: every flag they pass exists, the server starts
  with exactly those arguments and answers the probe paths they declare, the Docker
  HEALTHCHECK script works against it, the grace period covers preStop plus the drain, and the
  HPA's request-rate metric is built from counters the server really exports;
- that the image's runtime stage installs every shared library build/inferd links.
"""
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, Server, make_repo

yaml = pytest.importorskip("yaml")  # python3-yaml, which yamllint depends on

DEPLOY = ROOT / "deploy"
VALIDATE = ROOT / "scripts" / "validate_deploy.sh"
BAD = ROOT / "tests" / "deploy" / "bad"
SKIP = 77


def run_step(*args, timeout=900):
    r = subprocess.run([str(VALIDATE), *map(str, args)], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    out = r.stdout + r.stderr
    if r.returncode == SKIP:
        pytest.skip(out.strip().splitlines()[0] if out.strip() else "tool unavailable")
    return r.returncode, out


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(path, kind):
    found = [d for d in docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path}: {len(found)} {kind} objects"
    return found[0]


def deployment():
    return one(DEPLOY / "k8s" / "deployment.yaml", "Deployment")


def serving_runtime():
    return one(DEPLOY / "kserve" / "servingruntime.yaml", "ServingRuntime")


def dockerfile_stages():
    """The Dockerfile as a list of stages, each a list of (INSTRUCTION, argument text)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def serve_flags(inferd_bin):
    out = subprocess.run([inferd_bin, "serve", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+(--[a-z-]+)", out, re.M))


def container_args():
    """Where each manifest runs inferd, with its arguments."""
    stages = dockerfile_stages()
    cmd = [json.loads(a) for i, a in stages[-1] if i == "CMD"][-1]
    return {
        "deployment": deployment()["spec"]["template"]["spec"]["containers"][0]["args"],
        "servingruntime": serving_runtime()["spec"]["containers"][0]["args"],
        "dockerfile": cmd,
    }


# ---- offline validation with maintained tools ----

def test_yamllint_is_clean():
    rc, out = run_step("yamllint")
    assert rc == 0, out


def test_manifests_match_the_kubernetes_schemas():
    rc, out = run_step("schema")
    assert rc == 0, out
    m = re.search(r"(\d+) objects \((\d+) type-checked", out)
    assert m, out
    # deployment, service, hpa, pdb, pvc, adapter ConfigMap, ServingRuntime, InferenceService
    assert (int(m.group(1)), int(m.group(2))) == (8, 8), out
    assert "1 Dockerfiles (0 problem(s)): all valid" in out, out


@pytest.fixture(scope="module")
def bad_report():
    """The validator's report on every broken manifest at once (one TypeScript program)."""
    files = sorted(BAD.glob("*.yaml"))
    rc, out = run_step("schema", *files)
    assert rc == 1, out
    return out


@pytest.mark.parametrize("name,expected", [
    ("misspelt_field.yaml", ["'\"readinesProbe\"' does not exist in type 'IContainer'"]),
    ("wrong_type.yaml", ["schema: /spec/containers/0/ports/0/containerPort must be integer"]),
    ("missing_required.yaml", ["must have required property scaleTargetRef",
                               "must have required property maxReplicas"]),
    ("bad_enum.yaml", ["imagePullPolicy must be equal to one of the allowed values"]),
    ("unknown_kind.yaml", ["unknown kind Deploymnt in apps/v1"]),
    ("duplicate_key.yaml", ["yaml: Map keys must be unique"]),
    ("kserve_runtime.yaml", ["spec.protocolVersions[0]: 'v3' is not one of",
                             "supportedModelFormats[0].priority must be an integer >= 1",
                             "spec.containers[0]: /ports/0/containerPort must be integer"]),
    ("kserve_runtime_field.yaml", ["'\"arg\"' does not exist in type 'IContainer'"]),
    ("kserve_isvc.yaml", ["spec.predictor.model.modelFormat.name is required",
                          "'\"storageURI\"' does not exist in type 'IModelSpec'"]),
])
def test_the_validator_rejects_broken_manifests(bad_report, name, expected):
    # Each file's problems are reported on lines that start with its path.
    mine = "\n".join(line for line in bad_report.splitlines()
                     if line.startswith(f"{BAD / name}:") or line.startswith(f"{BAD / name}#"))
    assert mine, f"no problem reported for {name}:\n{bad_report}"
    for e in expected:
        assert e in mine, f"expected {e!r} in:\n{mine}"


def test_the_dockerfile_linter_rejects_a_broken_dockerfile():
    rc, out = run_step("schema", "--dockerfile", BAD / "Dockerfile")
    assert rc == 1, out
    assert "Dockerfile:3: dockerfile: Unknown instruction: RUNN" in out, out
    assert "Dockerfile:4: dockerfile: Invalid containerPort: http" in out, out


def test_yamllint_rejects_a_duplicate_key():
    rc, out = run_step("yamllint", BAD / "duplicate_key.yaml")
    assert rc == 1, out
    assert "key-duplicates" in out, out


def test_kustomization_renders():
    rc, out = run_step("kustomize")
    assert rc == 0, out
    assert "deploy/k8s renders 5 objects" in out, out


# ---- the image ----

def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    stages = dockerfile_stages()
    assert len(stages) >= 2, stages
    final = stages[-1]
    assert re.search(r"AS runtime$", final[0][1]), final[0]
    user = [a for i, a in final if i == "USER"]
    assert user and not re.match(r"^(0|root)(:|$)", user[-1]), user
    assert any(i == "HEALTHCHECK" and "inferd-healthcheck" in a for i, a in final), final
    assert ("EXPOSE", "8000") in final, final
    entry = [json.loads(a) for i, a in final if i == "ENTRYPOINT"]
    assert entry == [["/usr/local/bin/inferd", "serve"]], entry
    # Only the runtime stage ships: no compiler in it.
    runs = " ".join(a for i, a in final if i == "RUN")
    assert "deps.sh" not in runs and "gcc" not in runs, runs


def runtime_packages():
    runs = " ".join(a for i, a in dockerfile_stages()[-1] if i == "RUN")
    m = re.search(r"apt-get install -y --no-install-recommends\s+((?:[a-z0-9.+-]+\s+)+)&&", runs)
    assert m, runs
    return set(m.group(1).split())


def debian_packages_of(paths):
    """The package that installed each file, trying the link and its target with and without
    the /usr prefix (dpkg records the paths as packaged, before /usr was merged). One dpkg
    call: each is slow."""
    candidates = {}
    for path in paths:
        real = os.path.realpath(path)
        cands = [path, real] + [p[4:] if p.startswith("/usr/") else "/usr" + p
                                for p in (path, real)]
        candidates[path] = cands
    flat = sorted({c for cs in candidates.values() for c in cs})
    out = subprocess.run(["dpkg", "-S", *flat], capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        pkgs, _, f = line.partition(": ")
        owner[f.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    return {p: next((owner[c] for c in cs if c in owner), None) for p, cs in candidates.items()}


def test_runtime_stage_installs_every_library_the_binary_links(inferd_available):
    readelf = subprocess.run(["readelf", "-d", inferd_available], capture_output=True, text=True)
    if readelf.returncode != 0:
        pytest.skip("readelf is not available")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf.stdout)
    assert needed, readelf.stdout
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = {}
    for soname in needed:
        m = re.search(rf"^\s+{re.escape(soname)} \([^)]*x86-64[^)]*\) => (\S+)$", ldconfig, re.M)
        assert m, f"{soname} not in the loader cache"
        paths[soname] = m.group(1)
    owners = debian_packages_of(paths.values())
    pkgs = runtime_packages()
    missing = []
    for soname, path in paths.items():
        pkg = owners[path]
        if pkg is None:
            pytest.skip(f"{soname} is not from a Debian package here")
        # glibc is in every Debian image.
        if pkg != "libc6" and pkg not in pkgs:
            missing.append(f"{soname} ({pkg})")
    assert not missing, f"runtime stage lacks {missing}; it installs {sorted(pkgs)}"


def test_runtime_packages_exist_in_debian():
    probe = subprocess.run(["apt-cache", "policy", "libc6"], capture_output=True, text=True)
    if not re.search(r"Candidate: [0-9]", probe.stdout):
        pytest.skip("no apt package lists here (apt-get update)")
    pkgs = sorted(runtime_packages())
    r = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True)
    # One block per known package: "name:\n  Installed: ...\n  Candidate: ...".
    found = dict(re.findall(r"^([a-z0-9.+-]+):\n(?:\s+Installed: \S+\n)?\s+Candidate: (\S+)",
                            r.stdout, re.M))
    for p in pkgs:
        assert found.get(p, "(none)") != "(none)", f"{p} has no candidate:\n{r.stdout}{r.stderr}"


# ---- the manifests agree with the server ----

def test_manifest_arguments_are_serve_flags(inferd_available):
    flags = serve_flags(inferd_available)
    assert "--repo" in flags and "--drain-timeout" in flags, flags
    for where, args in container_args().items():
        for a in args:
            if a.startswith("--"):
                assert a.split("=", 1)[0] in flags, f"{where}: {a} is not an inferd serve flag"
        # The budget must follow the CPU limit, so no manifest pins --threads.
        assert not any(a.split("=", 1)[0] == "--threads" for a in args), (where, args)


def test_grace_period_covers_prestop_and_drain():
    d = deployment()["spec"]["template"]["spec"]
    c = d["containers"][0]
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep", cmd
    prestop = int(cmd[1])
    drain = int(next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--drain-timeout=")))
    assert d["terminationGracePeriodSeconds"] >= prestop + drain + 1, (d, prestop, drain)


def test_cpu_limits_are_whole_cpus_and_guaranteed():
    for where, c in (("deployment", deployment()["spec"]["template"]["spec"]["containers"][0]),
                     ("servingruntime", serving_runtime()["spec"]["containers"][0])):
        res = c["resources"]
        assert res["requests"] == res["limits"], (where, res)
        cpu = str(res["limits"]["cpu"])
        assert re.fullmatch(r"[1-9][0-9]*", cpu), f"{where}: cpu limit {cpu} is not whole CPUs"


def test_hpa_request_rate_comes_from_exported_counters(inferd_available, tmp_path):
    hpa = one(DEPLOY / "k8s" / "hpa.yaml", "HorizontalPodAutoscaler")
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}, kinds
    name = next(m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    cm = one(DEPLOY / "k8s" / "monitoring" / "prometheus-adapter-rules.yaml", "ConfigMap")
    rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == name)
    counters = set(re.findall(r"inferd_[a-z_]+_total", rule["seriesQuery"]))
    m = re.search(r'__name__=~"inferd_request_\(([a-z|]+)\)_total"', rule["metricsQuery"])
    assert m, rule["metricsQuery"]
    counters |= {f"inferd_request_{k}_total" for k in m.group(1).split("|")}
    assert counters == {"inferd_request_success_total", "inferd_request_failure_total"}, counters

    # The server exports both once a request succeeded and one failed.
    repo = make_repo(tmp_path / "repo", {"question_type": {"case": "mlp_features_op11"}})
    s = Server(repo, tmp_path / "inferd.log", threads=1).start().wait_ready()
    try:
        s.require_ready("question_type")
        ok = s.post("/v2/models/question_type/infer", json={"inputs": [
            {"name": "features", "shape": [1, 20], "datatype": "FP32", "data": [0.5] * 20}]})
        assert ok.status_code == 200, ok.text
        bad = s.post("/v2/models/question_type/infer", json={"inputs": []})
        assert bad.status_code == 400, bad.text
        text = s.metrics()
        for c in sorted(counters):
            assert re.search(rf'^{c}\{{[^}}]*model="question_type"[^}}]*\}} 1$', text, re.M), \
                f"{c} not exported:\n{text}"
    finally:
        s.stop()


def probes(container):
    return {k: container[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")}


@pytest.mark.parametrize("where", ["deployment", "servingruntime"])
def test_server_runs_with_manifest_arguments_and_answers_its_probes(inferd_available, tmp_path,
                                                                   where):
    c = (deployment()["spec"]["template"]["spec"]["containers"][0] if where == "deployment"
         else serving_runtime()["spec"]["containers"][0])
    repo = make_repo(tmp_path / "repo", {"question_type": {"case": "mlp_features_op11"}})
    # The container's arguments, with the repository, address and port made local.
    args = []
    for a in c["args"]:
        flag = a.split("=", 1)[0]
        if flag == "--repo":
            a = f"--repo={repo}"
        elif flag == "--host":
            a = "--host=127.0.0.1"
        elif flag == "--http-port":
            continue  # conftest's Server picks a free port
        args.append(a)
    s = Server(repo, tmp_path / "inferd.log", threads=1)
    s.args = args  # exactly the manifest's flags: no --threads, as in the pod
    with s.running():
        # --log-format=json: every line is a JSON object, the budget among them.
        lines = [json.loads(line) for line in s.log().splitlines() if line.strip()]
        budget = [line["msg"] for line in lines if line["msg"].startswith("thread budget ")]
        assert budget, s.log()
        n = int(budget[0].split()[2])
        assert 1 <= n <= (os.cpu_count() or 1), budget
        for kind, path in probes(c).items():
            r = s.get(path)
            assert r.status_code == 200, (kind, path, r.status_code, r.text)
            if path in ("/ready", "/live"):
                assert r.text == "ok\n", (path, r.text)
        # The image's HEALTHCHECK script, against the same server.
        hc = subprocess.run([str(DEPLOY / "healthcheck.sh")], capture_output=True,
                            env={**os.environ, "INFERD_HEALTH_PORT": str(s.port)})
        assert hc.returncode == 0, hc


def test_healthcheck_fails_when_nothing_answers(tmp_path):
    import socket
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hc = subprocess.run([str(DEPLOY / "healthcheck.sh")], capture_output=True,
                        env={**os.environ, "INFERD_HEALTH_PORT": str(port)})
    assert hc.returncode == 1, hc


def test_thread_budget_is_logged_with_its_source(inferd_available, tmp_path):
    repo = make_repo(tmp_path / "repo", {})
    s = Server(repo, tmp_path / "a.log", threads=1)
    s.args = []
    s.start()
    try:
        m = re.search(r"thread budget (\d+) \((host|affinity|cgroup v[12])[: ]", s.log())
        assert m, s.log()
        assert 1 <= int(m.group(1)) <= (os.cpu_count() or 1), m.group(0)
    finally:
        s.stop()
    s = Server(repo, tmp_path / "b.log", threads=1).start()
    try:
        assert re.search(r"thread budget 1 \(--threads 1; detected \d+ from ", s.log()), s.log()
    finally:
        s.stop()


def test_metrics_show_the_thread_budget_and_its_source(inferd_available, tmp_path):
    s = Server(make_repo(tmp_path / "repo", {}), tmp_path / "inferd.log", threads=1).start()
    try:
        text = s.metrics()
    finally:
        s.stop()
    assert re.search(r'^inferd_thread_budget\{source="flag"\} 1$', text, re.M), text
    for name in ("inferd_cpu_quota_cores", "inferd_cpu_affinity_cores",
                 "inferd_memory_limit_bytes"):
        assert re.search(rf"^# TYPE {name} gauge\n{name} [0-9.e+]+$", text, re.M), (name, text)
