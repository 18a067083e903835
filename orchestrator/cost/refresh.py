"""Rebuild the instance catalog from the AWS Pricing API and EC2 describe_instance_types.

Credentials come from the standard boto3 chain and are never printed. Every call is
retried on throttling (botocore's adaptive mode on real clients, plus our own backoff so
stubbed and exhausted throttles behave the same). The CSV is written to a temporary file,
loaded back through the catalog's own checks, then renamed over the target: a failure
leaves nothing half-written.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

from orchestrator.cost.projection import num
from orchestrator.cost.catalog import (
    BUNDLED_INSTANCES,
    INSTANCE_COLUMNS,
    AcceleratorSpec,
    did_you_mean,
    known_aws_regions,
    read_accelerators,
    read_instances,
)
from orchestrator.errors import InputError
from orchestrator.safe_files import atomic_target

SOURCE = "aws-pricing-api"
PRICING_REGION = "us-east-1"  # the Pricing API answers from us-east-1 for every region's prices
MAX_ATTEMPTS = 6
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled"}
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
_NAME = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+$")
log = logging.getLogger(__name__)


class RefreshError(RuntimeError):
    """AWS could not be read (credentials, permissions, throttling, network); exit status 1."""


def make_clients(region: str) -> tuple[Any, Any]:
    """Real (pricing, ec2) boto3 clients with adaptive retries; pricing is always in us-east-1."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "total_max_attempts": 10})
    return (
        boto3.client("pricing", region_name=PRICING_REGION, config=config),
        boto3.client("ec2", region_name=region, config=config),
    )


def _call(method: Callable[..., dict], sleep: Callable[[float], None], **kwargs: Any) -> dict:
    """One API call, retried with exponential backoff while AWS throttles it."""
    from botocore.exceptions import ClientError

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return method(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in THROTTLING_CODES or attempt == MAX_ATTEMPTS:
                raise
            sleep(min(20.0, 0.5 * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # the loop returns or raises


def _pages(method: Callable[..., dict], sleep: Callable[[float], None], **kwargs: Any) -> Iterator[dict]:
    """Every page of a NextToken-paginated call."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = _call(method, sleep, **kwargs, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken") or None
        if token is None or token in seen:
            return
        seen.add(token)


def parse_price_item(raw: str) -> tuple[str, float] | None:
    """(instance_type, on-demand $/h) from one PriceList JSON string, or None if it is not one."""
    item = json.loads(raw)
    attrs = item.get("product", {}).get("attributes", {})
    if attrs.get("marketoption", "OnDemand") != "OnDemand" or attrs.get("operation", "RunInstances") != "RunInstances":
        return None
    if attrs.get("licenseModel", "No License required") != "No License required" or "instanceType" not in attrs:
        return None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = float(dimension.get("pricePerUnit", {}).get("USD", "0"))
            if dimension.get("unit") in ("Hrs", "Hours") and usd > 0:
                return attrs["instanceType"], usd
    return None


def fetch_on_demand_usd_per_hour(
    pricing: Any, region: str, instance_type: str, sleep: Callable[[float], None] = time.sleep
) -> list[float]:
    """Every on-demand Linux/shared/no-software $/h the Pricing API lists for one instance type."""
    filters = {
        "regionCode": region,
        "instanceType": instance_type,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    prices: list[float] = []
    for page in _pages(
        pricing.get_products,
        sleep,
        ServiceCode="AmazonEC2",
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
        FormatVersion="aws_v1",
        MaxResults=100,
    ):
        for raw in page.get("PriceList", []):
            parsed = parse_price_item(raw)
            if parsed is not None and parsed[0] == instance_type:
                prices.append(parsed[1])
    return prices


def describe_instance_types(ec2: Any, names: list[str], sleep: Callable[[float], None] = time.sleep) -> dict[str, dict]:
    """describe_instance_types output keyed by instance type (100 names per request, every page)."""
    described: dict[str, dict] = {}
    for start in range(0, len(names), 100):
        for page in _pages(ec2.describe_instance_types, sleep, InstanceTypes=names[start : start + 100]):
            for item in page.get("InstanceTypes", []):
                described[item["InstanceType"]] = item
    return described


def _accelerator(item: dict, known: dict[str, AcceleratorSpec]) -> tuple[str | None, int, float] | str:
    """(catalog accelerator key, count, GiB per device) of an EC2 description, or why it is skipped."""
    devices = item.get("GpuInfo", {}).get("Gpus") or item.get("NeuronInfo", {}).get("NeuronDevices")
    devices = devices or item.get("InferenceAcceleratorInfo", {}).get("Accelerators")
    if not devices:
        return None, 0, 0.0
    if len(devices) > 1:
        return "several kinds of accelerator on one instance"
    device = devices[0]
    name, mib = str(device.get("Name", "")), int(device.get("MemoryInfo", {}).get("SizeInMiB", 0))
    key = {"A100": "A100-40GB" if mib <= 48 * 1024 else "A100-80GB"}.get(name, name)
    if key not in known:
        return f"accelerator {name} ({mib} MiB) is not in the accelerator spec table aws_accelerators.csv"
    return key, int(device.get("Count", 0)), mib / 1024


def _shape(item: dict, region: str, known: dict[str, AcceleratorSpec]) -> dict | str:
    """The catalog CSV cells (strings) an EC2 description gives, or why the instance is skipped."""
    arches = item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    cpu_arch = "arm64" if "arm64" in arches else "x86_64" if "x86_64" in arches else None
    if cpu_arch is None:
        return f"architecture {arches} is neither x86_64 nor arm64"
    accelerator = _accelerator(item, known)
    if isinstance(accelerator, str):
        return accelerator
    key, count, gib = accelerator
    return {
        "instance_type": item["InstanceType"],
        "region": region,
        "accelerator": key or "",
        "accelerator_count": str(count),
        "accelerator_memory_gib": num(gib),
        "vcpus": str(item["VCpuInfo"]["DefaultVCpus"]),
        "physical_cores": str(item["VCpuInfo"]["DefaultCores"]),
        "threads_per_core": str(item["VCpuInfo"]["DefaultThreadsPerCore"]),
        "memory_gib": num(item["MemoryInfo"]["SizeInMiB"] / 1024),
        "cpu_arch": cpu_arch,
    }


def _instance_names(instance_types: list[str] | None) -> list[str]:
    """The names asked for, checked; by default those of the bundled snapshot."""
    if instance_types is None:
        with BUNDLED_INSTANCES.open(newline="", encoding="utf-8") as fh:
            return list(dict.fromkeys(row["instance_type"] for row in csv.DictReader(fh)))
    names = list(dict.fromkeys(n.strip() for n in instance_types if n.strip()))
    bad = [n for n in names if not _NAME.match(n)]
    if not names or bad:
        raise InputError(
            f"--instance-types: expected names such as c7i.large,g5.xlarge, got {', '.join(map(repr, bad)) or 'none'}"
        )
    return names


def _write_atomically(rows: list[dict], out_path: Path, known: dict[str, AcceleratorSpec]) -> None:
    """Write the CSV beside out_path, load it back through the catalog checks, then rename it into place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(INSTANCE_COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        read_instances(tmp, known)


def _aws_failure(exc: Exception, requested: list[str]) -> Exception:
    """Translate a botocore failure into a message that says what to do (no secrets in it)."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return RefreshError(
            "no AWS credentials found through the standard boto3 chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance or task role)"
        )
    if not isinstance(exc, ClientError):
        return RefreshError(f"could not reach AWS: {exc}")
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", "")
    if code in DENIED_CODES:
        return RefreshError(
            f"AWS refused {exc.operation_name} ({code}: {message}); the credentials need "
            "pricing:GetProducts and ec2:DescribeInstanceTypes"
        )
    if code == "InvalidInstanceType":
        bundled = _instance_names(None)
        hints = "".join(did_you_mean(n, bundled) for n in requested if n not in bundled)
        return InputError(f"--instance-types: {message}{hints}")
    if code in THROTTLING_CODES:
        return RefreshError(f"AWS kept throttling {exc.operation_name} after {MAX_ATTEMPTS} attempts; try again later")
    return RefreshError(f"{exc.operation_name} failed: {code}: {message}")


def refresh_catalog(
    region: str,
    out_path: str | Path,
    instance_types: list[str] | None = None,
    pricing_client: Any | None = None,
    ec2_client: Any | None = None,
    *,
    as_of: date | None = None,
    sleep: Callable[[float], None] = time.sleep,
    notify: Callable[[str], None] = log.warning,
) -> Path:
    """Write a catalog CSV for region from the AWS APIs (default: the bundled snapshot's instance types)."""
    from botocore.exceptions import BotoCoreError, ClientError

    regions = known_aws_regions()
    if region not in regions:
        raise InputError(
            f"--region: {region!r} is not an AWS region botocore knows{did_you_mean(region, regions)} "
            "(expected a region code such as us-east-1)"
        )
    names = _instance_names(instance_types)
    known = read_accelerators()
    if pricing_client is None or ec2_client is None:
        default_pricing, default_ec2 = make_clients(region)
        pricing_client, ec2_client = pricing_client or default_pricing, ec2_client or default_ec2
    rows: list[dict] = []
    try:
        described = describe_instance_types(ec2_client, names, sleep)
        for name in names:
            if name not in described:
                notify(f"skipped {name}: describe_instance_types did not return it in {region}")
                continue
            shape = _shape(described[name], region, known)
            if isinstance(shape, str):
                notify(f"skipped {name}: {shape}")
                continue
            prices = fetch_on_demand_usd_per_hour(pricing_client, region, name, sleep)
            if not prices:
                notify(f"skipped {name}: no on-demand Linux price in {region} (not offered there?)")
                continue
            if len(set(prices)) > 1:
                notify(f"{name}: several on-demand prices {sorted(set(prices))}; kept the highest")
            rows.append(
                {
                    **shape,
                    "on_demand_usd_per_hour": num(max(prices)),
                    "spot_usd_per_hour": "",
                    "source": SOURCE,
                    "as_of": (as_of or date.today()).isoformat(),
                }
            )
    except (ClientError, BotoCoreError) as exc:
        raise _aws_failure(exc, names) from exc
    if not rows:
        raise RefreshError(f"nothing to write for {region}: every instance type asked for was skipped")
    out = Path(out_path)
    _write_atomically(rows, out, known)
    return out
