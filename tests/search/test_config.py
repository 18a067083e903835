"""Bad configs exit 2 with a message naming the field, and leave no run folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import json_schema, load_config
from orchestrator.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "search_spaces" / "digits.yaml"


def _demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def _with(path: list[str], value) -> dict:
    config = _demo()
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


BAD_CONFIGS = {
    "smt yield below 1": (_with(["deployment", "smt_yield"], 0.5), "deployment.smt_yield", "greater than or equal to 1"),
    "smt yield above 2": (_with(["deployment", "smt_yield"], 2.5), "deployment.smt_yield", "less than or equal to 2"),
    "unknown knob": (_with(["space", "prune_ration"], 0.5), "space.prune_ration", "did you mean 'prune_ratio'"),
    "ratio above 0.95": (_with(["space", "prune_ratio"], {"low": 0.2, "high": 0.97}), "space.prune_ratio", "0.95"),
    "empty choices": (_with(["space", "bits"], {"choices": []}), "space.bits", "at least 1"),
    "unsupported bits": (_with(["space", "bits"], {"choices": [32, 3]}), "space.bits", "32, 16, 8 or 4"),
    "unknown sampler": (_with(["search", "sampler"], "tpee"), "search.sampler", "'tpe'"),
    "negative traffic": (_with(["traffic", "peak_rps"], -5), "traffic.peak_rps", "greater than 0"),
    "unresolvable task path": (_with(["task", "name"], "no_such_pkg.tasks:make"), "task.name", "cannot import"),
    "unknown task": (_with(["task", "name"], "digit"), "task.name", "Did you mean 'digits'"),
    "missing catalog file": (_with(["deployment", "catalog"], "no-such-catalog.csv"), "deployment.catalog", "no such catalog"),
    "filter matches nothing": (_with(["deployment", "instance_filter"], ["zz9.*"]), "deployment.instance_filter", "zz9.*"),
    "unknown top-level field": (_with(["serach"], {"trials": 3}), "serach", "Extra inputs"),
    "metric the task lacks": (_with(["objective", "metric"], "bleu"), "objective.metric", "accuracy"),
    "unknown seeding": (_with(["search", "seed_candidates"], "yes"), "search.seed_candidates", "'auto' or 'none'"),
    "zero trials": (_with(["search", "trials"], 0), "search.trials", "greater than or equal to 1"),
    "low above high": (_with(["space", "kd_alpha"], {"low": 0.9, "high": 0.1}), "space.kd_alpha", "must not exceed"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_field(case, tmp_path, capsys):
    config, field, expected = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "runs"
    assert main(["search", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert field in err and expected in err, err
    assert not out.exists() or not any(out.iterdir()), "a run folder was left behind"
    assert main(["validate", str(path)]) == 2


def test_seed_candidates_default_to_auto_and_take_none(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_demo()))
    assert load_config(path).search.seed_candidates == "auto"
    path.write_text(yaml.safe_dump(_with(["search", "seed_candidates"], "none")))
    assert load_config(path).search.seed_candidates == "none"


def test_file_that_is_not_yaml(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("task: [digits\nspace: {bits: 8")
    assert main(["search", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "config.yaml" in err and "not valid YAML" in err
    assert not (tmp_path / "runs").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_yaml_that_is_not_a_mapping(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert main(["validate", str(path)]) == 2
    assert "expected a YAML mapping" in capsys.readouterr().err


def test_bad_trials_argument(tmp_path, capsys):
    assert main(["search", str(DEMO), "--trials", "0", "--out", str(tmp_path / "runs")]) == 2
    assert "--trials" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_demo_config_validates(capsys):
    assert main(["validate", str(DEMO)]) == 0
    assert "ok: task digits" in capsys.readouterr().out


def test_schema_is_json_schema_of_every_section(capsys):
    assert main(["validate", "--schema"]) == 0
    out = capsys.readouterr().out
    assert '"space"' in out and '"traffic"' in out
    schema = json_schema()
    assert set(schema["required"]) >= {"task", "traffic", "space"}


def test_relative_catalog_resolves_against_config_folder(tmp_path):
    from orchestrator.cost.catalog import BUNDLED_INSTANCES

    (tmp_path / "prices.csv").write_text(BUNDLED_INSTANCES.read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with(["deployment", "catalog"], "prices.csv")))
    assert load_config(path).deployment.catalog == str((tmp_path / "prices.csv").resolve())


def test_ray_client_address_needs_state_the_head_can_reach(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["search", str(DEMO), "--address", "ray://head:10001", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--address ray://head:10001" in err and "search.optuna_storage" in err and "search.storage_path" in err
    assert "ray job submit" in err
    assert not out.exists()


def test_ray_client_address_is_accepted_with_remote_storage():
    from orchestrator.search.runner import check_address

    config = load_config(DEMO)
    config.search.optuna_storage = "postgresql://optuna@db:5432/hedgerow"
    config.search.storage_path = "s3://bucket/searches"
    check_address(config, "ray://head:10001")  # no error
    check_address(load_config(DEMO), "auto")  # a local or joined cluster needs neither
    config.search.storage_path = None
    with pytest.raises(InputError, match="search.storage_path") as info:
        check_address(config, "ray://head:10001")
    assert "optuna_storage" not in str(info.value)


# ---- hostile config files: each exits 2 naming the file, and nothing runs ------------------------------


def test_a_yaml_tag_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "escaped-yaml-ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f'task: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "plain values only" in err and "line 1" in err
    assert not marker.exists()


def test_a_yaml_alias_bomb_is_refused_before_validation_walks_it(tmp_path, capsys):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\ntask: {name: digits}\n")
    assert main(["validate", str(path)]) == 2
    assert "YAML aliases" in capsys.readouterr().err


def test_an_oversized_config_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    assert main(["validate", str(path)]) == 2
    assert "more than the 1,048,576" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"task: {name: digits\n", "not valid YAML"), (b"\xff\xfe\x00garbage", "not UTF-8"), (b"- a\n- b\n", "expected a YAML mapping")],
    ids=["truncated", "binary", "a-list"],
)  # fmt: skip
def test_truncated_binary_or_wrong_typed_configs_are_refused(content, words, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    assert words in capsys.readouterr().err


def test_a_config_the_user_names_through_a_symlink_is_read(tmp_path, capsys):
    real = tmp_path / "real.yaml"
    real.write_text(DEMO.read_text())
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert main(["validate", str(link)]) == 0, capsys.readouterr().err
