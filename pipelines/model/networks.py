"""Model builders: architecture only. DDP, devices and precision are applied from outside.

Every model built here takes a batch (preprocessing.Preprocessing.transform's arrays, as tensors): the concat
combiner reads each column kind as its own tensor; a matrix model (an mlp over numbers only, the cnn, a user
factory) reads the one float32 matrix `as_matrix` makes of it, in a forward pre-hook, and a tensor as it is."""

from __future__ import annotations

import importlib
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.config import ModelConfig, finetune_layers
from pipelines.data import pretrained, text
from pipelines.data.preprocessing import DENSE, Slot

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
    if cfg.name == "mlp" and slots:
        return Combined(input_dim, num_classes, cfg, slots)
    model = _matrix_model(cfg, input_dim=input_dim, num_classes=num_classes, slots=slots, factory_file=factory_file)
    return reads_batches(model, slots)


def reads_batches(model: nn.Module, slots: list[Slot] = ()) -> nn.Module:
    """A model of one float32 matrix made to take a batch too (`as_matrix`, in a forward pre-hook; the state dict
    is unchanged)."""
    model.register_forward_pre_hook(partial(_matrix_input, tuple(Slot(*slot) for slot in slots)))
    return model


def _matrix_input(slots: tuple[Slot, ...], module: nn.Module, args: tuple):
    """A matrix model's forward pre-hook: a batch becomes the matrix; a tensor is taken as the matrix itself."""
    if args and isinstance(args[0], dict):
        return (as_matrix(args[0], slots), *args[1:])
    return None


def as_matrix(batch: dict[str, torch.Tensor], slots: tuple[Slot, ...] | list[Slot]) -> torch.Tensor:
    """A batch as one float32 matrix: each slot's values at its place among the dense columns, word and level ids
    as floats (exact below 2**24), pixels standardised and flattened (the layout models read before typed
    batches; a user factory still gets it)."""
    dense = batch[DENSE]
    if not slots:
        return dense
    pieces, taken, at = [], 0, 0
    for slot in sorted(slots, key=lambda s: s.start):
        gap = slot.start - at  # dense columns between the previous slot and this one
        pieces.append(dense[:, taken : taken + gap])
        values = batch[slot.key]
        if slot.kind == "image":
            values = standardise(values, *pixel_statistics(slot, values.device)).flatten(1)
        pieces.append(values.to(dense.dtype).reshape(len(values), -1))
        taken, at = taken + gap, slot.start + slot.width
    pieces.append(dense[:, taken:])
    return torch.cat(pieces, dim=1)


def pixel_statistics(slot: Slot, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An image slot's per-channel mean and std as [channels, 1, 1] tensors (0 and 1 where it has none)."""
    mean = torch.tensor(slot.mean or (0.0,) * slot.channels, dtype=torch.float32, device=device)
    std = torch.tensor(slot.std or (1.0,) * slot.channels, dtype=torch.float32, device=device)
    return mean[:, None, None], std[:, None, None]


def standardise(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [B, C, H, W] to float32 standardised per channel: (pixels / 255 - mean) / std."""
    return (pixels.float() / 255.0 - mean) / std


def _matrix_model(cfg: ModelConfig, *, input_dim: int, num_classes: int, slots, factory_file: str | None):
    if cfg.name == "mlp":
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


def sample_input(input_dim: int, slots: list[Slot], batch: int) -> dict[str, torch.Tensor]:
    """A batch the model accepts: random values, valid ids in text and embedded category columns, random pixels
    (kiln plan's FLOP count)."""
    out = {DENSE: torch.randn(batch, input_dim - sum(slot.width for slot in slots))}
    for slot in slots:
        if slot.kind == "category":
            out[slot.key] = torch.randint(0, slot.vocabulary, (batch,))
        elif slot.kind == "text":  # words as long as the data's texts run, then padding (the Transformer trims it)
            words = min(slot.length or slot.width, slot.width)
            ids = torch.zeros(batch, slot.width, dtype=torch.int64)
            ids[:, :words] = torch.randint(text.RESERVED, max(slot.vocabulary, text.RESERVED + 1), (batch, words))
            out[slot.key] = ids
        else:
            out[slot.key] = torch.randint(0, 256, (batch, *slot.shape), dtype=torch.uint8)
    return out


def augment(batch: dict[str, torch.Tensor], slots: list[Slot], *, flip: bool, generator: torch.Generator | None = None):
    """A training batch with each image shifted by up to 1/8 of its side (padded with the mean pixel, which
    standardises to zero), and mirrored at random when `flip`. Other columns are left alone; a new batch, the
    given one is not changed."""
    images = [s for s in slots if s.kind == "image"]
    if not images:
        return batch
    batch = dict(batch)
    for slot in images:
        pixels = batch[slot.key]  # [B, C, size, size] uint8
        device, size = pixels.device, slot.size
        pad = max(1, size // 8)
        mean = torch.tensor(slot.mean_pixel, dtype=torch.uint8, device=device)[:, None, None]
        padded = mean[None].expand(len(pixels), -1, size + 2 * pad, size + 2 * pad).clone()
        padded[:, :, pad : pad + size, pad : pad + size] = pixels
        shift = torch.randint(0, 2 * pad + 1, (2, len(pixels)), generator=generator).to(device)
        side = torch.arange(size, device=device)
        rows, cols = shift[0][:, None] + side, shift[1][:, None] + side  # each image its own crop: [B, size]
        which = torch.arange(len(pixels), device=device)[:, None, None]
        shifted = padded[which, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if flip:
            mirrored = (torch.rand(len(pixels), generator=generator) < 0.5).to(device)
            shifted = torch.where(mirrored[:, None, None, None], shifted.flip(-1), shifted)
        batch[slot.key] = shifted.contiguous()
    return batch


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


class PretrainedText(nn.Module):
    """A pretrained Hugging Face encoder that trains inside the network (train.finetune): token ids (shifted by
    one, 0 padding: pretrained.TextBackbone.tokens) to the pooled vector of its last layer, as the frozen path
    pools it. Built from the folder's weights; a checkpoint's state dict then holds the fine-tuned ones."""

    def __init__(self, folder: str, pooling: str):
        super().__init__()
        self.model = pretrained.load_model(folder)
        self.pooling, self.normalise = pooling, pretrained.normalises(Path(folder))
        self.out_dim = int(self.model.config.hidden_size)
        self.layers = pretrained.layers(self.model.config.to_dict())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : max(1, int((ids > 0).sum(1).max()))]  # the batch's longest text, not max_length
        present = ids > 0
        hidden = self.model(input_ids=(ids - 1).clamp(min=0), attention_mask=present.long()).last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, present)
        return F.normalize(pooled, dim=1) if self.normalise else pooled

    def trains(self, spec: str) -> None:
        """train.finetune: which of its parameters train. all = every one but a pooler head the pooling never
        reads (an unused parameter would stall DDP); last_layers:N = the last N of its layers; frozen = none."""
        for parameter in self.parameters():
            parameter.requires_grad = False
        last = finetune_layers(spec) or 0
        if spec == "all":
            chosen = [m for name, m in self.model.named_children() if name != "pooler"]
        elif last:
            blocks = [m for m in self.model.modules() if isinstance(m, nn.ModuleList) and len(m) == self.layers]
            if not blocks:
                raise ValueError(
                    f"train.finetune: {spec}: {type(self.model).__name__} keeps no list of its {self.layers} layers "
                    "to choose the last ones from; use train.finetune: all"
                )
            chosen = list(blocks[0])[-last:]
        else:
            chosen = []
        for module in chosen:
            for parameter in module.parameters():
                parameter.requires_grad = True


def finetune(model: nn.Module, spec: str) -> None:
    """Set which parameters of the model's pretrained text encoders train (train.finetune); the rest train all."""
    for module in model.modules():
        if isinstance(module, PretrainedText):
            module.trains(spec)


def backbone_parameters(model: nn.Module) -> set[int]:
    """The ids of the parameters inside pretrained text encoders (they take train.backbone_lr)."""
    return {id(p) for m in model.modules() if isinstance(m, PretrainedText) for p in m.parameters()}


STRIDED_STEM_FROM = 48  # px: 64 px grey digits scored 0.948 with a full-size stem, 0.970 with a strided one, in a
# quarter of the time


class ImageCNN(nn.Module):
    """A small ResNet-style encoder: a stem convolution, then per width in model.image_channels a residual block
    (two 3x3 convolutions with batch norm; the first of each block after the first halves the side), then average
    pooling to a grid of at most `pool` x `pool` cells, flattened: the head sees where in the image each feature
    is (a digit's stroke at the top differs from one at the bottom). Global average pooling (`pool` 1) leaves the
    head a bag of patches: on 32-64 px digits that trained to 0.46-0.80 where a 4x4 grid reaches 0.96-0.98.
    Its first step standardises uint8 pixels on the device with the train split's per-channel `mean` and `std`
    (0..1 scale; buffers, not weights: a checkpoint's state is the same as when the pipeline standardised them).
    `per_image` then standardises each image by its own mean and spread (colours and lighting that vary from
    image to image, which the set's per-channel statistics do not remove)."""

    def __init__(
        self,
        channels_in: int,
        widths: list[int],
        *,
        size: int,
        pool: int = 4,
        per_image: bool = False,
        mean: tuple[float, ...] = (),
        std: tuple[float, ...] = (),
    ):
        super().__init__()
        self.per_image = per_image
        statistics = pixel_statistics(Slot("image", 0, 0, channels=channels_in, mean=mean, std=std))
        self.register_buffer("mean", statistics[0], persistent=False)
        self.register_buffer("std", statistics[1], persistent=False)
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

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        images = standardise(pixels, self.mean, self.std)
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
    """The concat combiner (as in Ludwig): the dense columns as they are, each text, image and embedded category
    column through its encoder, concatenated and fed to an mlp head."""

    def __init__(self, input_dim: int, num_classes: int, cfg: ModelConfig, slots: list[Slot]):
        super().__init__()
        self.slots = [Slot(*slot) for slot in slots]
        self.encoders = nn.ModuleList(self._encoder(slot, cfg) for slot in self.slots)
        dense = input_dim - sum(slot.width for slot in self.slots)
        self.head = mlp(dense + sum(encoder.out_dim for encoder in self.encoders), num_classes, cfg.hidden, cfg.dropout)
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
                mean=slot.mean,
                std=slot.std,
            )
        if slot.pretrained:
            return PretrainedText(slot.pretrained, slot.pooling)
        words = slot.width - slot.chars
        if cfg.text_encoder == "bag":
            return TextBag(slot.vocabulary, words, cfg.embedding_dim, slot.chars)
        return TextTransformer(slot.vocabulary, words, cfg.embedding_dim, cfg.text_layers, cfg.text_heads, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [batch[DENSE]]
        for slot, encoder in zip(self.slots, self.encoders, strict=True):
            parts.append(encoder(batch[slot.key]))
        out = self.head(torch.cat(parts, dim=1))
        for i, wide in zip(self.wide_of, self.wides, strict=True):
            out = out + wide(batch[self.slots[i].key])
        return out
