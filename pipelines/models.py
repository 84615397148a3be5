"""Model builders: architecture only. DDP, devices and precision are applied from outside."""

from __future__ import annotations

import importlib
import math

import torch
from torch import nn

from pipelines.config import ModelConfig

TextSlot = tuple[int, int, int]  # (first column, max_length, vocabulary size): encoding.Preprocessing.text_slots
MAX_PAIR_BUCKETS = 1 << 16  # hashed word pairs of a TextBag: 4 per word of the vocabulary, 1024 to 65536


def pair_buckets(vocabulary: int) -> int:
    return min(MAX_PAIR_BUCKETS, max(1024, 4 * vocabulary))


def build_model(cfg: ModelConfig, *, input_dim: int, num_classes: int, text_slots: list[TextSlot] = ()) -> nn.Module:
    """`mlp`, `cnn`, or a user factory `package.module:function(input_dim, num_classes, cfg)`. With text columns
    an mlp is the head of a concat combiner: each text column's encoder, beside the other columns' values."""
    if cfg.name == "mlp":
        if text_slots:
            return Combined(input_dim, num_classes, cfg, text_slots)
        return mlp(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if text_slots and ":" not in cfg.name:
        raise ValueError(f"model.name: {cfg.name} takes numbers only; a table with text columns needs mlp "
                         "(or a factory, which gets each text column as word ids)")
    if cfg.name == "cnn":
        return cnn(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if ":" in cfg.name:
        module_name, _, attr = cfg.name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"model.name: cannot import {cfg.name!r} ({err})") from None
        return factory(input_dim, num_classes, cfg)
    raise ValueError(f"model.name: unknown model {cfg.name!r}; use mlp, cnn or 'package.module:factory'")


def mlp(input_dim: int, num_classes: int, hidden: list[int], dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class SquareImageCNN(nn.Module):
    """Rows of side*side pixels viewed as one-channel images (digits: 8x8)."""

    def __init__(self, input_dim: int, num_classes: int, channels: list[int], dropout: float):
        super().__init__()
        self.side = math.isqrt(input_dim)
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(in_ch * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, self.side, self.side)))


def cnn(input_dim: int, num_classes: int, channels: list[int], dropout: float) -> nn.Module:
    if math.isqrt(input_dim) ** 2 != input_dim:
        raise ValueError(f"model.name: cnn needs a square number of features (got {input_dim})")
    return SquareImageCNN(input_dim, num_classes, channels, dropout)


def sample_input(input_dim: int, text_slots: list[TextSlot], batch: int) -> torch.Tensor:
    """A batch the model accepts: random values, and valid word ids in text columns (kiln plan's FLOP count)."""
    x = torch.randn(batch, input_dim)
    for start, length, vocabulary in text_slots:
        x[:, start:start + length] = torch.randint(0, vocabulary, (batch, length)).float()
    return x


def masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask is true: [B, L, D], [B, L] -> [B, D]."""
    weights = mask.unsqueeze(-1).to(vectors.dtype)
    return (vectors * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TextBag(nn.Module):
    """A bag of n-grams: the mean embedding of a text's words plus the mean embedding of its word pairs, each
    pair hashed into `pair_buckets` rows (so "not good" differs from "good" without a pair vocabulary)."""

    def __init__(self, vocabulary: int, length: int, dim: int):
        super().__init__()
        self.words = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.buckets = pair_buckets(vocabulary)
        self.pairs = nn.Embedding(self.buckets, dim, padding_idx=0) if length > 1 else None  # DDP: no idle weights
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        present = ids > 0
        pooled = masked_mean(self.words(ids), present)
        if self.pairs is None:
            return pooled
        pairs = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % (self.buckets - 1) + 1
        both = present[:, :-1] & present[:, 1:]
        return pooled + masked_mean(self.pairs(pairs * both), both)


class TextTransformer(nn.Module):
    """Word and position embeddings through a small Transformer encoder, mean-pooled over the words."""

    def __init__(self, vocabulary: int, length: int, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.words = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.positions = nn.Embedding(length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        present = ids > 0  # text.EMPTY stands in for an empty text, so no row is all padding
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.encoder(self.words(ids) + self.positions(positions), src_key_padding_mask=~present)
        return masked_mean(hidden, present)


class Combined(nn.Module):
    """The concat combiner (as in Ludwig): every non-text column's encoded values as they are, each text column
    through its encoder, concatenated and fed to an mlp head."""

    def __init__(self, input_dim: int, num_classes: int, cfg: ModelConfig, text_slots: list[TextSlot]):
        super().__init__()
        in_text = torch.zeros(input_dim, dtype=torch.bool)
        for start, length, _ in text_slots:
            in_text[start:start + length] = True
        self.register_buffer("dense", torch.flatten(torch.nonzero(~in_text)), persistent=False)
        self.slots = [(start, length) for start, length, _ in text_slots]
        self.texts = nn.ModuleList(
            TextBag(vocabulary, length, cfg.embedding_dim) if cfg.text_encoder == "bag" else
            TextTransformer(vocabulary, length, cfg.embedding_dim, cfg.text_layers, cfg.text_heads, cfg.dropout)
            for _, length, vocabulary in text_slots)
        width = len(self.dense) + sum(encoder.out_dim for encoder in self.texts)
        self.head = mlp(width, num_classes, cfg.hidden, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, self.dense]]
        for (start, length), encoder in zip(self.slots, self.texts, strict=True):
            parts.append(encoder(x[:, start:start + length].round().long()))
        return self.head(torch.cat(parts, dim=1))
