"""The catalog: the bundled snapshot loads, and bad rows are rejected naming file, row and field."""

from __future__ import annotations

from datetime import date

import pytest

from orchestrator.cost.catalog import BUNDLED_INSTANCES, INSTANCE_COLUMNS, load_catalog, read_accelerators
from orchestrator.errors import InputError
from tests.cost.conftest import gpu_row, instance_row

# Published on-demand us-east-1 Linux prices the snapshot must carry (see data/SOURCES.md).
PUBLISHED_USD_PER_HOUR = {
    "c7i.large": 0.08925,
    "c7i.xlarge": 0.1785,
    "c7i.2xlarge": 0.357,
    "c7i.4xlarge": 0.714,
    "c7g.xlarge": 0.145,
    "c7g.2xlarge": 0.289,
    "m7i.xlarge": 0.2016,
    "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g6.xlarge": 0.8048,
    "g6e.xlarge": 1.861,
    "p4d.24xlarge": 21.96,
    "p5.48xlarge": 55.04,
    "inf2.xlarge": 0.7582,
}


def test_bundled_snapshot_has_every_required_instance_at_its_published_price():
    catalog = load_catalog()
    prices = {i.instance_type: i.on_demand_usd_per_hour for i in catalog.instances}
    assert prices == PUBLISHED_USD_PER_HOUR
    assert catalog.region == "us-east-1"
    assert catalog.as_of == date(2025, 7, 1)
    assert catalog.path.name == "aws_instances.csv"


def test_bundled_snapshot_shapes_and_accelerators():
    catalog = load_catalog()
    p5 = catalog.get("p5.48xlarge")
    assert (p5.accelerator, p5.accelerator_count, p5.accelerator_memory_gib, p5.vcpus) == ("H100", 8, 80, 192)
    assert catalog.get("g4dn.xlarge").accelerator_memory_gib == 16
    assert catalog.get("c7g.xlarge").cpu_arch == "arm64"
    assert catalog.get("c7i.large").accelerator is None
    for name in ("T4", "A10G", "L4", "L40S", "A100-40GB", "H100"):
        spec = catalog.accelerators[name]
        assert spec.runtime == "cuda" and spec.source.startswith("https://")
        assert spec.peak_int8_tops > spec.peak_fp16_tflops > spec.peak_fp32_tflops
    assert catalog.accelerators["Inferentia2"].runtime == "neuron"
    assert catalog.accelerators["H100"].memory_bandwidth_gbps == 3350


def test_bundled_is_an_alias_for_the_snapshot():
    assert load_catalog("bundled").path == load_catalog().path == BUNDLED_INSTANCES


def test_to_frame_has_one_row_per_instance_and_the_csv_columns():
    catalog = load_catalog(instance_filter=["c7i.*", "g5.xlarge"])
    frame = catalog.to_frame()
    assert list(frame.columns) == list(INSTANCE_COLUMNS)
    assert sorted(frame["instance_type"]) == ["c7i.2xlarge", "c7i.4xlarge", "c7i.large", "c7i.xlarge", "g5.xlarge"]
    assert frame.loc[frame.instance_type == "c7i.xlarge", "on_demand_usd_per_hour"].item() == 0.1785


def test_negative_price_names_file_row_and_field(write_catalog):
    path = write_catalog([instance_row("c7i.large", 0.08925), instance_row("c7i.xlarge", -0.1785)])
    with pytest.raises(InputError) as err:
        load_catalog(path)
    message = str(err.value)
    assert str(path) in message
    assert "row 2 (line 3)" in message and "'c7i.xlarge'" in message
    assert "field 'on_demand_usd_per_hour'" in message and "greater than 0" in message


def test_missing_column_names_it_and_suggests_the_misspelt_one(write_catalog):
    rows = [dict(instance_row("c7i.large", 0.08925), on_demand_usd_per_hr=0.08925)]
    columns = [c if c != "on_demand_usd_per_hour" else "on_demand_usd_per_hr" for c in INSTANCE_COLUMNS]
    path = write_catalog(rows, columns=columns)
    with pytest.raises(InputError) as err:
        load_catalog(path)
    message = str(err.value)
    assert str(path) in message and "line 1 (header)" in message
    assert "missing column(s) 'on_demand_usd_per_hour'" in message
    assert "did you mean 'on_demand_usd_per_hr'" in message


def test_empty_required_cell_is_named(write_catalog):
    path = write_catalog([instance_row("c7i.large", 0.08925, vcpus="")])
    with pytest.raises(InputError, match=r"row 1 \(line 2\) instance_type 'c7i.large': field 'vcpus': is empty"):
        load_catalog(path)


def test_unknown_accelerator_is_rejected_with_a_suggestion(write_catalog):
    path = write_catalog([instance_row("c7i.large", 0.08925), gpu_row("g5.xlarge", 1.006, "A10", 24)])
    with pytest.raises(InputError) as err:
        load_catalog(path)
    message = str(err.value)
    assert str(path) in message and "row 2" in message
    assert "field 'accelerator': unknown accelerator 'A10'" in message and "did you mean 'A10G'" in message


def test_accelerator_without_count_is_rejected(write_catalog):
    path = write_catalog([instance_row("g5.xlarge", 1.006, accelerator="A10G", accelerator_memory_gib=24)])
    with pytest.raises(InputError, match="accelerator_count must be at least 1"):
        load_catalog(path)


def test_duplicate_instance_in_a_region_is_rejected(write_catalog):
    path = write_catalog([instance_row("c7i.large", 0.08925), instance_row("c7i.large", 0.09)])
    with pytest.raises(InputError, match=r"row 2 .*listed twice for region 'us-east-1'"):
        load_catalog(path)


def test_region_selects_rows_and_as_of_is_the_oldest(write_catalog):
    path = write_catalog(
        [
            instance_row("c7i.large", 0.08925, as_of="2025-07-01"),
            instance_row("c7i.xlarge", 0.1785, as_of="2025-05-01"),
            instance_row("c7i.large", 0.0941, region="eu-west-1", as_of="2025-08-01"),
        ]
    )
    europe = load_catalog(path, region="eu-west-1")
    assert [(i.instance_type, i.on_demand_usd_per_hour) for i in europe.instances] == [("c7i.large", 0.0941)]
    assert europe.as_of == date(2025, 8, 1)
    assert load_catalog(path).as_of == date(2025, 5, 1)


def test_unknown_region_suggests_the_near_miss():
    with pytest.raises(InputError, match=r"region 'us-eas-1' is not in catalog .*did you mean 'us-east-1'"):
        load_catalog(region="us-eas-1")


def test_real_region_missing_from_the_snapshot_points_at_refresh():
    with pytest.raises(InputError, match=r"hedgerow prices refresh --region eu-west-1"):
        load_catalog(region="eu-west-1")


def test_instance_filter_keeps_glob_matches():
    catalog = load_catalog(instance_filter=["g*.xlarge"])
    assert [i.instance_type for i in catalog.instances] == ["g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.xlarge"]


def test_instance_filter_matching_nothing_names_the_config_field():
    with pytest.raises(InputError) as err:
        load_catalog(instance_filter=["c7i.*", "g5.xlarg"])
    message = str(err.value)
    assert message.startswith("deployment.instance_filter: pattern 'g5.xlarg' matches no instance type")
    assert "did you mean 'g5.xlarge'" in message


def test_empty_instance_filter_is_rejected():
    with pytest.raises(InputError, match="deployment.instance_filter: expected a non-empty list"):
        load_catalog(instance_filter=[])


def test_unknown_instance_type_lookup_suggests():
    with pytest.raises(InputError, match=r"unknown instance type 'c7i.larg'.*did you mean 'c7i.large'"):
        load_catalog().get("c7i.larg")


def test_missing_catalog_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"catalog file .*nope.csv does not exist"):
        load_catalog(tmp_path / "nope.csv")


def test_accelerator_table_rejects_a_negative_bandwidth(tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text(
        "accelerator,vendor,runtime,peak_fp32_tflops,peak_fp16_tflops,peak_int8_tops,memory_bandwidth_gbps,memory_gib,source\n"
        "T4,NVIDIA,cuda,8.1,65,130,-300,16,datasheet\n"
    )
    with pytest.raises(InputError, match=r"acc.csv, row 1 \(line 2\) accelerator 'T4': field 'memory_bandwidth_gbps'"):
        read_accelerators(path)


def test_a_row_whose_cores_times_threads_is_not_its_vcpus_exits_2_naming_the_fields(write_catalog, capsys):
    from orchestrator.cli import main

    path = write_catalog([instance_row("c7i.xlarge", 0.1785, physical_cores=4, threads_per_core=2)])
    assert main(["prices", "show", "--catalog", str(path)]) == 2
    err = capsys.readouterr().err
    assert "instance_type 'c7i.xlarge'" in err
    assert "'physical_cores' × 'threads_per_core' (4 × 2 = 8) must equal 'vcpus' (4)" in err


def test_the_bundled_catalog_has_two_threads_per_core_on_x86_and_one_on_graviton():
    catalog = load_catalog()
    for inst in catalog.instances:
        assert inst.physical_cores * inst.threads_per_core == inst.vcpus
        assert inst.threads_per_core == (1 if inst.cpu_arch == "arm64" else 2), inst.instance_type


def test_prices_show_prints_cores_and_threads_per_core(capsys):
    from orchestrator.cli import main

    assert main(["prices", "show", "--instance-types", "c7i.large,c7g.xlarge"]) == 0
    out = capsys.readouterr().out
    assert "physical_cores" in out and "threads_per_core" in out
