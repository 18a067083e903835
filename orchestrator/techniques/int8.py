"""int8 settings and the one rule for int8's automatic mode, shared by torch's int8, the compiled runtime and ONNX Runtime."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from orchestrator.techniques.registry import Stage, StepRecord, TechniqueConfig

Int8Mode = Literal["static", "dynamic"]


class Int8Settings(TechniqueConfig):
    """int8 with calibrated activations (static) or activations quantized per batch (dynamic); auto picks by `int8_mode`."""

    stage = Stage.QUANTIZE
    keeps_float_weights = False
    mode: Literal["auto", "static", "dynamic"] = "auto"
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)


def has_conv(model: nn.Module) -> bool:
    """Whether the model has a convolution (where static int8 pays off over dynamic)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def int8_mode(requested: str, model: nn.Module, sequence_inputs: tuple[str, ...] = ()) -> Int8Mode:
    """The int8 mode a request means: auto is static for a model with convolutions fed one tensor, dynamic otherwise.

    Linear-only models (transformers) gain little from calibrated activations, and a model fed
    sequences (named inputs of varying length) is not calibrated by one traced example.
    """
    if requested in ("static", "dynamic"):
        return requested  # type: ignore[return-value]
    return "static" if has_conv(model) and not sequence_inputs else "dynamic"


def int8_torchao(model: nn.Module, config: Int8Settings) -> tuple[nn.Module, StepRecord]:
    """torchao's dynamic-activation int8 on a CUDA model's Linear layers (torch.compile fuses it there)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    float_layers = [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    details = {
        "backend": "torchao",
        "mode": "dynamic_activation_int8_weight",
        "quantized_layers": linear_names,
        "float_layers": float_layers,
        "accelerated": True,
    }
    fallbacks = [f"{n}: stays float (torchao int8 quantizes Linear layers only)" for n in float_layers]
    return model, StepRecord.of(config, "int8_torchao", details=details, fallbacks=fallbacks)
