"""FLOPs and bytes of the configured model per sample, as torch's FlopCounterMode counts them."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from pipelines.config import KilnConfig
from pipelines.data import pretrained, text
from pipelines.data.preprocessing import row_bytes
from pipelines.model.networks import build_model, pair_buckets, sample_input

BYTES_PER_PARAM = 4  # float32 weights; DDP all-reduces float32 gradients of the same size


def count_flops(cfg: KilnConfig, input_dim: int, num_classes: int, *, batch: int = 8, slots=()) -> dict:
    """Per-sample forward and backward FLOPs of the configured model, as FlopCounterMode counts."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg.model, input_dim=input_dim, num_classes=num_classes, slots=slots).train()
    x, y = sample_input(input_dim, slots, batch), torch.randint(0, num_classes, (batch,))
    with FlopCounterMode(display=False) as forward:
        loss = F.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    num_params = sum(p.numel() for p in model.parameters())
    fwd, bwd = forward.get_total_flops() / batch, backward.get_total_flops() / batch
    return {
        "forward_flops_per_sample": fwd,
        "backward_flops_per_sample": bwd,
        "flops_per_sample": fwd + bwd,
        "num_params": num_params,
        "param_bytes": num_params * BYTES_PER_PARAM,
        "grad_bytes": num_params * BYTES_PER_PARAM,
        "input_bytes_per_sample": row_bytes(input_dim, list(slots)),
    }  # the batch's arrays (float32, int64 ids, uint8 pixels) and an int64 label


def input_tables(encoders, cfg: KilnConfig) -> list[dict]:
    """Each feature column's share of the network's input (preprocessing.Encoder list): its encoded width and, for a
    category or binary column, the parameters of its one-hot table, which are its rows of the first layer's
    weights (an embedding of width hidden[0]; 0 where the model is not an mlp)."""
    first = cfg.model.hidden[0] if cfg.model.name == "mlp" and cfg.model.hidden else 0

    def table(e) -> int:
        if e.type == "image":
            return 0
        if e.type == "text" and e.pretrained:  # the frozen backbone's vectors: no table of the network's
            return 0
        if e.type == "text":  # its word embeddings (a bag adds its hashed pairs' table)
            own = cfg.model.for_column(e.name)
            pairs = pair_buckets(e.vocabulary_size) if own.text_encoder == "bag" and e.width > 1 else 0
            return (e.vocabulary_size + pairs) * own.embedding_dim
        return e.width * first if e.type != "number" else 0

    return [
        {
            "column": e.name,
            "type": e.type,
            "encoded": e.width,
            "table_params": table(e),
            **({"vocabulary": e.vocabulary_size - text.RESERVED} if e.type == "text" and not e.pretrained else {}),
        }
        for e in encoders
    ]


def embedding_pass(encoder, texts, *, timed: bool, sample: int = 64) -> dict:
    """A frozen pretrained encoder's one-time pass, which ingest makes before the search over the column's distinct
    texts (embedding_pass): the backbone's parameters, its forward FLOPs a text (FlopCounterMode over `sample` of
    them), and with `timed` the pass's seconds on this machine, from the time of that sample."""
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.data.embedding_pass import distinct_texts

    backbone = pretrained.backbone(encoder.pretrained, encoder.pooling)
    distinct = distinct_texts(texts)
    present = [t for t in distinct if t][:sample] or [""]
    with FlopCounterMode(display=False) as counter:
        backbone.forward(present, batch_size=sample)
    found = {
        "column": encoder.name,
        "num_params": sum(p.numel() for p in backbone.model.parameters()),
        "forward_flops_per_text": counter.get_total_flops() / len(present),
        "rows": len(distinct),
    }
    if timed:
        started = time.perf_counter()
        backbone.forward(present, batch_size=sample)
        found["pass_s"] = (time.perf_counter() - started) / len(present) * len(distinct)
    return found
