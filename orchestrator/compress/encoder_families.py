"""Where each family of transformers keeps its heads, FFN neurons and layers: one small table.

A family is a description, not code: the paths (inside one layer) of the attention's
query/key/value projections or its one fused projection, the attention output, the FFN's
input(s) and output, and the plain attributes the forward reads after heads are sliced.
Encoders (BERT, DistilBERT, ModernBERT, DeBERTa) and Llama-style decoders (grouped-query
attention, a gated FFN as separate gate/up projections) are rows alike.
`transformer_prune` slices any layer by its family's description; adding a family is one
more row in `FAMILIES`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

__all__ = [
    "BERT", "DISTILBERT", "FAMILIES", "LLAMA", "MODERNBERT", "EncoderFamily", "discover_family", "family_of",
    "needs_message",
]  # fmt: skip

# A plain (non-state) attribute on each encoder layer: the family discovered for it (generic encoders only).
_FAMILY = "_hedgerow_family"

# The sizes a family's config may be kept true to (EncoderFamily.config_sizes).
CONFIG_ROLES = ("heads", "kv_heads", "ffn", "head_size")


@dataclass(frozen=True)
class EncoderFamily:
    """One encoder family's layout, as dotted paths inside one encoder layer.

    `qkv` is either three paths (query, key, value) or one fused projection whose output is
    [all query heads | all key heads | all value heads]. With three, key and value may be narrower
    than query (grouped-query attention): each key-value head serves `group` consecutive query
    heads, and a group (its key/value rows, its query heads, their output columns) goes as one.
    A `gated` FFN input projects to 2 × intermediate, [input | gate], so neuron i is the pair of
    rows (i, intermediate + i); `ffn_in_also` names further FFN inputs whose row i is the same
    neuron (a gate beside its up projection). The module holding the first `qkv` projection is
    the attention module: `head_size` names its attribute holding the (never changed) head size
    (or is the size itself, for a discovered family), `head_count` its attributes set to the
    number of kept heads, `head_width` those set to kept heads × head size, `head_groups` those
    set to query heads per key-value head. `ffn_count` names attributes of the FFN module set to
    its kept neurons. `depth` names attributes of the layer list's parent holding the number of
    layers; `layer_index` dotted attributes inside a layer holding its position (a KV cache's
    index), renumbered after layers are dropped. `config_sizes` pairs a size (`heads`,
    `kv_heads`, `ffn`, `head_size`) with the config attribute kept true to it, for a family
    whose config is saved and loaded again (`save_pretrained`): every layer must then share it.
    """

    name: str
    models: str  # which models use it, for messages
    layers: str  # where the layer list conventionally is, for messages
    qkv: tuple[str, ...]
    attn_out: str
    ffn_in: str
    ffn_out: str
    head_size: str | int
    gated: bool = False
    head_count: tuple[str, ...] = ()
    head_width: tuple[str, ...] = ()
    depth: tuple[str, ...] = ()
    refuse_if: tuple[str, ...] = ()  # modules whose presence means a variant whose heads live elsewhere too
    ffn_in_also: tuple[str, ...] = ()
    head_groups: tuple[str, ...] = ()
    ffn_count: tuple[str, ...] = ()
    layer_index: tuple[str, ...] = ()
    config_sizes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if len(self.qkv) not in (1, 3):
            raise ValueError(f"qkv: expected three projections (query, key, value) or one fused, got {self.qkv}")
        unknown = [role for role, _ in self.config_sizes if role not in CONFIG_ROLES]
        if unknown:
            raise ValueError(f"config_sizes: unknown sizes {unknown}; expected some of {CONFIG_ROLES}")

    @property
    def fused(self) -> bool:
        return len(self.qkv) == 1

    @property
    def ffn_inputs(self) -> tuple[str, ...]:
        """Every FFN input projection: row i of each is neuron i."""
        return (self.ffn_in, *self.ffn_in_also)

    def attention(self, layer: nn.Module) -> nn.Module:
        """The module holding the query/key/value projections (where kept heads are recorded)."""
        return layer.get_submodule(self.qkv[0].rpartition(".")[0])

    def ffn(self, layer: nn.Module) -> nn.Module:
        """The module holding the FFN input projection (where kept neurons are recorded)."""
        return layer.get_submodule(self.ffn_in.rpartition(".")[0])

    def projections(self, layer: nn.Module) -> list[nn.Linear]:
        return [layer.get_submodule(path) for path in self.qkv]

    def linear(self, layer: nn.Module, path: str) -> nn.Linear:
        return layer.get_submodule(path)

    def head_size_of(self, layer: nn.Module) -> int:
        size = self.head_size
        return size if isinstance(size, int) else int(getattr(self.attention(layer), size))

    def n_heads(self, layer: nn.Module) -> int:
        """Query heads the layer has now (after any pruning), from the projections' width."""
        width = self.projections(layer)[0].out_features // (3 if self.fused else 1)
        return width // self.head_size_of(layer)

    def n_kv_heads(self, layer: nn.Module) -> int:
        """Key-value heads the layer has now: the query heads, unless key and value are narrower (grouped)."""
        if self.fused:
            return self.n_heads(layer)
        return self.projections(layer)[1].out_features // self.head_size_of(layer)

    def group(self, layer: nn.Module) -> int:
        """Query heads per key-value head (1 for plain multi-head attention); pruning by whole groups keeps it."""
        return self.n_heads(layer) // self.n_kv_heads(layer)

    def ffn_width(self, layer: nn.Module) -> int:
        """FFN neurons the layer has now (a gated pair counts once)."""
        return self.linear(layer, self.ffn_out).in_features

    def matches(self, layer: nn.Module) -> bool:
        """Whether `layer` has this family's modules, all nn.Linear, with consistent shapes."""
        try:
            linears = [layer.get_submodule(p) for p in (*self.qkv, self.attn_out, *self.ffn_inputs, self.ffn_out)]
            size = self.head_size_of(layer)
        except (AttributeError, TypeError, ValueError):
            return False
        if not all(isinstance(m, nn.Linear) for m in linears) or size < 1:
            return False
        if any(_has_submodule(layer, path) for path in self.refuse_if):
            return False
        projections, attn_out = linears[: len(self.qkv)], linears[len(self.qkv)]
        *ffn_inputs, ffn_out = linears[len(self.qkv) + 1 :]
        width = attn_out.in_features
        if self.fused:
            heads_fit = projections[0].out_features == 3 * width
        else:
            query, key, value = (p.out_features for p in projections)
            # Key and value as wide as the query, or narrower by a whole number of query heads per key-value head.
            heads_fit = query == width and key == value and key % size == 0 and key > 0 and (query // size) % (key // size) == 0
        return (
            heads_fit
            and width % size == 0
            and all(f.out_features == (2 if self.gated else 1) * ffn_out.in_features for f in ffn_inputs)
        )


BERT = EncoderFamily(
    name="BERT-named",
    models="BERT, RoBERTa, XLM-R, ELECTRA, MiniLM",
    layers="encoder.layer",
    qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    head_size="attention_head_size",
    # The forward reshapes with -1 heads and scales by the (unchanged) head size; these are the
    # only attributes derived from the head count.
    head_count=("num_attention_heads",),
    head_width=("all_head_size",),
)

DISTILBERT = EncoderFamily(
    name="DistilBERT",
    models="DistilBERT",
    layers="transformer.layer",
    qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
    attn_out="attention.out_lin",
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    head_size="attention_head_size",
    # The forward reshapes with -1 heads; n_heads and dim are kept true as transformers' own
    # head pruning kept them.
    head_count=("n_heads",),
    head_width=("dim",),
    depth=("n_layers",),
)

MODERNBERT = EncoderFamily(
    name="ModernBERT",
    models="ModernBERT",
    layers="layers",
    qkv=("attn.Wqkv",),
    attn_out="attn.Wo",
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    head_size="head_dim",
    gated=True,
    # The forward views Wqkv's output as (3, -1 heads, head_dim): no attribute holds the count.
)

# BERT's layout with `_proj` names for q, k and v. Relative positions go through query_proj and key_proj themselves
# when share_att_key is set (DeBERTa-v3), so they follow the kept heads; separate position projections
# (share_att_key off) would not: refused.
DEBERTA = replace(
    BERT,
    name="DeBERTa",
    models="DeBERTa-v2, DeBERTa-v3",
    qkv=("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
    refuse_if=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
)

# Llama-style decoders: Llama, SmolLM2, TinyLlama, Qwen2 (q/k/v with bias), Mistral, Gemma 1-3. Grouped-query attention (k/v
# narrower than q, by whole groups), a gated FFN as separate gate/up projections. The forward reshapes with -1 heads
# and repeats each key-value head num_key_value_groups times; the KV cache is indexed by self_attn.layer_idx. The
# config is what save_pretrained writes and from_pretrained builds from, so it is kept true (head_dim explicit:
# with fewer heads it no longer equals hidden_size // num_attention_heads).
LLAMA = EncoderFamily(
    name="Llama",
    models="Llama, SmolLM2, TinyLlama, Qwen2, Mistral, Gemma",
    layers="model.layers",
    qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    attn_out="self_attn.o_proj",
    ffn_in="mlp.gate_proj",
    ffn_in_also=("mlp.up_proj",),
    ffn_out="mlp.down_proj",
    head_size="head_dim",
    head_groups=("num_key_value_groups",),
    ffn_count=("intermediate_size",),
    layer_index=("self_attn.layer_idx",),
    config_sizes=(
        ("heads", "num_attention_heads"), ("kv_heads", "num_key_value_heads"), ("ffn", "intermediate_size"),
        ("head_size", "head_dim"),
    ),  # fmt: skip
)

FAMILIES: tuple[EncoderFamily, ...] = (BERT, DISTILBERT, MODERNBERT, DEBERTA, LLAMA)


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def family_of(layer: nn.Module) -> EncoderFamily | None:
    """The family recorded on `layer` when it was discovered, else the first row of `FAMILIES` it fits, or None."""
    recorded = getattr(layer, _FAMILY, None)
    if isinstance(recorded, EncoderFamily) and recorded.matches(layer):
        return recorded
    return next((family for family in FAMILIES if family.matches(layer)), None)


def needs_message() -> str:
    """What transformer pruning expects, naming every family's layout."""
    shapes = "; ".join(
        f"{f.name} ({f.models}: {f.layers}[i] with {', '.join(f.qkv)}, {f.attn_out}, {', '.join(f.ffn_inputs)}, "
        f"{f.ffn_out})"
        for f in FAMILIES
    )
    return (
        f"needs a BERT-style encoder or a Llama-style decoder, one of: {shapes}; or any encoder whose "
        "query/key/value (or one fused "
        "projection), attention output and FFN are nn.Linear layers sized by its config's hidden_size, "
        "num_attention_heads and intermediate_size"
    )


# --- discovering a family from the config and the shapes --------------------------------------------


def _sizes(config: Any) -> tuple[int, int, int] | None:
    sizes = [getattr(config, name, None) for name in ("hidden_size", "num_attention_heads", "intermediate_size")]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        return None
    hidden, heads, inter = sizes
    return (hidden, heads, inter) if hidden % heads == 0 else None


def _call_order(layer: nn.Module, x: torch.Tensor) -> list[str] | None:
    """The names of the layer's nn.Linear modules in the order a forward on `x` calls them (None if it fails)."""
    layer = copy.deepcopy(layer).eval()  # no dropout, no side effects on the caller's layer or random state
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda module, args, name=name: order.append(name) if name not in order else None)
        for name, m in layer.named_modules()
        if isinstance(m, nn.Linear)
    ]
    try:
        with torch.no_grad():
            layer(x)
    except Exception:  # any layer that cannot run on hidden states alone is not one we can check
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _sized_per_head(holder: nn.Module, layers: nn.ModuleList, heads: int) -> list[str]:
    """Tensors of `holder` outside `layers` with a dimension of the head count (e.g. a per-head position bias)."""
    inside = {id(t) for t in (*layers.parameters(), *layers.buffers())}
    tensors = [*holder.named_parameters(), *holder.named_buffers()]
    return [name for name, t in tensors if id(t) not in inside and heads in t.shape]


def discover_family(
    layers: nn.ModuleList,
    holder: nn.Module,
    config: Any,
    works: Callable[[EncoderFamily, nn.Module, torch.Tensor], bool],
) -> EncoderFamily | None:
    """A family for an encoder whose attention and FFN are plain nn.Linear, found from `config` and the shapes.

    The first layer runs on random hidden states once to see the order its Linears are called in:
    among hidden→hidden projections, the last called is the attention output and the three before it
    are query, key and value (or one hidden→3·hidden projection is the fused one); one
    hidden→intermediate (or 2·intermediate: gated) and one intermediate→hidden Linear are the FFN.
    Integer attributes of the attention module equal to the head count or to heads × head size are
    updated after slicing. Anything else (more candidates, other counts, or a tensor beside the
    layers in `holder` sized by the head count, which slicing the layers would not follow) is
    ambiguous: None.
    `works(family, layer, x)` then prunes a copy of the layer and must confirm the forward still
    computes what it did; the family is recorded on every layer so pruned copies keep it.
    """
    sizes = _sizes(config)
    if sizes is None or len(layers) == 0:
        return None
    hidden, heads, inter = sizes
    if _sized_per_head(holder, layers, heads):
        return None
    layer = layers[0]
    shapes = {name: (m.in_features, m.out_features) for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    if len(shapes) < 3:
        return None
    # Shapes tell the roles apart only if no two roles share a shape.
    roles = [(hidden, hidden), (hidden, 3 * hidden), (hidden, inter), (hidden, 2 * inter), (inter, hidden)]
    if len(set(roles)) != len(roles):
        return None
    weight = next(layer.parameters())
    x = torch.randn(2, 6, hidden, generator=torch.Generator().manual_seed(0)).to(weight.device, weight.dtype)
    order = _call_order(layer, x)
    if order is None:
        return None
    of = {shape: [n for n in order if shapes[n] == shape] for shape in set(shapes.values())}
    square, fused = of.get((hidden, hidden), []), of.get((hidden, 3 * hidden), [])
    plain_in, gated_in = of.get((hidden, inter), []), of.get((hidden, 2 * inter), [])
    ffn_out = of.get((inter, hidden), [])
    if len(square) == 4 and not fused:
        qkv, attn_out = tuple(square[:3]), square[3]
    elif len(square) == 1 and len(fused) == 1:
        qkv, attn_out = (fused[0],), square[0]
    else:
        return None
    if len(ffn_out) != 1 or len(plain_in) + len(gated_in) != 1:
        return None
    if len({name.rpartition(".")[0] for name in qkv}) != 1:
        return None
    attention = layer.get_submodule(qkv[0].rpartition(".")[0])
    counts = {k: v for k, v in vars(attention).items() if isinstance(v, int) and not isinstance(v, bool)}
    family = EncoderFamily(
        name="generic",
        models=type(layer).__name__,
        layers="(found by its config and shapes)",
        qkv=qkv,
        attn_out=attn_out,
        ffn_in=(plain_in or gated_in)[0],
        ffn_out=ffn_out[0],
        head_size=hidden // heads,
        gated=bool(gated_in),
        head_count=tuple(k for k, v in counts.items() if v == heads),
        head_width=tuple(k for k, v in counts.items() if v == hidden and hidden != heads),
    )
    if not all(family.matches(layer) for layer in layers) or not works(family, layer, x):
        return None
    for layer in layers:
        setattr(layer, _FAMILY, family)
    return family
