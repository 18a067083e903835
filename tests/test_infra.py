"""The cluster files in infra/ hold the structure a user relies on (no cloud, no Ray started)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"
RAY_MAJOR_MINOR = ".".join(ray.__version__.split(".")[:2])
# What infra/README.md tells users to set: four trials share one GPU.
TRIAL_CPU, TRIAL_GPU = 1, 0.25


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load((INFRA / "aws" / "ray-cluster.yaml").read_text())


@pytest.fixture(scope="module")
def raycluster() -> dict:
    return yaml.safe_load((INFRA / "k8s" / "raycluster.yaml").read_text())


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_launcher_matches_rays_own_schema(launcher):
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)


def test_launcher_has_cpu_head_and_both_gpu_worker_types(launcher):
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"]["CPU"] == 0, "the head must run no trials"
    assert launcher["provider"]["type"] == "aws"
    expected = {"gpu_g5": "g5.xlarge", "gpu_g6": "g6.xlarge"}
    for name, instance_type in expected.items():
        node = types[name]
        assert node["node_config"]["InstanceType"] == instance_type
        assert 0 <= node["min_workers"] <= node["max_workers"] <= launcher["max_workers"]
        assert node["resources"]["GPU"] >= 1
        assert node["node_config"]["ImageId"] == head["node_config"]["ImageId"]
        assert "Arn" in node["node_config"]["IamInstanceProfile"]
    assert sum(types[n]["max_workers"] for n in expected) >= 1, "at least one GPU worker type must be able to start"


def test_launcher_worker_fits_four_trials_per_gpu(launcher):
    for name in ("gpu_g5", "gpu_g6"):
        res = launcher["available_node_types"][name]["resources"]
        trials = min(res["CPU"] // TRIAL_CPU, res["GPU"] / TRIAL_GPU)
        assert trials >= 4, f"{name}: {res} fits only {trials} trials of {{cpu: {TRIAL_CPU}, gpu: {TRIAL_GPU}}}"


def test_launcher_setup_installs_the_project_and_this_ray(launcher):
    commands = launcher["setup_commands"]
    mounted = {remote for remote, local in launcher["file_mounts"].items() if local == "."}
    installs = [c for c in commands if "pip install" in c]
    assert any(any(f"-e {remote}" in c for remote in mounted) or "hedgerow @ git+" in c for c in installs), installs
    pins = {m for c in installs for m in re.findall(r"ray\[[^\]]*\]==([\w.]+)", c)}
    assert pins == {ray.__version__}, f"cluster Ray {pins} differs from the installed {ray.__version__}"
    assert any("ray start --head" in c for c in launcher["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP:6379" in c for c in launcher["worker_start_ray_commands"])


def test_raycluster_has_cpu_head_and_gpu_worker_group(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1"
    assert raycluster["kind"] == "RayCluster"
    spec = raycluster["spec"]
    assert _major_minor(spec["rayVersion"]) == RAY_MAJOR_MINOR
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {8265, 10001} <= ports, "jobs API and Ray Client ports"
    gpu_groups = [
        g
        for g in spec["workerGroupSpecs"]
        if any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in g["template"]["spec"]["containers"])
    ]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for group in gpu_groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert int(group["rayStartParams"]["num-cpus"]) // TRIAL_CPU >= 1 / TRIAL_GPU
    for container in [*head["template"]["spec"]["containers"], *gpu_groups[0]["template"]["spec"]["containers"]]:
        assert spec["rayVersion"] in container["image"], f"{container['image']}: not Ray {spec['rayVersion']}"


def test_dockerfile_builds_on_the_clusters_ray(raycluster):
    text = (INFRA / "k8s" / "Dockerfile").read_text()
    version = re.search(r"^ARG RAY_VERSION=([\w.]+)$", text, re.M).group(1)
    assert version == raycluster["spec"]["rayVersion"]
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$", text, re.M)
    assert re.search(r"^RUN pip install .*\"/app\"", text, re.M)


def test_iam_policy_grants_what_a_cluster_run_needs_and_no_more():
    policy = json.loads((INFRA / "aws" / "iam-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    granted: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in statement["Action"]:
            assert "*" not in action, f"wildcard action {action}"
            granted.setdefault(action, set()).update(resources)
    assert {"s3:PutObject", "s3:GetObject", "pricing:GetProducts", "ec2:DescribeInstanceTypes"} <= granted.keys()
    assert granted["s3:ListBucket"] == {"arn:aws:s3:::YOUR-BUCKET"}, "ListBucket applies to the bucket, not its objects"
    assert granted["s3:PutObject"] == {"arn:aws:s3:::YOUR-BUCKET/*"}


# ---- who can reach the cluster: token authentication on, dashboards off public addresses -------------


def test_launcher_starts_every_node_with_token_auth_and_ships_the_token(launcher):
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    for command in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token ray start" in command, command
    assert launcher["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert any("chmod 600 ~/.ray/auth_token" in c for c in launcher["setup_commands"])
    assert any("export RAY_AUTH_MODE=token" in c for c in launcher["setup_commands"])


def test_launcher_keeps_the_dashboard_on_the_heads_loopback(launcher):
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head


def test_raycluster_reads_the_token_from_a_secret_in_every_ray_container(raycluster):
    spec = raycluster["spec"]
    containers = [*spec["headGroupSpec"]["template"]["spec"]["containers"]]
    for group in spec["workerGroupSpecs"]:
        containers += group["template"]["spec"]["containers"]
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "hedgerow-ray-auth", "key": "auth_token"}, container["name"]
        assert "value" not in env["RAY_AUTH_TOKEN"], "a token written into the manifest"


def test_raycluster_head_service_has_no_public_address(raycluster):
    assert raycluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_no_file_in_infra_or_the_product_turns_ray_authentication_off():
    repo = INFRA.parent
    files = [*INFRA.rglob("*.*"), *(repo / "orchestrator").rglob("*.py"), *(repo / "bench").glob("*.py"),
             *(repo / "tests").rglob("*.py"), repo / "Makefile", repo / ".ci" / "run"]  # fmt: skip
    turned_off = re.compile(r"RAY_AUTH_MODE['\"]?\s*(=|:|,)\s*['\"]?disabled")  # =disabled, : disabled, ", "disabled"
    files = [p for p in files if p.is_file() and p != Path(__file__)]
    offenders = [str(p) for p in files if turned_off.search(p.read_text(errors="ignore"))]
    assert not offenders, offenders
    assert turned_off.search('os.environ.setdefault("RAY_AUTH_MODE", "disabled")')  # what this used to find


def test_every_launcher_node_labels_itself_with_its_instance_type_from_imdsv2(launcher):
    for command in (c for c in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"] if "ray start" in c):
        assert '--labels="hedgerow.io/instance-type=$INSTANCE_TYPE"' in command, command
        assert "latest/api/token" in command and "X-aws-ec2-metadata-token:$IMDS_TOKEN" in command, "IMDSv2 needs a session token"


def test_the_kuberay_gpu_group_label_matches_its_node_selector(raycluster):
    for group in raycluster["spec"]["workerGroupSpecs"]:
        selector = group["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
        assert group["rayStartParams"]["labels"] == f"hedgerow.io/instance-type={selector}"
