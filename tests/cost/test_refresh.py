"""`refresh_catalog` against botocore's Stubber: real clients, canned responses, no network.

The fixtures mirror the shapes the real APIs return (PriceList entries are JSON strings;
describe_instance_types items carry GpuInfo / NeuronInfo). They were written by hand, not
recorded from a live account; Stubber checks every one against botocore's service model,
so a response that the real API could not send fails the test.
"""

from __future__ import annotations

import copy
import csv
import json
from datetime import date
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from orchestrator.cost.catalog import BUNDLED_INSTANCES, INSTANCE_COLUMNS, load_catalog
from orchestrator.cost.refresh import MAX_ATTEMPTS, RefreshError, make_clients, parse_price_item, refresh_catalog
from orchestrator.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
ASKED = ["c7i.large", "c7g.xlarge", "g5.xlarge", "p5.48xlarge", "inf2.xlarge", "g4ad.xlarge"]
PRICED = ["c7i.large", "c7g.xlarge", "g5.xlarge", "p5.48xlarge", "inf2.xlarge"]  # g4ad: AMD GPU, skipped
AS_OF = date(2026, 11, 1)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def product_filters(instance_type: str) -> list[dict]:
    fields = {
        "regionCode": "us-east-1",
        "instanceType": instance_type,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()]


@pytest.fixture
def clients():
    kwargs = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    pricing, ec2 = boto3.client("pricing", **kwargs), boto3.client("ec2", **kwargs)
    with Stubber(pricing) as pricing_stub, Stubber(ec2) as ec2_stub:
        yield pricing, ec2, pricing_stub, ec2_stub
        pricing_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()


def stub_describe(ec2_stub: Stubber, throttle_once: bool = True) -> None:
    """Two describe_instance_types pages; EC2 throttles (RequestLimitExceeded) the second once."""
    first, second = load_fixture("ec2_describe_instance_types.json")["pages"]
    ec2_stub.add_response("describe_instance_types", first, {"InstanceTypes": ASKED})
    if throttle_once:
        ec2_stub.add_client_error(
            "describe_instance_types",
            "RequestLimitExceeded",
            "Request limit exceeded.",
            503,
            expected_params={"InstanceTypes": ASKED, "NextToken": first["NextToken"]},
        )
    ec2_stub.add_response("describe_instance_types", second, {"InstanceTypes": ASKED, "NextToken": first["NextToken"]})


def stub_prices(pricing_stub: Stubber) -> None:
    """One get_products query per priced type; the first is throttled once, p5 spans two pages."""
    pages = load_fixture("pricing_get_products.json")
    for number, instance_type in enumerate(PRICED):
        params = dict(
            ServiceCode="AmazonEC2", Filters=product_filters(instance_type), FormatVersion="aws_v1", MaxResults=100
        )
        if number == 0:
            pricing_stub.add_client_error(
                "get_products", "ThrottlingException", "Rate exceeded", 400, expected_params=params
            )
        token = None
        for page in pages[instance_type]:
            pricing_stub.add_response("get_products", page, {**params, **({"NextToken": token} if token else {})})
            token = page.get("NextToken")


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_refresh_writes_the_bundled_csv_shape_from_stubbed_responses(clients, tmp_path):
    pricing, ec2, pricing_stub, ec2_stub = clients
    stub_describe(ec2_stub)
    stub_prices(pricing_stub)
    sleeps: list[float] = []
    notes: list[str] = []
    out = refresh_catalog(
        "us-east-1",
        tmp_path / "fresh.csv",
        ASKED,
        pricing_client=pricing,
        ec2_client=ec2,
        as_of=AS_OF,
        sleep=sleeps.append,
        notify=notes.append,
    )
    assert out == tmp_path / "fresh.csv"
    assert sleeps == [0.5, 0.5]  # one EC2 throttle, one Pricing throttle, each retried after backoff
    assert notes == [
        "skipped g4ad.xlarge: accelerator Radeon Pro V520 (8192 MiB) is not in the accelerator spec table aws_accelerators.csv"
    ]

    header, rows = read_rows(out)
    bundled_header, bundled_rows = read_rows(BUNDLED_INSTANCES)
    assert header == bundled_header == list(INSTANCE_COLUMNS)
    assert [r["instance_type"] for r in rows] == PRICED
    assert {r["source"] for r in rows} == {"aws-pricing-api"} and {r["as_of"] for r in rows} == {"2026-11-01"}
    # Every figure but provenance agrees with the bundled snapshot (p5's Capacity Block price is ignored).
    bundled = {r["instance_type"]: r for r in bundled_rows}
    numeric = ["accelerator_count", "accelerator_memory_gib", "vcpus", "physical_cores", "threads_per_core", "memory_gib",
               "on_demand_usd_per_hour"]  # cores and threads per core: VCpuInfo.DefaultCores, DefaultThreadsPerCore
    for row in rows:
        expected = bundled[row["instance_type"]]
        for column in ("instance_type", "region", "accelerator", "spot_usd_per_hour", "cpu_arch"):
            assert row[column] == expected[column], (row["instance_type"], column)
        for column in numeric:
            assert float(row[column]) == float(expected[column]), (row["instance_type"], column)

    catalog = load_catalog(out)
    assert catalog.as_of == AS_OF
    assert catalog.get("p5.48xlarge").on_demand_usd_per_hour == 55.04
    assert catalog.get("inf2.xlarge").accelerator == "Inferentia2"
    assert catalog.get("c7g.xlarge").cpu_arch == "arm64"


def test_access_denied_leaves_the_existing_file_untouched(clients, tmp_path):
    pricing, ec2, pricing_stub, ec2_stub = clients
    stub_describe(ec2_stub, throttle_once=False)
    pricing_stub.add_client_error(
        "get_products", "AccessDeniedException", "User is not authorized to perform: pricing:GetProducts", 400
    )
    out = tmp_path / "catalog.csv"
    out.write_text("the previous catalog\n")
    with pytest.raises(
        RefreshError, match=r"AWS refused GetProducts .*need pricing:GetProducts and ec2:DescribeInstanceTypes"
    ):
        refresh_catalog("us-east-1", out, ASKED, pricing_client=pricing, ec2_client=ec2, sleep=lambda s: None)
    assert out.read_text() == "the previous catalog\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.csv"]  # no temp file left behind


def test_throttling_that_never_stops_gives_up_with_a_clear_error(clients, tmp_path):
    pricing, ec2, _, ec2_stub = clients
    for _ in range(MAX_ATTEMPTS):
        ec2_stub.add_client_error("describe_instance_types", "RequestLimitExceeded", "Request limit exceeded.", 503)
    sleeps: list[float] = []
    with pytest.raises(RefreshError, match=f"kept throttling DescribeInstanceTypes after {MAX_ATTEMPTS} attempts"):
        refresh_catalog(
            "us-east-1", tmp_path / "x.csv", ASKED, pricing_client=pricing, ec2_client=ec2, sleep=sleeps.append
        )
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert not (tmp_path / "x.csv").exists()


def test_unknown_instance_type_is_an_input_error_with_a_suggestion(clients, tmp_path):
    pricing, ec2, _, ec2_stub = clients
    ec2_stub.add_client_error(
        "describe_instance_types",
        "InvalidInstanceType",
        "The following supplied instance types do not exist: [c7i.larg]",
        400,
    )
    with pytest.raises(InputError, match=r"--instance-types: The following .*\[c7i.larg\]; did you mean 'c7i.large'"):
        refresh_catalog("us-east-1", tmp_path / "x.csv", ["c7i.larg"], pricing_client=pricing, ec2_client=ec2)


def test_unknown_region_is_an_input_error_before_any_call(clients, tmp_path):
    pricing, ec2, _, _ = clients  # no stubbed responses: any AWS call would fail the test
    with pytest.raises(InputError, match=r"--region: 'us-eas-1' is not an AWS region .*did you mean 'us-east-1'"):
        refresh_catalog("us-eas-1", tmp_path / "x.csv", pricing_client=pricing, ec2_client=ec2)


def test_nothing_priced_writes_nothing(clients, tmp_path):
    pricing, ec2, pricing_stub, ec2_stub = clients
    first = load_fixture("ec2_describe_instance_types.json")["pages"][0]
    only_c7i = copy.deepcopy(first)
    only_c7i["InstanceTypes"] = only_c7i["InstanceTypes"][:1]
    del only_c7i["NextToken"]
    ec2_stub.add_response("describe_instance_types", only_c7i, {"InstanceTypes": ["c7i.large"]})
    pricing_stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
    notes: list[str] = []
    with pytest.raises(RefreshError, match="nothing to write for us-east-1"):
        refresh_catalog(
            "us-east-1", tmp_path / "x.csv", ["c7i.large"], pricing_client=pricing, ec2_client=ec2, notify=notes.append
        )
    assert notes == ["skipped c7i.large: no on-demand Linux price in us-east-1 (not offered there?)"]
    assert list(tmp_path.iterdir()) == []


def test_parse_price_item_reads_the_on_demand_hourly_usd_only():
    (c7i,) = load_fixture("pricing_get_products.json")["c7i.large"][0]["PriceList"]
    assert parse_price_item(c7i) == ("c7i.large", 0.08925)  # not the Reserved term's lower price
    capacity_block = load_fixture("pricing_get_products.json")["p5.48xlarge"][0]["PriceList"][0]
    assert parse_price_item(capacity_block) is None


def test_default_instance_types_are_the_bundled_ones(clients, tmp_path):
    pricing, ec2, _, ec2_stub = clients
    with BUNDLED_INSTANCES.open(newline="") as fh:
        bundled = [r["instance_type"] for r in csv.DictReader(fh)]
    ec2_stub.add_client_error(
        "describe_instance_types",
        "UnauthorizedOperation",
        "You are not authorized",
        403,
        expected_params={"InstanceTypes": bundled},
    )
    with pytest.raises(RefreshError, match="AWS refused DescribeInstanceTypes"):
        refresh_catalog("us-east-1", tmp_path / "x.csv", pricing_client=pricing, ec2_client=ec2)


def test_real_clients_retry_adaptively_and_price_from_us_east_1():
    pricing, ec2 = make_clients("eu-west-1")
    assert pricing.meta.region_name == "us-east-1" and ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 10}


def test_a_failure_after_writing_removes_the_temp_file_and_keeps_the_old_catalog(clients, tmp_path, monkeypatch):
    pricing, ec2, pricing_stub, ec2_stub = clients
    stub_describe(ec2_stub)
    stub_prices(pricing_stub)
    written: list[Path] = []

    def reject(path, accelerators):
        written.append(Path(path))
        assert Path(path).read_text().startswith(",".join(INSTANCE_COLUMNS))  # fully written, not yet in place
        raise InputError(f"{path}: simulated check failure")

    monkeypatch.setattr("orchestrator.cost.refresh.read_instances", reject)
    out = tmp_path / "catalog.csv"
    out.write_text("the previous catalog\n")
    with pytest.raises(InputError, match="simulated check failure"):
        refresh_catalog(
            "us-east-1", out, ASKED, pricing_client=pricing, ec2_client=ec2, sleep=lambda s: None, notify=lambda m: None
        )
    assert written and written[0].parent == tmp_path and written[0] != out
    assert out.read_text() == "the previous catalog\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.csv"]
