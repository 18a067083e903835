"""Where each family of transformer encoders keeps its heads, FFN neurons and layers: one small table.

A family is a description, not code: the paths (inside one encoder layer) of the attention's
query/key/value projections or its one fused projection, the attention output, the FFN's
input and output, and the plain attributes the forward reads after heads are sliced.
`transformer_prune` slices any layer by its family's description; adding a family is one
more row in `FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["BERT", "DISTILBERT", "FAMILIES", "MODERNBERT", "EncoderFamily", "family_of", "needs_message"]


@dataclass(frozen=True)
class EncoderFamily:
    """One encoder family's layout, as dotted paths inside one encoder layer.

    `qkv` is either three paths (query, key, value: each projects to heads × head size) or one
    fused projection whose output is [all query heads | all key heads | all value heads].
    A `gated` FFN input projects to 2 × intermediate, [input | gate], so neuron i is the pair of
    rows (i, intermediate + i). The module holding the first `qkv` projection is the attention
    module: `head_size` names its attribute holding the (never changed) head size, `head_count`
    its attributes set to the number of kept heads, `head_width` those set to kept heads × head
    size. `depth` names attributes of the layer list's parent holding the number of layers.
    """

    name: str
    models: str  # which models use it, for messages
    layers: str  # where the layer list conventionally is, for messages
    qkv: tuple[str, ...]
    attn_out: str
    ffn_in: str
    ffn_out: str
    head_size: str
    gated: bool = False
    head_count: tuple[str, ...] = ()
    head_width: tuple[str, ...] = ()
    depth: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.qkv) not in (1, 3):
            raise ValueError(f"qkv: expected three projections (query, key, value) or one fused, got {self.qkv}")

    @property
    def fused(self) -> bool:
        return len(self.qkv) == 1

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
        return int(getattr(self.attention(layer), self.head_size))

    def n_heads(self, layer: nn.Module) -> int:
        """Heads the layer has now (after any pruning), from the projections' width."""
        width = self.projections(layer)[0].out_features // (3 if self.fused else 1)
        return width // self.head_size_of(layer)

    def ffn_width(self, layer: nn.Module) -> int:
        """FFN neurons the layer has now (a gated pair counts once)."""
        return self.linear(layer, self.ffn_out).in_features

    def matches(self, layer: nn.Module) -> bool:
        """Whether `layer` has this family's modules, all nn.Linear, with consistent shapes."""
        try:
            linears = [layer.get_submodule(p) for p in (*self.qkv, self.attn_out, self.ffn_in, self.ffn_out)]
            size = getattr(self.attention(layer), self.head_size)
        except AttributeError:
            return False
        if not all(isinstance(m, nn.Linear) for m in linears) or not isinstance(size, int) or size < 1:
            return False
        *projections, attn_out, ffn_in, ffn_out = linears
        width = attn_out.in_features
        per_projection = [p.out_features // 3 if self.fused else p.out_features for p in projections]
        if self.fused and projections[0].out_features != 3 * width:
            return False
        return (
            all(w == width for w in per_projection)
            and width % size == 0
            and ffn_in.out_features == (2 if self.gated else 1) * ffn_out.in_features
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

FAMILIES: tuple[EncoderFamily, ...] = (BERT, DISTILBERT, MODERNBERT)


def family_of(layer: nn.Module) -> EncoderFamily | None:
    """The first family whose description `layer` fits, or None."""
    return next((family for family in FAMILIES if family.matches(layer)), None)


def needs_message() -> str:
    """What transformer pruning expects, naming every family's layout."""
    shapes = "; ".join(
        f"{f.name} ({f.models}: {f.layers}[i] with {', '.join(f.qkv)}, {f.attn_out}, {f.ffn_in}, {f.ffn_out})"
        for f in FAMILIES
    )
    return f"needs a BERT-style encoder, one of: {shapes}"
