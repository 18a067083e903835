"""The instance catalog: a dated CSV snapshot of instance types and prices, checked row by row.

Catalogs are data: one CSV of instance types (prices per hour, never totals) and one of
accelerator specs. Every row becomes a typed record whose field names carry their units;
cost is computed elsewhere (`orchestrator.cost.model`) from price x hours x replicas.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal, Sequence, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import InputError, UnsafeFile
from orchestrator.safe_files import MAX_TABLE_BYTES, check_regular_file

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_INSTANCES = DATA_DIR / "aws_instances.csv"
BUNDLED_ACCELERATORS = DATA_DIR / "aws_accelerators.csv"
BUNDLED_ARCH_FACTORS = DATA_DIR / "cpu_arch_factors.csv"
INSTANCE_FILTER_FIELD = "deployment.instance_filter"
BUNDLED = "bundled"  # what a config writes to mean the snapshot shipped with Hedgerow
GIB_BYTES = 2**30


class AcceleratorSpec(BaseModel):
    """Vendor datasheet figures of one accelerator (dense peaks, no sparsity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    runtime: Literal["cuda", "neuron"]
    peak_fp32_tflops: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    peak_fp16_tflops: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    peak_int8_tops: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    memory_bandwidth_gbps: float = Field(gt=0, allow_inf_nan=False)
    memory_gib: float = Field(gt=0, allow_inf_nan=False)
    source: str = Field(min_length=1)


class InstanceType(BaseModel):
    """One instance type in one region; accelerator_memory_gib is per accelerator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_type: str = Field(pattern=r"^[a-z0-9-]+\.[a-z0-9-]+$")
    region: str = Field(min_length=1)
    accelerator: str | None = None
    accelerator_count: int = Field(default=0, ge=0)
    accelerator_memory_gib: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    vcpus: int = Field(gt=0)
    physical_cores: int = Field(gt=0, description="DescribeInstanceTypes VCpuInfo.DefaultCores")
    threads_per_core: int = Field(ge=1, le=8, description="VCpuInfo.DefaultThreadsPerCore: 2 on x86 (SMT), 1 on Graviton")
    memory_gib: float = Field(gt=0, allow_inf_nan=False)
    on_demand_usd_per_hour: float = Field(gt=0, allow_inf_nan=False)
    spot_usd_per_hour: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cpu_arch: Literal["x86_64", "arm64"]
    source: str = Field(min_length=1)
    as_of: date

    @model_validator(mode="after")
    def _accelerator_fields_agree(self) -> "InstanceType":
        if self.accelerator is not None and self.accelerator_count < 1:
            raise ValueError("accelerator_count must be at least 1 when accelerator is set")
        if self.accelerator is not None and self.accelerator_memory_gib <= 0:
            raise ValueError("accelerator_memory_gib must be above 0 when accelerator is set")
        if self.accelerator is None and (self.accelerator_count or self.accelerator_memory_gib):
            raise ValueError("accelerator is empty but accelerator_count/accelerator_memory_gib are not 0")
        if self.physical_cores * self.threads_per_core != self.vcpus:
            raise ValueError(
                f"fields 'physical_cores' × 'threads_per_core' ({self.physical_cores} × {self.threads_per_core} = "
                f"{self.physical_cores * self.threads_per_core}) must equal 'vcpus' ({self.vcpus})"
            )
        return self


CpuArch = Literal["x86_64", "arm64"]
Precision = Literal["fp32", "bf16", "fp16", "int8", "int8-weight-only", "int4-weight-only", "any"]
ANY = "any"


class ArchFactor(BaseModel):
    """Per-core throughput on to_arch over one measured thread on from_arch, with its range and its source.

    runtime and precision may be "any"; the most specific row applies (`find_arch_factor`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_arch: CpuArch
    to_arch: CpuArch
    runtime: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    precision: Precision
    factor: float = Field(gt=0, allow_inf_nan=False)
    factor_low: float = Field(gt=0, allow_inf_nan=False)
    factor_high: float = Field(gt=0, allow_inf_nan=False)
    source: str = Field(min_length=1)
    published: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$", description="the source's date")
    note: str | None = None
    as_of: date

    @model_validator(mode="after")
    def _range_holds_factor(self) -> "ArchFactor":
        if self.from_arch == self.to_arch:
            raise ValueError(f"fields 'from_arch' and 'to_arch' are both {self.from_arch!r}: a factor is across two architectures")
        if not self.factor_low <= self.factor <= self.factor_high:
            raise ValueError(
                f"field 'factor': {self.factor:g} must lie within [factor_low, factor_high] = "
                f"[{self.factor_low:g}, {self.factor_high:g}]"
            )
        return self

    def inverted(self) -> "ArchFactor":
        """The same measurement read the other way: to_arch -> from_arch, 1/factor, range [1/high, 1/low]."""
        return self.model_copy(
            update=dict(
                from_arch=self.to_arch, to_arch=self.from_arch, factor=1 / self.factor,
                factor_low=1 / self.factor_high, factor_high=1 / self.factor_low,
            )
        )  # fmt: skip


INSTANCE_COLUMNS: tuple[str, ...] = tuple(InstanceType.model_fields)
ARCH_FACTOR_COLUMNS: tuple[str, ...] = tuple(ArchFactor.model_fields)
ACCELERATOR_COLUMNS: tuple[str, ...] = tuple(AcceleratorSpec.model_fields)

Row = TypeVar("Row", bound=BaseModel)


@dataclass(frozen=True)
class Catalog:
    """Instance types of one region with their accelerator specs; as_of is the oldest row's date."""

    path: Path
    region: str
    as_of: date
    instances: list[InstanceType]
    accelerators: dict[str, AcceleratorSpec] = field(default_factory=dict)
    arch_factors: list[ArchFactor] = field(default_factory=list)  # empty: across CPU architectures, 1:1 and no range

    def to_frame(self) -> pd.DataFrame:
        """The instances as a DataFrame, one row per instance type, columns as in the CSV."""
        return pd.DataFrame([i.model_dump() for i in self.instances], columns=list(INSTANCE_COLUMNS))

    def get(self, instance_type: str) -> InstanceType:
        """The row of one instance type; an unknown name is an InputError with a suggestion."""
        for inst in self.instances:
            if inst.instance_type == instance_type:
                return inst
        names = [i.instance_type for i in self.instances]
        raise InputError(
            f"unknown instance type {instance_type!r} in catalog {self.path} (region {self.region})"
            f"{did_you_mean(instance_type, names)}"
        )


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """A ' (did you mean ...?)' suffix naming the near misses of word, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _read_rows(path: Path, columns: Sequence[str], model: type[Row], key: str) -> list[Row]:
    """Read a catalog CSV strictly: exact header, every row validated, errors name row and field."""
    if not path.is_file():
        raise InputError(f"catalog file {path} does not exist (expected a CSV with columns {', '.join(columns)})")
    check_regular_file(path, MAX_TABLE_BYTES, f"catalog file {path}", allow_symlink=True)
    try:
        return _parse_rows(path, columns, model, key)
    except UnicodeDecodeError:
        raise UnsafeFile(f"catalog file {path}: not UTF-8 text (expected a CSV with columns {', '.join(columns)})") from None
    except csv.Error as exc:
        raise UnsafeFile(f"catalog file {path}: not a readable CSV ({exc})") from None


def _parse_rows(path: Path, columns: Sequence[str], model: type[Row], key: str) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in columns if c not in header]
        extra = [h for h in header if h not in columns]
        if missing:
            hints = "".join(did_you_mean(m, extra) for m in missing)
            raise InputError(
                f"{path}, line 1 (header): missing column(s) {', '.join(repr(m) for m in missing)}{hints} "
                f"(expected columns: {', '.join(columns)})"
            )
        if extra:
            raise InputError(
                f"{path}, line 1 (header): unknown column(s) {', '.join(repr(e) for e in extra)} "
                f"(expected columns: {', '.join(columns)})"
            )
        rows: list[Row] = []
        for number, raw in enumerate(reader, start=1):
            where = f"{path}, row {number} (line {reader.line_num})"
            if None in raw:
                raise InputError(f"{where}: more cells than the header's {len(header)} columns")
            cells = {k.strip(): (v or "").strip() for k, v in raw.items()}
            name = cells.get(key, "")
            where += f" {key} {name!r}" if name else ""
            try:
                rows.append(model.model_validate({k: v for k, v in cells.items() if v != ""}))
            except ValidationError as exc:
                raise InputError(f"{where}: {_describe(exc)}") from None
    if not rows:
        raise InputError(f"{path}: no rows under the header (expected one row per {key})")
    return rows


def _describe(exc: ValidationError) -> str:
    """The first validation error as 'field NAME: what is expected (got VALUE)'."""
    err = exc.errors()[0]
    if not err["loc"]:
        return str(err["msg"]).removeprefix("Value error, ")
    name = err["loc"][0]
    if err["type"] == "missing":
        return f"field {name!r}: is empty; a value is required"
    return f"field {name!r}: {err['msg']} (got {err.get('input')!r})"


def read_accelerators(path: str | Path | None = None) -> dict[str, AcceleratorSpec]:
    """Load and check the accelerator spec table; the bundled one by default."""
    table = Path(path) if path is not None else BUNDLED_ACCELERATORS
    specs: dict[str, AcceleratorSpec] = {}
    for number, spec in enumerate(_read_rows(table, ACCELERATOR_COLUMNS, AcceleratorSpec, "accelerator"), 1):
        if spec.accelerator in specs:
            raise InputError(f"{table}, row {number}: field 'accelerator': {spec.accelerator!r} appears twice")
        specs[spec.accelerator] = spec
    return specs


def read_arch_factors(path: str | Path | None = None) -> list[ArchFactor]:
    """Load and check the per-core factors across CPU architectures; the bundled table by default.

    A (from_arch, to_arch, runtime, precision) listed twice, or listed both ways, is an InputError naming the row.
    """
    table = Path(path) if path is not None else BUNDLED_ARCH_FACTORS
    rows = _read_rows(table, ARCH_FACTOR_COLUMNS, ArchFactor, "from_arch")
    seen: dict[tuple[str, str, str, str], int] = {}
    for number, row in enumerate(rows, start=1):
        key = (row.from_arch, row.to_arch, row.runtime, row.precision)
        reverse = (row.to_arch, row.from_arch, row.runtime, row.precision)
        where = f"{table}, row {number} (line {number + 1})"
        if key in seen:
            raise InputError(f"{where}: fields 'from_arch', 'to_arch', 'runtime', 'precision': {key} repeats row {seen[key]}")
        if reverse in seen:
            raise InputError(
                f"{where}: fields 'from_arch', 'to_arch': row {seen[reverse]} already gives {reverse}; "
                "the reverse direction is that row inverted, so list one direction only"
            )
        seen[key] = number
    return rows


def find_arch_factor(
    factors: Sequence[ArchFactor], from_arch: str, to_arch: str, runtime: str | None, precision: str
) -> ArchFactor | None:
    """The most specific row for a move across architectures (a reverse row inverted), or None where none applies.

    Tried in order: (runtime, precision), (any, precision), (runtime, any), (any, any).
    """
    for want_runtime, want_precision in ((runtime, precision), (ANY, precision), (runtime, ANY), (ANY, ANY)):
        if want_runtime is None:
            continue
        for row in factors:
            if (row.runtime, row.precision) != (want_runtime, want_precision):
                continue
            if (row.from_arch, row.to_arch) == (from_arch, to_arch):
                return row
            if (row.from_arch, row.to_arch) == (to_arch, from_arch):
                return row.inverted()
    return None


def read_instances(path: str | Path, accelerators: dict[str, AcceleratorSpec]) -> list[InstanceType]:
    """Load and check every row of an instance CSV (all regions), accelerators resolved."""
    table = Path(path)
    rows = _read_rows(table, INSTANCE_COLUMNS, InstanceType, "instance_type")
    seen: set[tuple[str, str]] = set()
    for number, inst in enumerate(rows, start=1):
        where = f"{table}, row {number} (line {number + 1}) instance_type {inst.instance_type!r}"
        if inst.accelerator is not None and inst.accelerator not in accelerators:
            raise InputError(
                f"{where}: field 'accelerator': unknown accelerator {inst.accelerator!r}"
                f"{did_you_mean(inst.accelerator, list(accelerators))} "
                f"(expected one of {', '.join(sorted(accelerators))}, or empty for a CPU instance)"
            )
        if (inst.instance_type, inst.region) in seen:
            raise InputError(f"{where}: field 'instance_type': listed twice for region {inst.region!r}")
        seen.add((inst.instance_type, inst.region))
    return rows


def known_aws_regions() -> list[str]:
    """AWS regions botocore knows offline (for suggestions; nothing is fetched)."""
    import botocore.session

    return list(botocore.session.get_session().get_available_regions("ec2"))


def _apply_filter(rows: list[InstanceType], patterns: Sequence[str], where: str, field_name: str) -> list[InstanceType]:
    """Keep rows matching any glob; a glob that matches nothing is an InputError."""
    names = [r.instance_type for r in rows]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise InputError(
                f"{field_name}: pattern {pattern!r} matches no instance type in {where}"
                f"{did_you_mean(pattern, names)} (expected fnmatch globs such as 'c7i.*' over: {', '.join(names)})"
            )
    return [r for r in rows if any(fnmatch.fnmatchcase(r.instance_type, p) for p in patterns)]


def load_catalog(
    path: str | Path | None = None,
    region: str = "us-east-1",
    instance_filter: list[str] | None = None,
    accelerators_path: str | Path | None = None,
    filter_field: str = INSTANCE_FILTER_FIELD,
    arch_factors_path: str | Path | None = None,
) -> Catalog:
    """Load a catalog (the bundled snapshot for None or "bundled") for one region, optionally filtered by globs.

    The per-core factors across CPU architectures come with it (the bundled table unless arch_factors_path).
    """
    table = BUNDLED_INSTANCES if path is None or str(path) == BUNDLED else Path(path)
    accelerators = read_accelerators(accelerators_path)
    rows = read_instances(table, accelerators)
    regions = sorted({r.region for r in rows})
    in_region = [r for r in rows if r.region == region]
    if not in_region:
        if region in known_aws_regions():
            hint = f"; run `hedgerow prices refresh --region {region} --out FILE` and name FILE as the catalog"
        else:
            hint = did_you_mean(region, regions) or did_you_mean(region, known_aws_regions())
        raise InputError(f"region {region!r} is not in catalog {table} (it holds {', '.join(regions)}){hint}")
    if instance_filter is not None:
        if isinstance(instance_filter, str) or not instance_filter:
            raise InputError(f"{filter_field}: expected a non-empty list of globs such as ['c7i.*', 'g5.*']")
        in_region = _apply_filter(in_region, instance_filter, f"{table} ({region})", filter_field)
    return Catalog(
        path=table,
        region=region,
        as_of=min(r.as_of for r in in_region),
        instances=in_region,
        accelerators=accelerators,
        arch_factors=read_arch_factors(arch_factors_path),
    )
