"""Model builders: architecture only. DDP, devices and precision are applied from outside."""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.config import ModelConfig
from pipelines.data import text
from pipelines.data.preprocessing import Slot

MAX_PAIR_BUCKETS = 1 << 16  # hashed word pairs of a TextBag: 4 per word of the vocabulary, 1024 to 65536


def pair_buckets(vocabulary: int) -> int:
    return min(MAX_PAIR_BUCKETS, max(1024, 4 * vocabulary))


BUILDERS = ("mlp", "cnn")  # Kiln's own; any other model.name is a user factory (package.module:function)


def build_model(
    cfg: ModelConfig, *, input_dim: int, num_classes: int, slots: list[Slot] = (), factory_file: str | None = None
) -> nn.Module:
    """`mlp`, `cnn`, or a user factory `package.module:function(input_dim, num_classes, cfg)`. With text or image
    columns an mlp is the head of a concat combiner: each such column's encoder beside the other columns' values.
    `factory_file`: the factory's module as a registered version carries it, run instead of the installed one."""
    if cfg.name == "mlp":
        if slots:
            return Combined(input_dim, num_classes, cfg, slots)
        return mlp(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if slots and ":" not in cfg.name:
        raise ValueError(
            f"model.name: {cfg.name} takes numbers only; a table with text or image columns needs "
            "mlp (or a factory, which gets word ids and standardised pixels in the matrix)"
        )
    if cfg.name == "cnn":
        return cnn(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if ":" in cfg.name:
        module_name, _, attr = cfg.name.partition(":")
        try:
            module = module_from_file(factory_file) if factory_file else importlib.import_module(module_name)
            factory = getattr(module, attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"model.name: cannot import {cfg.name!r} ({err})") from None
        return factory(input_dim, num_classes, cfg)
    raise ValueError(f"model.name: unknown model {cfg.name!r}; use mlp, cnn or 'package.module:factory'")


def module_from_file(path: str):
    """A module run from its source file under a name of its own (its content's hash), not from sys.path."""
    import hashlib
    import importlib.util
    import sys

    source = open(path, "rb").read()
    name = f"kiln_version_factory_{hashlib.sha256(source).hexdigest()[:16]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return sys.modules[name]


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


def sample_input(input_dim: int, slots: list[Slot], batch: int) -> torch.Tensor:
    """A batch the model accepts: random values, and valid ids in text and embedded category columns (kiln
    plan's FLOP count)."""
    x = torch.randn(batch, input_dim)
    for slot in slots:
        if slot.kind == "category":
            x[:, slot.start] = torch.randint(0, slot.vocabulary, (batch,)).float()
        if slot.kind == "text":  # words as long as the data's texts run, then padding (the Transformer trims it)
            words = min(slot.length or slot.width, slot.width)
            x[:, slot.start : slot.start + slot.width] = 0.0
            x[:, slot.start : slot.start + words] = torch.randint(
                text.RESERVED, max(slot.vocabulary, text.RESERVED + 1), (batch, words)
            ).float()
    return x


def augment(x: torch.Tensor, slots: list[Slot], *, flip: bool, generator: torch.Generator | None = None):
    """A training batch with each image shifted by up to 1/8 of its side (zero-padded: the mean image), and
    mirrored at random when `flip`. Text and other columns are left alone; a new tensor, x is not changed."""
    images = [s for s in slots if s.kind == "image"]
    if not images:
        return x
    x = x.clone()
    for slot in images:
        batch = x[:, slot.start : slot.start + slot.width].view(-1, slot.channels, slot.size, slot.size)
        pad = max(1, slot.size // 8)
        padded = F.pad(batch, (pad, pad, pad, pad))
        shift = torch.randint(0, 2 * pad + 1, (2, len(batch)), generator=generator).to(x.device)
        side = torch.arange(slot.size, device=x.device)
        rows, cols = shift[0][:, None] + side, shift[1][:, None] + side  # each image its own crop: [B, size]
        which = torch.arange(len(batch), device=x.device)[:, None, None]
        shifted = padded[which, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if flip:
            mirrored = (torch.rand(len(batch), generator=generator) < 0.5).to(x.device)
            shifted = torch.where(mirrored[:, None, None, None], shifted.flip(-1), shifted)
        x[:, slot.start : slot.start + slot.width] = shifted.reshape(len(batch), -1)
    return x


def masked_mean(vectors: torch.Tensor, mask: torch.Tensor, *, sqrt: bool = False) -> torch.Tensor:
    """Mean over the positions where mask is true: [B, L, D], [B, L] -> [B, D]; `sqrt`: the sum divided by the
    square root of their count instead."""
    weights = mask.unsqueeze(-1).to(vectors.dtype)
    count = weights.sum(1).clamp(min=1.0)
    return (vectors * weights).sum(1) / (count.sqrt() if sqrt else count)


def word_pairs(ids: torch.Tensor, present: torch.Tensor, buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair of neighbouring words hashed into 1..buckets-1 (0 where either is padding), and where both are."""
    both = present[:, :-1] & present[:, 1:]
    pairs = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % (buckets - 1) + 1
    return pairs * both, both


class TextBag(nn.Module):
    """A bag of n-grams: the mean embedding of a text's words plus the mean embedding of its word pairs, each
    pair hashed into `pair_buckets` rows (so "not good" differs from "good" without a pair vocabulary), plus the
    mean embedding of its hashed character n-grams when the encoding has them (`chars` ids after the words)."""

    def __init__(self, vocabulary: int, length: int, dim: int, chars: int = 0):
        super().__init__()
        self.words = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.buckets = pair_buckets(vocabulary)
        self.pairs = nn.Embedding(self.buckets, dim, padding_idx=0) if length > 1 else None  # DDP: no idle weights
        self.length = length
        self.chars = nn.Embedding(text.CHAR_BUCKETS, dim, padding_idx=0) if chars else None
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, grams = ids[:, : self.length], ids[:, self.length :]
        present = ids > 0
        pooled = masked_mean(self.words(ids), present)
        if self.chars is not None:
            pooled = pooled + masked_mean(self.chars(grams), grams > 0)
        if self.pairs is None:
            return pooled
        pairs, both = word_pairs(ids, present, self.buckets)
        return pooled + masked_mean(self.pairs(pairs), both)


class WideBag(nn.Module):
    """The wide half of wide-and-deep text: a weight per output for each word and each hashed word pair, summed
    over a text's words (and pairs) and divided by the square root of their count, added to the head's
    outputs. Starts at zero, so training begins from the deep model alone."""

    def __init__(self, bag: TextBag, outputs: int):
        super().__init__()
        self.length, self.buckets = bag.length, bag.buckets
        self.words = nn.Embedding(bag.words.num_embeddings, outputs, padding_idx=0)
        self.pairs = nn.Embedding(bag.buckets, outputs, padding_idx=0) if bag.pairs is not None else None
        for table in (self.words, self.pairs):
            if table is not None:
                nn.init.zeros_(table.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : self.length]
        present = ids > 0
        total = masked_mean(self.words(ids), present, sqrt=True)
        if self.pairs is None:
            return total
        pairs, both = word_pairs(ids, present, self.buckets)
        return total + masked_mean(self.pairs(pairs), both, sqrt=True)


class TextTransformer(nn.Module):
    """Word and position embeddings through a small Transformer encoder, mean-pooled over the words."""

    def __init__(self, vocabulary: int, length: int, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.words = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.positions = nn.Embedding(length, dim)
        self.length = length
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Ids are left-aligned, padding after: attend over the batch's longest text, not data.max_length (the
        # masked positions change nothing, and attention's cost grows with the square of the length).
        ids = ids[:, : self.length]  # the words; hashed character n-grams, if any, follow them
        ids = ids[:, : max(1, int((ids > 0).sum(1).max()))]
        present = ids > 0  # text.EMPTY stands in for an empty text, so no row is all padding
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.encoder(self.words(ids) + self.positions(positions), src_key_padding_mask=~present)
        return masked_mean(hidden, present)


STRIDED_STEM_FROM = 48  # px: 64 px grey digits scored 0.948 with a full-size stem, 0.970 with a strided one, in a
# quarter of the time


class ImageCNN(nn.Module):
    """A small ResNet-style encoder: a stem convolution, then per width in model.image_channels a residual block
    (two 3x3 convolutions with batch norm; the first of each block after the first halves the side), then average
    pooling to a grid of at most `pool` x `pool` cells, flattened: the head sees where in the image each feature
    is (a digit's stroke at the top differs from one at the bottom). Global average pooling (`pool` 1) leaves the
    head a bag of patches: on 32-64 px digits that trained to 0.46-0.80 where a 4x4 grid reaches 0.96-0.98.
    `per_image` standardises each image by its own mean and spread first (colours and lighting that vary from
    image to image, which the set's per-channel statistics do not remove)."""

    def __init__(self, channels_in: int, widths: list[int], *, size: int, pool: int = 4, per_image: bool = False):
        super().__init__()
        self.per_image = per_image
        stride = 2 if size >= STRIDED_STEM_FROM else 1  # large images: the stem halves the side (ResNet's does)
        self.stem = nn.Sequential(
            nn.Conv2d(channels_in, widths[0], 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks, width = [], widths[0]
        for i, out in enumerate(widths):
            blocks.append(Residual(width, out, stride=1 if i == 0 else 2))
            width = out
        self.blocks = nn.Sequential(*blocks)
        side = (size + 1) // 2 if stride == 2 else size
        for _ in widths[1:]:
            side = (side + 1) // 2
        self.grid = max(1, min(pool, side))
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.out_dim = width * self.grid * self.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            flat = images.flatten(1)
            mean, std = flat.mean(1), flat.std(1).clamp(min=1e-3)
            images = (images - mean[:, None, None, None]) / std[:, None, None, None]
        return self.pool(self.blocks(self.stem(images))).flatten(1)


class CategoryEmbedding(nn.Module):
    """A category column's level id (the levels, then missing, then other) -> a learned vector of model.embedding_dim
    values. Width 64 and a small start (std 0.1) measured best on hotel_rates and Sacramento (benchmarks/quality.py's
    sets): fastai's 1.6 * n^0.56 (17-21 wide there) scored 1.6% and 3.2% worse, N(0, 1) starts 3-4% worse."""

    def __init__(self, vocabulary: int, dim: int):
        super().__init__()
        self.out_dim = dim
        self.table = nn.Embedding(vocabulary, dim)
        nn.init.normal_(self.table.weight, std=0.1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids.clamp(0, self.table.num_embeddings - 1))


class Residual(nn.Module):
    def __init__(self, width_in: int, width_out: int, *, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width_in, width_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width_out),
            nn.ReLU(),
            nn.Conv2d(width_out, width_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(width_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and width_in == width_out
            else nn.Sequential(nn.Conv2d(width_in, width_out, 1, stride=stride, bias=False), nn.BatchNorm2d(width_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Combined(nn.Module):
    """The concat combiner (as in Ludwig): the other columns' encoded values as they are, each text, image and
    embedded category column through its encoder, concatenated and fed to an mlp head."""

    def __init__(self, input_dim: int, num_classes: int, cfg: ModelConfig, slots: list[Slot]):
        super().__init__()
        encoded = torch.zeros(input_dim, dtype=torch.bool)
        for slot in slots:
            encoded[slot.start : slot.start + slot.width] = True
        self.register_buffer("dense", torch.flatten(torch.nonzero(~encoded)), persistent=False)
        self.slots = [Slot(*slot) for slot in slots]
        self.encoders = nn.ModuleList(self._encoder(slot, cfg) for slot in self.slots)
        width = len(self.dense) + sum(encoder.out_dim for encoder in self.encoders)
        self.head = mlp(width, num_classes, cfg.hidden, cfg.dropout)
        # Wide paths of bag-encoded text columns (model.text_wide), by the index of their slot.
        self.wide_of = [
            i
            for i, (slot, encoder) in enumerate(zip(self.slots, self.encoders, strict=True))
            if isinstance(encoder, TextBag) and cfg.for_column(slot.column).text_wide
        ]
        self.wides = nn.ModuleList(WideBag(self.encoders[i], num_classes) for i in self.wide_of)

    @staticmethod
    def _encoder(slot: Slot, cfg: ModelConfig) -> nn.Module:
        if slot.kind == "category":
            return CategoryEmbedding(slot.vocabulary, cfg.embedding_dim)
        cfg = cfg.for_column(slot.column)
        if slot.kind == "image":
            return ImageCNN(
                slot.channels,
                cfg.image_channels,
                size=slot.size,
                pool=cfg.image_pool,
                per_image=cfg.image_standardize == "per_image",
            )
        words = slot.width - slot.chars
        if cfg.text_encoder == "bag":
            return TextBag(slot.vocabulary, words, cfg.embedding_dim, slot.chars)
        return TextTransformer(slot.vocabulary, words, cfg.embedding_dim, cfg.text_layers, cfg.text_heads, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, self.dense]]
        ids: dict[int, torch.Tensor] = {}  # each text column's word ids, for its encoder and its wide path
        for i, (slot, encoder) in enumerate(zip(self.slots, self.encoders, strict=True)):
            columns = x[:, slot.start : slot.start + slot.width]
            if slot.kind == "category":
                parts.append(encoder(columns[:, 0].round().long()))
            elif slot.kind == "text":
                ids[i] = columns.round().long()
                parts.append(encoder(ids[i]))
            else:
                parts.append(encoder(columns.reshape(-1, slot.channels, slot.size, slot.size)))
        out = self.head(torch.cat(parts, dim=1))
        for i, wide in zip(self.wide_of, self.wides, strict=True):
            out = out + wide(ids[i])
        return out
