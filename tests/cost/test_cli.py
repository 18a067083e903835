"""`hedgerow prices show|refresh` through orchestrator.cli.main: output and exit statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cost.refresh import RefreshError
from tests.cost.conftest import instance_row


def test_show_prints_the_table_and_its_as_of_date(capsys):
    assert main(["prices", "show"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "region us-east-1" in first and "as of 2025-07-01" in first and "15 instance types" in first
    c7i = next(line for line in out.splitlines() if line.split()[:1] == ["c7i.xlarge"])
    assert "0.1785" in c7i
    assert "p5.48xlarge" in out and "H100" in out


def test_show_filters_instance_types(capsys):
    assert main(["prices", "show", "--instance-types", "g5.*"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert sorted(line.split()[0] for line in rows if line.strip() and not line.startswith("note:")) == [
        "g5.2xlarge",
        "g5.xlarge",
    ]


def test_show_bad_region_exits_2_with_a_suggestion(capsys):
    assert main(["prices", "show", "--region", "us-eas-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hedgerow prices: error: region 'us-eas-1'") and "did you mean 'us-east-1'?" in err


def test_show_a_named_catalog_and_region(write_catalog, capsys):
    path = write_catalog([instance_row("c7i.large", 0.0941, region="eu-west-1", as_of="2026-11-01")])
    assert main(["prices", "show", "--catalog", str(path), "--region", "eu-west-1"]) == 0
    out = capsys.readouterr().out
    assert f"catalog {path}" in out and "as of 2026-11-01" in out and "0.0941" in out


def test_show_a_bad_catalog_exits_2_naming_row_and_field(write_catalog, capsys):
    path = write_catalog([instance_row("c7i.large", -1)])
    assert main(["prices", "show", "--catalog", str(path)]) == 2
    assert "row 1 (line 2) instance_type 'c7i.large': field 'on_demand_usd_per_hour'" in capsys.readouterr().err


def test_show_filter_matching_nothing_names_the_option(capsys):
    assert main(["prices", "show", "--instance-types", "x9.*"]) == 2
    assert "--instance-types: pattern 'x9.*' matches no instance type" in capsys.readouterr().err


def test_refresh_bad_region_exits_2_before_calling_aws(capsys):
    assert main(["prices", "refresh", "--region", "us-eas-1"]) == 2
    assert "did you mean 'us-east-1'" in capsys.readouterr().err


def test_refresh_passes_its_arguments_and_prints_the_file(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_refresh(region, out_path, instance_types=None, **kwargs):
        calls.append((region, Path(out_path), instance_types))
        return Path(out_path)

    monkeypatch.setattr("orchestrator.cost.refresh.refresh_catalog", fake_refresh)
    monkeypatch.chdir(tmp_path)
    assert main(["prices", "refresh", "--region", "eu-west-1", "--instance-types", "c7i.large, g5.xlarge"]) == 0
    assert calls == [("eu-west-1", Path("aws_instances_eu-west-1.csv"), ["c7i.large", "g5.xlarge"])]
    assert capsys.readouterr().out.splitlines()[-1] == "aws_instances_eu-west-1.csv"


def test_refresh_failure_from_aws_exits_1(monkeypatch, capsys):
    def denied(*args, **kwargs):
        raise RefreshError("AWS refused GetProducts (AccessDeniedException: no)")

    monkeypatch.setattr("orchestrator.cost.refresh.refresh_catalog", denied)
    assert main(["prices", "refresh", "--region", "us-east-1", "--out", "x.csv"]) == 1
    assert "hedgerow prices refresh: error: AWS refused GetProducts" in capsys.readouterr().err


def test_prices_without_an_action_is_a_usage_error(capsys):
    assert main(["prices"]) == 2
    assert "ACTION" in capsys.readouterr().err


# ---- hostile catalogs: each exits 2 naming the file -----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"\xff\xfe\x00\x01" * 100, "not UTF-8"), (b'"' + b"x" * 200_000 + b'"\n', "not a readable CSV"),
     (b"", "missing column")],
    ids=["binary", "a-200-kB-cell", "empty"],
)  # fmt: skip
def test_show_refuses_a_damaged_catalog(content, words, tmp_path, capsys):
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    assert main(["prices", "show", "--catalog", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and words in err


def test_show_refuses_an_oversized_catalog_unread(tmp_path, capsys):
    path = tmp_path / "prices.csv"
    with open(path, "wb") as fh:
        fh.truncate(300 << 20)
    assert main(["prices", "show", "--catalog", str(path)]) == 2
    assert "more than the" in capsys.readouterr().err
