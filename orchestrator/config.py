"""The search config: pydantic schemas, YAML loading with clear errors, JSON Schema export.

Everything is validated up front, before Ray starts: the knobs of the search
space against the recipe's own field constraints, the task's import path, the
catalog file and the instance filter.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from orchestrator.compress.recipe import Recipe
from orchestrator.cost.traffic import Traffic
from orchestrator.errors import InputError
from orchestrator.safe_files import MAX_CONFIG_BYTES, check_yaml_nodes, read_text
from orchestrator.techniques import TECHNIQUES
from orchestrator.techniques.domains import Choices, Domain, Range, values_to_check

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
PATH_ARG_SUFFIXES = ("_path", "_file", "_dir")  # task arguments that name local files, resolved like the catalog
KNOBS = tuple(TECHNIQUES.names())
INDEX_SUFFIX = "_index"  # numeric choices are sampled by position: `bits_index` for `bits`


def knob_of_param(param: str) -> str:
    """The knob an Optuna parameter samples (`bits_index` → `bits`); the search writes it, the report reads it."""
    stem = param.removesuffix(INDEX_SUFFIX)
    return stem if stem != param and stem in KNOBS else param


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSpec(_Strict):
    """The task: a built-in name (digits, minilm) or an import path 'pkg.module:factory', with its arguments.

    Arguments named `*_path`, `*_file` or `*_dir` are local paths, relative to the config file's folder.
    """

    name: str = Field(min_length=1)
    args: dict[str, Any] = {}


class Objective(_Strict):
    """What quality means and how much of it may be given up against the teacher.

    For a causal LM (metric log_perplexity, nats per token) the bound may be set in perplexity terms instead:
    `max_perplexity_increase: 0.05` (+5%) is `max_quality_drop` ln(1.05) = 0.04879 nats per token.
    """

    metric: str = "accuracy"
    max_quality_drop: float = Field(0.01, ge=0.0, le=1.0)
    max_perplexity_increase: float | None = Field(
        None, gt=0.0, le=1.0, description="log_perplexity only: the largest relative perplexity increase (0.05 = +5%)"
    )

    @model_validator(mode="after")
    def _perplexity_bound(self) -> "Objective":
        if self.max_perplexity_increase is None:
            return self
        if self.metric != "log_perplexity":
            raise ValueError(
                f"max_perplexity_increase applies to metric log_perplexity (causal LMs), not {self.metric!r}; "
                "use max_quality_drop"
            )
        bound = math.log1p(self.max_perplexity_increase)
        # A resolved config (a run folder's config.yaml) holds both; a user's config gives one.
        if "max_quality_drop" in self.model_fields_set and not math.isclose(self.max_quality_drop, bound, abs_tol=1e-12):
            raise ValueError(
                f"give max_perplexity_increase or max_quality_drop, not both: {self.max_perplexity_increase} is "
                f"max_quality_drop {bound:.6g} nats per token, not {self.max_quality_drop}"
            )
        self.max_quality_drop = bound
        return self


class Deployment(_Strict):
    """Where the model will serve: the catalog (bundled or a file), region and instance filter."""

    catalog: str = "bundled"
    region: str = "us-east-1"
    instance_filter: list[str] | None = None
    measured_instance_type: str | None = Field(None, description="the catalog instance this search runs on, if any")
    smt_yield: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description=(
            "a CPU core's throughput with all its hyperthreads busy, relative to one thread: 1.0 (hyperthreads add "
            "nothing, the conservative default) to 2.0 (each vCPU counts as a core, the old vCPU scaling)"
        ),
    )


class Resources(_Strict):
    """Resources one trial asks Ray for; GPU fractions let several trials share a GPU."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SearchSettings(_Strict):
    """How to search: budget, concurrency, sampler, scheduler, resources and storage."""

    trials: int = Field(16, ge=1)
    max_concurrent: int = Field(1, ge=1)
    sampler: Literal["tpe", "nsga2", "gp", "random", "grid"] = "tpe"
    seed: int = 0
    scheduler: Literal["none", "asha"] = "none"
    resources_per_trial: Resources = Resources()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_every_steps: int = Field(50, ge=1, description="distillation steps between intermediate reports (ASHA)")
    grid_points: int = Field(3, ge=2, description="values per range when sampler is grid")
    measure_batch_repeats: int = Field(15, ge=3)
    measure_latency_repeats: int = Field(50, ge=5)
    measure_rounds: int = Field(5, ge=1, description="rounds alternating candidate and teacher batches (throughput ratio)")
    throughput_reference: Literal["teacher", "none"] = Field(
        "teacher",
        description="teacher: throughput = interleaved ratio to the teacher × this machine's kept teacher reference; "
        "none: the raw median of this process's runs",
    )
    storage_path: str | None = Field(None, description="Ray Tune storage: a local folder or s3://bucket/prefix")
    optuna_storage: str | None = Field(None, description="RDB URL of the Optuna study; default: SQLite in the run folder")
    max_failures: int = Field(0, ge=0, description="retries of a trial whose worker died")
    seed_candidates: Literal["auto", "none"] = Field(
        "auto",
        description="auto: after the teacher, try each technique alone at its mildest setting (each quantized width "
        "on each runtime first), at most a third of the trials (not with sampler grid, which walks its grid); "
        "none: only the teacher is enqueued",
    )


class SearchConfig(_Strict):
    """A whole search: task, objective, traffic and SLO, deployment, search settings and space."""

    task: TaskSpec
    objective: Objective = Objective()
    traffic: Traffic
    deployment: Deployment = Deployment()
    search: SearchSettings = SearchSettings()
    space: dict[str, Domain]

    @field_validator("space", mode="before")
    @classmethod
    def _knobs_known(cls, space: Any) -> Any:
        if not isinstance(space, dict) or not space:
            raise ValueError("expected a mapping of knob names to a value, {choices: [...]} or {low: .., high: ..}")
        for name in space:
            if name not in KNOBS:
                close = difflib.get_close_matches(str(name), KNOBS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"space.{name}: unknown knob{hint} (knobs: {', '.join(KNOBS)})")
        return {name: _parse_knob(name, spec) for name, spec in space.items()}

    @model_validator(mode="after")
    def _knob_values_valid(self) -> "SearchConfig":
        for name, domain in self.space.items():
            for value in values_to_check(domain):
                _check_knob_value(name, value)
        return self


def _parse_knob(name: str, spec: Any) -> Any:
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise ValueError(f"space.{name}: a bare list is ambiguous; write {{choices: {spec}}}")
        return spec
    kind = Choices if "choices" in spec else Range if ("low" in spec or "high" in spec) else None
    if kind is None:
        raise ValueError(f"space.{name}: expected a fixed value, {{choices: [...]}} or {{low: .., high: ..}}, got keys {sorted(spec)}")
    try:
        return kind.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"space.{name}{'.' + where if where else ''}: {err['msg'].removeprefix('Value error, ')}") from None


def _check_knob_value(name: str, value: Any) -> None:
    field = Recipe.model_fields[name]
    adapter = TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ValueError(f"space.{name}: value {value!r} is not allowed: {reason}") from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: file, dotted field path and what is expected."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union[", "Choices", "Range")))
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("space.") and ":" in msg:
            loc, msg = msg.split(":", 1)[0], msg.split(":", 1)[1].strip()
        lines.append(f"{source}: {loc or '(top level)'}: {msg}")
    return "\n".join(dict.fromkeys(lines))


def parse_config(data: Any, source: str = "config") -> SearchConfig:
    """Validate a config mapping; bad input raises InputError naming the field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a YAML mapping with task, traffic and space, got {type(data).__name__}")
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source)) from None


def read_yaml(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES, allow_symlink: bool = True) -> Any:
    """Parse a YAML file as plain data; a missing, oversized, non-YAML or object-building file is an InputError.

    `yaml.safe_load` builds only plain values: a tag such as `!!python/object/apply` is refused,
    and aliases that expand past a hundred thousand values (a "billion laughs") are refused too.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such config file")
    text = read_text(path, max_bytes, allow_symlink=allow_symlink)
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(
            f"{path}: refused{where}: {exc.problem}; a config holds plain values only (no tags that build objects)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    check_yaml_nodes(data, str(path))
    return data


def load_config(path: str | Path, allow_symlink: bool = True, upgrade: Callable[[dict], dict] | None = None) -> SearchConfig:
    """Read and validate a config file; relative paths resolve against the file's folder.

    That is `deployment.catalog`, and task arguments named `*_path`, `*_file` or `*_dir`
    (a model folder, a texts file), so a run folder's config.yaml holds absolute paths.

    allow_symlink=False for a run folder's config.yaml: files inside a run folder are never links.
    `upgrade`: applied to the mapping read before it is validated (a run folder of an earlier format).
    """
    path = Path(path)
    raw = read_yaml(path, allow_symlink=allow_symlink)
    if upgrade is not None and isinstance(raw, dict):
        raw = upgrade(raw)
    config = parse_config(raw, str(path))
    catalog = config.deployment.catalog
    if catalog != "bundled" and not Path(catalog).is_absolute():
        config.deployment.catalog = str((path.parent / catalog).resolve())
    for name, value in config.task.args.items():
        if name.endswith(PATH_ARG_SUFFIXES) and isinstance(value, str) and value and not value.startswith("s3://"):
            local = Path(value).expanduser()
            config.task.args[name] = str(local if local.is_absolute() else (path.parent / local).resolve())
    return config


def json_schema() -> dict:
    """The JSON Schema of a search config (for editors and `hedgerow validate --schema`)."""
    return SearchConfig.model_json_schema()


def to_yaml(config: SearchConfig) -> str:
    """The resolved config as YAML, as written to a run folder."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
