"""The `compiled` runtime: torch.compile with inductor, and int8 through torchao's PT2E flow for it.

int8: torch.export → prepare_pt2e with the X86InductorQuantizer → calibrate on the
task's calibration batches → convert_pt2e. The converted program runs eagerly
(slowly: its int8 ops are reference decompositions) until inductor fuses them
into oneDNN int8 kernels, which it does only with `freezing` on (the weights
become constants it can prepack). So the compile stage freezes by default.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from orchestrator.errors import first_line
from orchestrator.runtimes.graph_export import export_args, quiet
from orchestrator.runtimes.base import ExportView, Runtime, RuntimeFailed, SavedProgram, judge_saved, runtime_step, served_outputs
from orchestrator.tasks.base import Task, model_device
from orchestrator.tasks.batches import Inputs, batch_size, repeat_to, run, take, to_device
from orchestrator.techniques import (
    Context,
    Int8Settings,
    Stage,
    StepRecord,
    TechniqueConfig,
    count_params,
    int8_mode,
    int8_torchao,
    weights_bytes,
)

COMPILE_CACHE_OFF = {"fx_graph_cache": False, "autotune_local_cache": False}  # cold start, as a new replica sees it
FLOAT_PARAMS = "hedgerow_float_param_counts"  # GraphModule.meta key: a PT2E int8 program's counts on its float model
PT2_NAME = "model.pt2"
PT2E_NAME = "model.int8.pt2"


class Pt2eInt8Config(Int8Settings):
    """int8 for the compiled runtime: torchao PT2E with the x86 inductor quantizer (static for convs, dynamic for Linear-only models)."""


class CompileConfig(TechniqueConfig):
    """torch.compile with inductor; weights frozen (constant-folded, prepacked for oneDNN); batch and sequence dynamic."""

    stage = Stage.RUNTIME
    keeps_float_weights = False
    freezing: bool = True


class CompiledModule(nn.Module):
    """A torch.compile'd program served at one static shape; `inspect_module` is the program torch can analyse eagerly.

    Inductor's int8 lowerings do not take dynamic shapes here, and every new shape would
    recompile, so the program is compiled once for the serving batch (and sequence length),
    as a fixed-batch server runs it: a smaller batch is padded up to it (sequence inputs with
    zeros, which the attention mask ignores), a larger one is served in slices of it.
    """

    def __init__(self, program: nn.Module, compiled: Any, inductor_options: dict[str, Any], example: Inputs,
                 sequence_inputs: tuple[str, ...] = ()) -> None:  # fmt: skip
        super().__init__()
        self.inspect_module = program
        self.inductor_options = dict(inductor_options)
        self.static_batch = batch_size(example)
        self.static_shapes = {name: tuple(t.shape[1:]) for name, t in _named(example).items()}
        self.sequence_inputs = tuple(sequence_inputs)
        meta = program.meta if isinstance(program, torch.fx.GraphModule) else {}
        self.float_param_counts: tuple[int, int] | None = meta.get(FLOAT_PARAMS)
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: its weights are the program's

    def forward(self, x: torch.Tensor | None = None, **named: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        inputs: Inputs = x if x is not None else named
        n = batch_size(inputs)
        outputs = []
        # Inductor reads these when it compiles, inside a call; torch.compile's own `options`
        # do not reach freezing's constant folding of int8 weights, so they are patched here.
        with inductor_config.patch(self.inductor_options):
            for start in range(0, n, self.static_batch):
                chunk = take(inputs, slice(start, start + self.static_batch))
                rows = batch_size(chunk)
                outputs.append(run(self._compiled, self._pad(chunk))[:rows])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _pad(self, chunk: Inputs) -> Inputs:
        padded = {}
        for name, t in _named(chunk).items():
            want = self.static_shapes[name]
            if name in self.sequence_inputs and t.dim() > 1 and t.shape[1] < want[0]:
                t = torch.nn.functional.pad(t, (0, want[0] - t.shape[1]))
            if len(t) < self.static_batch:
                t = torch.cat([t, t[-1:].expand(self.static_batch - len(t), *t.shape[1:])])
            padded[name] = _canonical(t)
        return padded[""] if isinstance(chunk, torch.Tensor) else padded

    def weights_nbytes(self) -> int:
        """Bytes of the program's weights (int8 values and scales for a PT2E int8 program)."""
        return weights_bytes(self.inspect_module)

    def param_counts(self) -> tuple[int, int]:
        """(parameters, nonzero): a PT2E int8 program's on the float model it was converted from (its int8 weights are constants)."""
        return self.float_param_counts or count_params(self.inspect_module)

    def files(self) -> list[Path]:
        """None: the program lives in memory until export writes it."""
        return []


def _canonical(t: torch.Tensor) -> torch.Tensor:
    """A copy with contiguous strides (an inference tensor under inference mode): what the program was compiled for.

    torch.compile guards on strides (even of size-1 dimensions) and on inference tensors; a batch
    differing in either would compile the program again.
    """
    return t.clone(memory_format=torch.contiguous_format)


def _clone(inputs: Inputs) -> Inputs:
    return _canonical(inputs) if isinstance(inputs, torch.Tensor) else {k: _canonical(v) for k, v in inputs.items()}


def _named(inputs: Inputs) -> dict[str, torch.Tensor]:
    return {"": inputs} if isinstance(inputs, torch.Tensor) else dict(inputs)


def pt2e_int8(model: nn.Module, config: Pt2eInt8Config, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """int8 through torchao PT2E for inductor on the CPU; on CUDA, torchao's int8 (torch.compile fuses it there)."""
    model = model.eval()
    if ctx.device.type == "cuda":
        return int8_torchao(model.to(ctx.device), config)
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    model = model.cpu()
    mode = int8_mode(config.mode, model, ctx.task.sequence_inputs)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    calibration = ctx.task.calibration_batches(config.calibration_batches, config.calibration_batch_size)
    try:
        with quiet():
            args, kwargs, dynamic = export_args(calibration[0], ctx.task.sequence_inputs)
            program = torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=dynamic).module()
            quantizer = X86InductorQuantizer()
            quantizer.set_global(get_default_x86_inductor_quantization_config(is_dynamic=mode == "dynamic"))
            prepared = prepare_pt2e(program, quantizer)
            with torch.inference_mode():
                for batch in calibration:
                    run(prepared, batch)
            converted = convert_pt2e(prepared)
    except Exception as exc:  # noqa: BLE001  (torch.export cannot trace every model)
        raise RuntimeFailed(f"runtime 'compiled': torchao PT2E int8 failed ({first_line(exc)})") from exc
    converted.meta[FLOAT_PARAMS] = count_params(model)  # its int8 weights are graph constants, not parameters
    stripped = strip_unused_weights(converted)
    allow_exported_model_train_eval(converted)  # task.evaluate calls .eval(); PT2E programs refuse it otherwise
    details = {
        "backend": "x86_inductor",
        "mode": mode,
        "quantized_layers": layers,
        "float_layers": [],
        "accelerated": True,
        "library": "torchao.quantization.pt2e (X86InductorQuantizer, default config)",
        "stripped_float_weights": stripped,
        "kernel_archs": ["x86_64"],  # oneDNN's int8 kernels through the x86 inductor quantizer
    }
    return converted, StepRecord.of(config, f"int8_pt2e_{mode}", details=details)


def strip_unused_weights(program: torch.fx.GraphModule) -> int:
    """Drop the float weights convert_pt2e left behind (its graph reads the int8 copies); returns how many."""
    used = {node.target for node in program.graph.nodes if node.op == "get_attr"}
    removed = 0
    for name in [n for n, _ in program.named_parameters()] + [n for n, _ in program.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            module = program.get_submodule(owner) if owner else program
            delattr(module, attr)
            removed += 1
    return removed


def compile_program(program: nn.Module, example: Inputs, sequence_inputs: tuple[str, ...] = (),
                    freezing: bool = True) -> tuple[CompiledModule, float]:  # fmt: skip
    """torch.compile a program for the shape of `example` and run that batch now; returns it and the seconds taken.

    Raises RuntimeFailed (naming a missing C++ compiler where that is the cause) when inductor cannot compile it.
    """
    if isinstance(program, torch.fx.GraphModule):
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        allow_exported_model_train_eval(program)  # exported programs refuse .eval(), which tasks call
    options = {"freezing": freezing, **COMPILE_CACHE_OFF}
    device = model_device(program)
    try:
        started = time.perf_counter()
        compiled = torch.compile(program, backend="inductor", mode=None, dynamic=False)
        wrapped = CompiledModule(program, compiled, options, example, sequence_inputs)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            # Compiled under inference mode on inference tensors, as every serving call runs; the guards
            # would otherwise fail on the first real batch and compile again.
            run(wrapped, _clone(to_device(example, device)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return wrapped, time.perf_counter() - started
    except RuntimeFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RuntimeFailed(compile_failure(exc)) from exc


def compile_model(model: nn.Module, config: CompileConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """torch.compile the model and run one serving batch now, so compile failures and cold-start time show at build."""
    model.eval()  # a PT2E program's patched eval() returns None, not the module
    example = ctx.task.example_batch(ctx.serving_batch_size)
    wrapped, startup = compile_program(model, example, ctx.task.sequence_inputs, config.freezing)
    details = {
        "backend": "inductor",
        "freezing": config.freezing,
        "static_batch": wrapped.static_batch,
        "sequence_inputs": list(ctx.task.sequence_inputs),
        "startup_seconds": round(startup, 3),
        "startup_method": (
            f"torch.compile + first batch of {ctx.serving_batch_size}, inductor caches off, in the trial's process "
            "(a fresh process also pays inductor's one-time set-up: bench/results/runtimes.json)"
        ),
        "static_shape": "compiled once for the serving batch (and sequence length); smaller batches are padded up to it",
        "torch": torch.__version__,
    }
    return wrapped, StepRecord.of(config, "compiled", details=details)


def compile_failure(exc: BaseException) -> str:
    """Why torch.compile failed, naming a missing C++ compiler where that is the cause."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    if "InvalidCxxCompiler" in text or "C++ compiler" in text or "No such file or directory: 'g++'" in text:
        return (
            "runtime 'compiled': torch.compile (inductor) needs a working C++ compiler for its CPU kernels and found "
            f"none ({first_line(chain[-1])}); install g++ (or set CXX), or search runtime eager or onnxruntime"
        )
    return f"runtime 'compiled': torch.compile (inductor) failed ({first_line(exc)})"


class CompiledRuntime(Runtime):
    """torch.compile (inductor) at the serving batch; int8 by torchao PT2E; exported as a .pt2 program compiled again on load."""

    name = "compiled"
    label = "torch.compile/inductor"
    program_formats = ("torch_export_pt2e_int8", "torch_export")
    build_cost = 3  # inductor compiles every candidate
    handlers = {Pt2eInt8Config: pt2e_int8, CompileConfig: compile_model}

    def stages(self, bits: int) -> list[TechniqueConfig]:
        """PT2E int8 (for bits 8), then torch.compile."""
        return [*([Pt2eInt8Config()] if bits == 8 else []), CompileConfig()]

    def quantizes_int8(self) -> bool:
        """Its PT2E stage quantizes int8 for inductor."""
        return True

    def save(self, served: nn.Module, steps: list[StepRecord], task: Task, inputs: Inputs, out_dir: Path, *,
             batch_size: int) -> SavedProgram:  # fmt: skip
        """The eager program behind the compiled module as a .pt2, loaded back, compiled again and judged on val."""
        step = runtime_step(self.name, served, CompiledModule, steps)
        int8 = any(s.stage is Stage.QUANTIZE and s.technique.startswith("int8_pt2e") for s in steps)
        name, fmt = (PT2E_NAME, "torch_export_pt2e_int8") if int8 else (PT2_NAME, "torch_export")
        path = out_dir / name
        settings = {
            "backend": step.details.get("backend", "inductor"), "freezing": bool(step.details.get("freezing", True)),
            "static_batch": int(step.details["static_batch"]), "sequence_inputs": list(step.details.get("sequence_inputs", [])),
            "dynamic": False,
        }  # fmt: skip
        reference = served_outputs(served, inputs, batch_size)
        try:
            with quiet():
                args, kwargs, dynamic = export_args(inputs, task.sequence_inputs)
                program = torch.export.export(served.inspect_module, args, kwargs=kwargs, dynamic_shapes=dynamic)
                torch.export.save(program, str(path))
                loaded = torch.export.load(str(path)).module()
            example = repeat_to(take(inputs, slice(0, 1)), settings["static_batch"])
            module, _ = compile_program(loaded, example, task.sequence_inputs, freezing=settings["freezing"])
            diff, quality = judge_saved(module, reference, task, inputs, batch_size)
        except Exception as exc:  # noqa: BLE001
            path.unlink(missing_ok=True)
            raise RuntimeFailed(f"runtime 'compiled': the program could not be exported and compiled back ({first_line(exc)})") from exc
        what = "torchao PT2E int8 program (x86 inductor quantizer), float weights it no longer reads stripped" if int8 else "torch.export program"
        reason = (
            f"{what}, dynamic batch{' and sequence length' if task.sequence_inputs else ''}; served by torch.compile "
            f"(inductor, freezing) at batch {settings['static_batch']}, as the trial measured it; loaded and compiled "
            f"back, it is within {diff:.2g} of the rebuilt candidate on the val split"
        )
        return SavedProgram(format=fmt, file=name, reason=reason, library="torch", version=torch.__version__,
                            max_abs_diff=diff, quality=quality, settings=settings)  # fmt: skip

    def load(self, export: ExportView, device: torch.device) -> nn.Module:
        """The .pt2 program compiled by inductor for the serving batch, as the trial served it (compiled now, not lazily)."""
        fmt, name = export.program_file(self.program_formats)
        if fmt == "torch_export_pt2e_int8":
            import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops the program calls)
        program = torch.export.load(str(export.root / name)).module().to(device)
        settings = export.settings
        example = export.example(int(settings.get("static_batch") or 1))
        sequence_inputs = tuple(settings.get("sequence_inputs") or ())
        return compile_program(program, example, sequence_inputs, freezing=bool(settings.get("freezing", True)))[0]

