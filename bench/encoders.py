"""Does structured pruning speed up every encoder family, not only BERT? FFN 50%, heads 50% and half the layers.

BERT, DistilBERT and ModernBERT, randomly initialised at one shared size (all-MiniLM-L6-v2's: hidden 384,
12 heads, FFN 1536, 6 layers), each pruned by Hedgerow's own handlers (compress/transformer_prune.py), and
timed against its unpruned self in interleaved rounds at 32 texts × 128 tokens, 2 threads. Weights are random:
this measures speed, not quality (a pruned model's quality is the search's to judge, with distillation).

    .venv/bin/python bench/encoders.py [--rounds 5] [--repeats 3]      # → bench/results/encoders.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, write  # noqa: E402
from orchestrator.compress import Context, apply_technique  # noqa: E402
from orchestrator.compress.transformer_prune import FFNPruneConfig, HeadPruneConfig, LayerDropConfig, encoder_family  # noqa: E402

HIDDEN, HEADS, FFN, LAYERS, VOCAB, SEQ, BATCH = 384, 12, 1536, 6, 30522, 128, 32
VARIANTS = {
    "FFN 50%": FFNPruneConfig(ratio=0.5),
    "heads 50%": HeadPruneConfig(ratio=0.5),
    "half the layers": LayerDropConfig(keep_layers=LAYERS // 2),
}


def families() -> dict:
    """One randomly initialised model per family at the shared size."""
    import transformers as tf

    common = {"vocab_size": VOCAB, "max_position_embeddings": 512, "attn_implementation": "sdpa"}
    return {
        "BERT": lambda: tf.BertModel(tf.BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                                   intermediate_size=FFN, **common), add_pooling_layer=False),
        "DistilBERT": lambda: tf.DistilBertModel(tf.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                                                                     hidden_dim=FFN, **common)),
        "ModernBERT": lambda: tf.ModernBertModel(tf.ModernBertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                                                     num_attention_heads=HEADS, intermediate_size=FFN,
                                                                     pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                                     cls_token_id=1, sep_token_id=2, **common)),
    }  # fmt: skip


def sps(model: torch.nn.Module, batch: dict, repeats: int) -> float:
    """Texts per second over `repeats` batches."""
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(repeats):
            model(**batch)
    return repeats * BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, VOCAB, (BATCH, SEQ), generator=generator),
             "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long)}  # fmt: skip
    results = {}
    for family, build in families().items():
        torch.manual_seed(0)
        teacher = build().eval()
        ctx = Context(task=None, teacher=teacher, device=torch.device("cpu"))
        models = {"unpruned": teacher}
        params = {"unpruned": sum(p.numel() for p in teacher.parameters())}
        for name, config in VARIANTS.items():
            import copy

            models[name], _ = apply_technique(copy.deepcopy(teacher), config, ctx)
            params[name] = sum(p.numel() for p in models[name].parameters())
        for model in models.values():
            sps(model, batch, 1)  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                rates[name].append(sps(model, batch, args.repeats))
        results[family] = {
            "family": encoder_family(teacher).name,
            "unpruned_sps_median": statistics.median(rates["unpruned"]),
            "variants": {
                name: {
                    "params": params[name],
                    "params_ratio": params[name] / params["unpruned"],
                    "speedup_median": statistics.median(r / u for r, u in zip(rates[name], rates["unpruned"])),
                    "speedup_range": [min(r / u for r, u in zip(rates[name], rates["unpruned"])),
                                      max(r / u for r, u in zip(rates[name], rates["unpruned"]))],  # fmt: skip
                }
                for name in VARIANTS
            },
        }
        print(family, {n: round(v["speedup_median"], 2) for n, v in results[family]["variants"].items()}, flush=True)
    path = write("encoders", {
        "machine": machine(), "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
        "shape": {"hidden": HIDDEN, "heads": HEADS, "ffn": FFN, "layers": LAYERS, "batch": BATCH, "seq_len": SEQ},
        "method": "each variant timed against its unpruned model in interleaved rounds; speedup = pruned sps / unpruned sps per round",
        "results": results,
    })  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
