"""The fitted preprocessing that travels with a model: raw table rows in, the network's typed batch out.

Fitted on the train split only and saved as JSON beside the weights. Per column type:
  number    the train median fills a missing cell, then (x - mean) / std; plus a 0/1 "was missing" column
            when the train split had missing cells
  binary    the two training values as 0 and 1; a missing or unseen value sets its "missing" column
  category  one-hot over the train split's most frequent values (at most data.max_categories), a "missing"
            level and an "other" level, which every rarer or unseen value shares; or, embedded (data.categories),
            one column holding the value's index in that same order (a level seen at least twice, up to
            MAX_EMBEDDED), which the model looks up in an embedding table (networks.CategoryEmbedding)
  text      data.max_length word ids over the train split's vocabulary (pipelines/data/text.py), then
            data.char_ngrams hashed character n-gram ids; the model embeds them (networks.TextBag,
            networks.TextTransformer); or, with a pretrained encoder (model.text_encoder pretrained), the frozen
            backbone's pooled vector, float32 among the dense columns (pipelines/data/pretrained.py)
  image     channels x size x size pixels as uint8 (pipelines/data/images.py); the train split's per-channel mean and
            std travel with them (Slot.mean, Slot.std) and the model standardises on its device, in its first step
            (networks.ImageCNN); a missing cell is the mean image
A batch (`Preprocessing.transform`) holds each kind of column as its own array: `x`, float32 [rows, dense width],
the number, binary and one-hot category columns in the encoders' order; then one array per text, image and embedded
category column, named by its Slot's key: token ids int64 [rows, length] (0 pads; the mask is ids > 0), pixels
uint8 [rows, channels, size, size], level ids int64 [rows]. Training, evaluation and inference all pass this one
shape from ingest to the model's forward.
Nothing here refuses a row: a missing or unseen value has a column of its own.
The label: classification, the index of its value among every value seen; regression, the value standardised
with the train split's mean and standard deviation (`decode` maps the network's output back).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pipelines.data import images, pretrained, text

MISSING, OTHER = "missing", "other"
DENSE = "x"  # a batch's float32 columns: numbers, binary and one-hot categories
LABEL = "y"  # the label's column in a Ray Data block, beside the batch's arrays
BYTES_PER_LABEL = 8  # a label counted as int64


def plain(value: Any) -> Any:
    """numpy scalars to Python values, so labels survive JSON and come back as they went in."""
    return value.item() if isinstance(value, np.generic) else value


def level(value: Any) -> str | None:
    """A category value as its level's name (3, 3.0 and "3" are one level); None when missing."""
    if text.is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


FEW_ROWS = 16  # a request's rows: each cell read on its own (pandas' vectorised calls cost more on so few)


def as_numbers(values) -> np.ndarray:
    """A column's cells as float64, NaN where missing or not a number (pd.to_numeric's coercion). A few cells
    that are all numbers or null (a request's) skip pandas: 0.1 ms a column, a third of a one-row request."""
    if len(values) <= FEW_ROWS and not isinstance(values, np.ndarray):
        cells = values.tolist() if isinstance(values, pd.Series) else list(values)
        if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in cells):
            return np.array([np.nan if v is None else v for v in cells], dtype=np.float64)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def coded_levels(values) -> tuple[np.ndarray, list[str | None]]:
    """(each value's index into the names, the names): level() of each distinct value once (a batch of thousands
    of rows has a handful), missing cells pointing at the last name, None. A few rows: level() of each."""
    if len(values) <= FEW_ROWS:
        names = [level(v) for v in values]
        return np.arange(len(names)), [*names, None]
    try:
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # an unhashable cell (a list in a request's JSON): each value on its own
        names = [level(v) for v in values]
        return np.arange(len(names)), [*names, None]
    return np.asarray(codes), [*(level(v) for v in uniques), None]


class Slot(NamedTuple):
    """A text, image or embedded category column: its own array in a batch (`key`), and where it lay in the one
    float32 matrix of the layout before typed batches (columns start..start+width), which a matrix model (mlp, cnn,
    a user factory) still reads (networks.as_matrix)."""

    kind: str  # text | image | category (embedded: one column of level ids)
    start: int
    width: int
    vocabulary: int = 0  # text, category: ids the embedding needs
    channels: int = 0  # image
    size: int = 0
    column: str = ""  # the column's name (its encoder's settings: model.columns)
    length: int = 0  # text: the words a batch's longest text has, about (0: width)
    chars: int = 0  # text: hashed character n-gram ids at the slot's end (text.char_ngram_ids), after the words
    mean: tuple[float, ...] = ()  # image: per channel, the train split's pixel mean and std on a 0..1 scale, which
    std: tuple[float, ...] = ()  # the model standardises with (empty: 0 and 1)
    pretrained: str = ""  # text: the model folder of a backbone that trains in the network (its token ids shifted
    pooling: str = ""  # by one, 0 padding: pretrained.TextBackbone.tokens), and its pooling

    @property
    def key(self) -> str:
        """Its array's name in a batch."""
        return f"{self.kind}:{self.column}"

    @property
    def dtype(self) -> type:
        return np.uint8 if self.kind == "image" else np.int64

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's shape in a batch."""
        if self.kind == "image":
            return (self.channels, self.size, self.size)
        return () if self.kind == "category" else (self.width,)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def mean_pixel(self) -> list[int]:
        """image: an augmentation's padding (mean_pixel; 0 without statistics)."""
        return mean_pixel(self.mean or (0.0,) * self.channels)


def mean_pixel(means: tuple[float, ...]) -> list[int]:
    """Each channel's mean (0..1) as a uint8 value: the pixel that standardises to zero, about."""
    return [int(round(min(max(m, 0.0), 1.0) * 255)) for m in means]


def to_block(x: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """A batch and its labels as one Ray Data block's columns."""
    return {**x, LABEL: y}


def from_block(block: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A Ray Data block's columns as (batch, labels)."""
    return {key: values for key, values in block.items() if key != LABEL}, block[LABEL]


def row_bytes(input_dim: int, slots: list[Slot]) -> int:
    """Bytes of one row of a batch and its int64 label: the float32 dense columns and each slot's array."""
    dense = input_dim - sum(slot.width for slot in slots)
    return dense * 4 + sum(slot.row_bytes for slot in slots) + BYTES_PER_LABEL


@dataclass(frozen=True)
class Encoder:
    """One column's fitted encoding."""

    name: str
    type: str  # number | binary | category | text | image
    median: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    levels: list[str] = field(default_factory=list)  # binary: the two values; category: the kept values;
    # text: the vocabulary
    indicator: bool = False  # number: a "was missing" column follows
    max_length: int = 0  # text: word ids per row
    typical_length: int = 0  # text: the words a batch's longest train text has, about (kiln plan prices it)
    tokenizer: str = ""  # text: data.tokenizer bpe's vocabulary as the tokenizers library's JSON ("": words)
    size: int = 0  # image: side in pixels
    channels: int = 0  # image: 1 (grey) or 3 (RGB)
    channel_mean: list[float] = field(default_factory=list)  # image: per channel, from the train split (empty in
    channel_std: list[float] = field(default_factory=list)  # models saved before: then mean and std, all channels)
    char_ngrams: int = 0  # text: hashed character n-gram ids per row after the word ids (0: none, as saved before)
    quantiles: list[float] = field(default_factory=list)  # number, data.numbers quantile: the train split's values
    # at evenly spaced ranks; a value maps to its rank's normal score (empty: (x - mean) / std)
    bins: list[float] = field(default_factory=list)  # number, data.numbers ple: the bins' edges (train quantiles);
    # a piecewise-linear column per bin follows the standardised value (empty: none)
    embed: bool = False  # category: one column of level ids for an embedding, instead of one-hot (as saved before)
    pretrained: str = ""  # text: the backbone's model folder (a version's: relative to it); "": Kiln's own
    pooling: str = ""  # text, pretrained: mean | cls
    dim: int = 0  # text, pretrained: the backbone's vector width
    finetune: str = ""  # text, pretrained: "" = frozen (its pooled vectors, among the dense columns); all or
    # last_layers:N = its token ids (max_length of them), for the backbone inside the network (train.finetune)
    backbone: Any = field(default=None, compare=False, repr=False)  # text, pretrained: loaded (never saved)

    @property
    def width(self) -> int:
        if self.type == "number":
            return 1 + max(len(self.bins) - 1, 0) + self.indicator
        if self.type == "binary":
            return 2
        if self.type == "text":
            return self.dim if self.frozen else self.max_length + self.char_ngrams
        if self.type == "image":
            return self.channels * self.size * self.size
        return 1 if self.embed else len(self.levels) + 2

    @property
    def slotted(self) -> bool:
        """Travels as its own array (text, image, an embedded category), not among the dense columns."""
        return (self.type == "text" and not self.frozen) or self.type == "image" or self.embed

    @property
    def frozen(self) -> bool:
        """text: a frozen pretrained backbone's vectors (dense columns, embedded once)."""
        return bool(self.pretrained) and not self.finetune

    @property
    def vocabulary_size(self) -> int:
        """text: the ids an embedding table needs (the vocabulary and the reserved ids)."""
        return (text.bpe_size(self.tokenizer) if self.tokenizer else len(self.levels)) + text.RESERVED

    @property
    def names(self) -> list[str]:
        if self.type == "number":
            pieces = [f"{self.name}<={edge:g}" for edge in self.bins[1:]]
            return [self.name] + pieces + ([f"{self.name}={MISSING}"] if self.indicator else [])
        if self.type == "binary":
            return [f"{self.name}={self.levels[-1]}", f"{self.name}={MISSING}"]
        if self.type in ("text", "image"):
            return [f"{self.name}[{i}]" for i in range(self.width)]
        if self.embed:
            return [self.name]
        return [f"{self.name}={v}" for v in self.levels] + [f"{self.name}={MISSING}", f"{self.name}={OTHER}"]

    def encode(self, values: pd.Series, *, allow_paths: bool = False) -> np.ndarray:
        if self.type == "number":
            cells = as_numbers(values)
            missing = ~np.isfinite(cells)
            filled = np.where(missing, self.median, cells)
            scaled = normal_scores(filled, self.quantiles) if self.quantiles else (filled - self.mean) / self.std
            pieces = [piecewise_linear(filled, self.bins)] if self.bins else []
            return np.column_stack([scaled, *pieces, missing] if self.indicator else [scaled, *pieces])
        if self.type == "text" and self.pretrained:
            loaded = self.backbone or pretrained.backbone(self.pretrained, self.pooling)
            return loaded.tokens(list(values)) if self.finetune else loaded.embed(list(values))
        if self.type == "text":
            ids = self.token_ids(values)
            if self.char_ngrams:
                ids = np.hstack([ids, text.char_ngram_ids(values, count=self.char_ngrams)])
            return ids.astype(np.int64)
        if self.type == "image":
            return self.encode_images(values, allow_paths=allow_paths)
        codes, names = coded_levels(values)
        if self.type == "binary":
            ones = np.array([n == self.levels[-1] for n in names], dtype=np.float64)
            unknown = np.array([n not in self.levels for n in names], dtype=np.float64)
            return np.column_stack([ones[codes], unknown[codes]])
        index = {v: i for i, v in enumerate(self.levels)}
        ids = np.array([index.get(n, len(self.levels) + 1) if n is not None else len(self.levels) for n in names])
        ids = ids[codes]
        if self.embed:  # the one-hot column's index: the levels, then "missing", then "other"
            return ids.astype(np.int64)
        out = np.zeros((len(ids), self.width))
        out[np.arange(len(ids)), ids] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "median": self.median,
            "mean": self.mean,
            "std": self.std,
            "levels": self.levels,
            "indicator": self.indicator,
            "max_length": self.max_length,
            "typical_length": self.typical_length,
            "tokenizer": self.tokenizer,
            "size": self.size,
            "channels": self.channels,
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "char_ngrams": self.char_ngrams,
            "quantiles": self.quantiles,
            "bins": self.bins,
            "embed": self.embed,
            "pretrained": self.pretrained,
            "pooling": self.pooling,
            "dim": self.dim,
            "finetune": self.finetune,
        }

    def decode_pixels(self, raw: bytes, *, max_pixels: int, budget: images.PixelBudget | None = None) -> np.ndarray:
        """An image column's bytes from a request as the [channels, size, size] uint8 pixels `encode_images` takes:
        decoded once, within `max_pixels` and the request's `budget` (images.ImageError otherwise)."""
        return images.pixels(raw, size=self.size, channels=self.channels, max_pixels=max_pixels, budget=budget)

    def token_ids(self, values) -> np.ndarray:
        if self.tokenizer:
            return text.bpe_ids(values, self.tokenizer, max_length=self.max_length)
        return text.token_ids(values, self.levels, max_length=self.max_length)

    def encode_images(self, values: pd.Series, *, allow_paths: bool = False) -> np.ndarray:
        """uint8 [rows, channels, size, size]; images.ImageError naming the row of a cell that does not decode. A
        cell is image bytes, a file name (opened only with `allow_paths`: ingest), or the [channels, size, size]
        pixels `decode_pixels` gave (an endpoint decodes a request's images once, while it checks them within
        serve.max_image_pixels; here only PIL's own decompression-bomb limit applies). A missing cell is the mean
        image, which standardises to zeros."""
        shape = (self.channels, self.size, self.size)
        out = np.empty((len(values), *shape), dtype=np.uint8)
        out[:] = np.asarray(self.mean_pixel, np.uint8)[:, None, None]
        for at, (row, value) in enumerate(zip(values.index, values, strict=True)):  # row: the table's own
            if text.is_missing(value):
                continue
            if isinstance(value, np.ndarray) and value.shape == shape and value.dtype == np.uint8:
                out[at] = value
                continue
            try:
                out[at] = images.pixels(
                    value, size=self.size, channels=self.channels, max_pixels=None, allow_paths=allow_paths
                )
            except images.ImageError as err:
                where = f" ({value})" if isinstance(value, str) else ""
                raise images.ImageError(f"column {self.name!r} row {row}{where}: {err}") from None
        return out

    @property
    def image_mean(self) -> tuple[float, ...]:
        """image: per channel, the pixels' mean on a 0..1 scale (one value for all channels in older versions)."""
        per_channel = len(self.channel_mean) == self.channels
        return tuple(self.channel_mean) if per_channel else (self.mean,) * self.channels

    @property
    def image_std(self) -> tuple[float, ...]:
        per_channel = len(self.channel_std) == self.channels
        return tuple(self.channel_std) if per_channel else (self.std,) * self.channels

    @property
    def mean_pixel(self) -> list[int]:
        """image: a missing image's pixels (mean_pixel)."""
        return mean_pixel(self.image_mean)


def embedded(categories: str, distinct: int, max_categories: int) -> bool:
    """data.categories' rule: whether a category with `distinct` train values is embedded rather than one-hot."""
    return categories == "embed" or (categories == "auto" and distinct > max_categories)


MAX_EMBEDDED = 10_000  # an embedded category's levels kept at most (its most frequent)
EMBED_MIN_COUNT = 2  # an embedded level is seen this often in the train split; a rarer value shares "other"
QUANTILES = 101  # ranks kept per number column with data.numbers: quantile (scikit-learn's default is 1000)


def normal_scores(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Each value's rank among the train split's (interpolated between the kept quantiles) as a standard normal
    score, clipped at +-3: what scikit-learn's QuantileTransformer(output_distribution="normal") gives."""
    from scipy.special import ndtri

    q, p = np.asarray(quantiles), np.linspace(0.0, 1.0, len(quantiles))
    # Repeated quantiles (a value many rows share) take the middle of their ranks: interpolated from both ends.
    ranks = 0.5 * (np.interp(values, q, p) - np.interp(-values, -q[::-1], -p[::-1]))
    return ndtri(np.clip(ranks, 0.00135, 0.99865))


PLE_BINS = 16  # bins per number column with data.numbers: ple (Gorishniy et al. 2022 search 2-256; 16 is cheap)
PLE_FROM_ROWS = 10_000  # data.numbers auto: ple from this many train rows, standard below (benchmarks/quality.py:
# ple won on randhie's 14k train rows and seattle_weather's 1k, lost on the small tables, where it overfits)


def piecewise_linear(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Piecewise-linear encoding (Gorishniy et al., "On Embeddings for Numerical Features in Tabular Deep
    Learning", 2022): [rows, bins], 1 for each bin wholly below the value, its fraction of the bin it falls in,
    0 above. With bins at the train split's quantiles a linear layer over it is any monotone-piecewise function."""
    low, high = np.asarray(edges[:-1]), np.asarray(edges[1:])
    return np.clip((values[:, None] - low) / (high - low), 0.0, 1.0)


def fit_encoder(
    name: str,
    kind: str,
    values: pd.Series,
    *,
    max_categories: int,
    max_length: int = 64,
    vocab_size: int = 20000,
    image_size: int | None = None,
    tokenizer: str = "words",
    char_ngrams: int = 0,
    numbers: str = "standard",
    categories: str = "onehot",
    backbone: tuple[str, str, str] | None = None,
) -> Encoder:
    """One column's encoding, from its train-split values; a text column with a `backbone` (its model folder,
    pooling and train.finetune: pretrained.columns) is that backbone's vectors, or its token ids when it is
    fine-tuned, and nothing is fitted."""
    if kind == "text" and backbone is not None:
        folder, pooling, finetune = backbone
        encoder = Encoder(name, kind, pretrained=folder, pooling=pooling, dim=pretrained.width(folder))
        if finetune == "frozen":
            return encoder
        loaded = pretrained.backbone(folder, pooling)  # its tokenizer (the encoder loads in the network)
        lengths = (loaded.tokens(list(values)) > 0).sum(axis=1)
        typical = int(np.quantile(lengths, 0.98)) if len(lengths) else loaded.max_length
        return dataclasses.replace(encoder, finetune=finetune, max_length=loaded.max_length, typical_length=typical)
    if kind == "text":
        fitted = Encoder(
            name,
            kind,
            max_length=max_length,
            char_ngrams=char_ngrams,
            **(
                {"tokenizer": text.fit_bpe(values, size=vocab_size)}
                if tokenizer == "bpe"
                else {"levels": text.fit_vocabulary(values, size=vocab_size)}
            ),
        )
        lengths = (fitted.token_ids(values) > 0).sum(axis=1)
        typical = int(np.quantile(lengths, 0.98)) if len(lengths) else max_length  # near a batch of 64's longest
        return dataclasses.replace(fitted, typical_length=typical)
    if kind == "image":
        present = [v for v in values if not text.is_missing(v)]
        side, channels = images.describe(present)
        raw = Encoder(name, kind, size=image_size or min(side, 64), channels=channels)  # mean 0, std 1: 0..1
        if not present:  # no image in the train split: pixels as they are
            return raw
        sample = raw.encode_images(pd.Series(present[:500], dtype=object), allow_paths=True)
        per_channel = sample.reshape(len(sample), channels, -1) / 255.0  # each channel its own statistics, as
        std = [float(s) if s > 1e-6 else 1.0 for s in per_channel.std(axis=(0, 2))]  # torchvision's Normalize
        return dataclasses.replace(raw, channel_mean=[float(m) for m in per_channel.mean(axis=(0, 2))], channel_std=std)
    if kind == "number":
        column = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        present = column[np.isfinite(column)]
        median = float(np.median(present)) if len(present) else 0.0
        filled = np.where(np.isfinite(column), column, median)
        std = float(filled.std())
        distinct = len(np.unique(filled))  # two values: standardising says it all
        quantiles = np.quantile(filled, np.linspace(0, 1, QUANTILES)) if numbers == "quantile" and distinct > 2 else []
        edges = np.unique(np.quantile(filled, np.linspace(0, 1, PLE_BINS + 1))) if numbers == "ple" else []
        return Encoder(
            name,
            kind,
            median=median,
            mean=float(filled.mean()),
            std=std if std > 1e-12 else 1.0,
            indicator=bool(len(present) < len(column)),
            quantiles=[float(q) for q in quantiles],
            bins=[float(e) for e in edges] if distinct > 2 else [],
        )
    counts = pd.Series([level(v) for v in values]).dropna().value_counts()
    if kind == "binary":
        return Encoder(name, kind, levels=sorted(counts.index)[:2])
    # Most frequent first; ties by value, so the same data always gives the same columns.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if embedded(categories, len(ranked), max_categories):
        kept = [v for v, n in ranked[:MAX_EMBEDDED] if n >= EMBED_MIN_COUNT]
        return Encoder(name, kind, levels=kept, embed=True)
    return Encoder(name, kind, levels=[v for v, _ in ranked[:max_categories]])


@dataclass(frozen=True)
class Preprocessing:
    """What travels with the model: each feature column's encoding, and the label's values."""

    encoders: list[Encoder]
    labels: list[Any]  # classification: every label value; regression: empty
    task: str = "classification"
    target_mean: float = 0.0  # regression: the train split's label statistics
    target_std: float = 1.0
    identifiers: list[str] = field(default_factory=list)  # columns the schema left out as identifiers (inferred,
    # the row index, data.drop): what `kiln score` copies to its output by default

    @property
    def features(self) -> list[str]:
        """The raw columns a request gives, in training order."""
        return [e.name for e in self.encoders]

    @property
    def types(self) -> dict[str, str]:
        return {e.name: e.type for e in self.encoders}

    @property
    def width(self) -> int:
        """The network's input width: every encoded column (as the matrix layout counts them)."""
        return sum(e.width for e in self.encoders)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def output_dim(self) -> int:
        """The network's output width: a logit per class, or the one standardised value."""
        return 1 if self.regression else len(self.labels)

    @property
    def slots(self) -> list[Slot]:
        """Each text, image and embedded category column's array in a batch, and its place in the matrix layout:
        what the model's encoders read."""
        slots, start = [], 0
        for e in self.encoders:
            if e.type == "text" and not e.frozen:  # a frozen backbone's vectors are dense columns
                slots.append(
                    Slot(
                        "text",
                        start,
                        e.width,
                        vocabulary=0 if e.pretrained else e.vocabulary_size,
                        column=e.name,
                        length=e.typical_length or e.max_length,
                        chars=e.char_ngrams,
                        pretrained=e.pretrained,
                        pooling=e.pooling,
                    )
                )
            elif e.type == "image":
                slots.append(
                    Slot(
                        "image",
                        start,
                        e.width,
                        channels=e.channels,
                        size=e.size,
                        column=e.name,
                        mean=e.image_mean,
                        std=e.image_std,
                    )
                )
            elif e.embed:
                slots.append(Slot("category", start, 1, vocabulary=len(e.levels) + 2, column=e.name))
            start += e.width
        return slots

    @property
    def row_bytes(self) -> int:
        """Bytes of one encoded row and its label: what a shard holds per row."""
        return row_bytes(self.width, self.slots)

    def rooted(self, folder: str | Path) -> Preprocessing:
        """With a version's pretrained model folders, which it names relative to itself, as paths under `folder`,
        each loaded now (the folder may be a verified copy about to be removed): a frozen backbone whole, a
        fine-tuned one's tokenizer (checkpoint.load_model builds its network from the copy's weights next). A trial
        checkpoint's absolute folder is left to the process's cache (pretrained.backbone), which ingest filled."""
        encoders = []
        for e in self.encoders:
            if e.pretrained and not Path(e.pretrained).is_absolute():
                loaded = pretrained.TextBackbone(Path(folder) / e.pretrained, pooling=e.pooling)
                if e.frozen:
                    loaded.model  # noqa: B018 (loaded now; a fine-tuned one's weights load into the network)
                e = dataclasses.replace(e, pretrained=str(Path(folder) / e.pretrained), backbone=loaded)
            encoders.append(e)
        return dataclasses.replace(self, encoders=encoders)

    @property
    def all_numeric(self) -> bool:
        return all(e.type == "number" for e in self.encoders)

    def transform(self, frame: pd.DataFrame | np.ndarray, *, allow_paths: bool = False) -> dict[str, np.ndarray]:
        """Raw rows (a frame with the feature columns, or a matrix in feature order) to a batch: `x` and each slot's
        array (see the module's docstring). An image column's file names are opened only with `allow_paths`
        (ingest's tables; never a request or the pyfunc)."""
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(np.asarray(frame, dtype=object), columns=self.features)
        dense = [e.encode(frame[e.name]) for e in self.encoders if not e.slotted]
        batch = {DENSE: np.hstack(dense).astype(np.float32) if dense else np.zeros((len(frame), 0), np.float32)}
        slotted = [e for e in self.encoders if e.slotted]
        for e, slot in zip(slotted, self.slots, strict=True):
            batch[slot.key] = e.encode(frame[e.name], allow_paths=allow_paths)
        return batch

    def encode(self, labels: pd.Series) -> np.ndarray:
        """Label values as the network's targets: class indices (int64), or standardised values (float32)."""
        if self.regression:
            return ((labels.to_numpy(dtype=np.float64) - self.target_mean) / self.target_std).astype(np.float32)
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[plain(v)] for v in labels], dtype=np.int64)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Regression: the network's outputs [N] or [N, 1] back in the label's units."""
        return np.asarray(outputs, dtype=np.float64).reshape(-1) * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 4,
            "encoders": [e.to_dict() for e in self.encoders],
            "labels": self.labels,
            "task": self.task,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "identifiers": self.identifiers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        if "encoders" not in d:  # a checkpoint from before column types: numbers only, no missing cells
            return cls(
                [
                    Encoder(n, "number", median=m, mean=m, std=s)
                    for n, m, s in zip(d["features"], d["mean"], d["std"], strict=True)
                ],
                d["labels"],
            )
        return cls(
            [Encoder(**e) for e in d["encoders"]],
            d["labels"],
            d.get("task", "classification"),
            d.get("target_mean", 0.0),
            d.get("target_std", 1.0),
            [str(c) for c in d.get("identifiers", [])],
        )


def sizes(data_cfg) -> dict[str, int]:
    """The data.* limits `fit` takes: categories kept, words per text, vocabulary."""
    return {
        "max_categories": data_cfg.max_categories,
        "max_length": data_cfg.max_length,
        "vocab_size": data_cfg.vocab_size,
        "image_size": data_cfg.image_size,
        "tokenizer": data_cfg.tokenizer,
        "char_ngrams": data_cfg.char_ngrams,
        "numbers": data_cfg.numbers,
        "categories": data_cfg.categories,
    }


def fit(
    train: pd.DataFrame,
    types: dict[str, str],
    all_labels: pd.Series,
    *,
    max_categories: int,
    task: str = "classification",
    train_labels: pd.Series | None = None,
    max_length: int = 64,
    vocab_size: int = 20000,
    image_size: int | None = None,
    tokenizer: str = "words",
    char_ngrams: int = 0,
    numbers: str = "standard",
    categories: str = "onehot",
    backbones: dict[str, tuple[str, str, str]] | None = None,
) -> Preprocessing:
    """Every feature's encoding from the training rows only; classification: the label values from the whole
    set; regression: the target's statistics from `train_labels`. `backbones`: the text columns with a pretrained
    encoder (pretrained.columns)."""
    if numbers == "auto":
        numbers = "ple" if len(train) >= PLE_FROM_ROWS else "standard"
    encoders = [
        fit_encoder(
            name,
            kind,
            train[name],
            max_categories=max_categories,
            max_length=max_length,
            vocab_size=vocab_size,
            image_size=image_size,
            tokenizer=tokenizer,
            char_ngrams=char_ngrams,
            numbers=numbers,
            categories=categories,
            backbone=(backbones or {}).get(name),
        )
        for name, kind in types.items()
    ]
    if task == "regression":
        target = train_labels.to_numpy(dtype=np.float64)
        std = float(target.std())
        return Preprocessing(encoders, [], task, float(target.mean()), std if std > 1e-12 else 1.0)
    labels = sorted({plain(v) for v in all_labels}, key=lambda v: (isinstance(v, str), v))
    return Preprocessing(encoders, labels)
