"""tokenizers_vs_words: Kiln's two tokenizers (data.tokenizer: words, and bpe: a vocabulary trained by the
`tokenizers` library), side by side in one run on the same reviews (builtin:reviews, 8000 rows), the same split,
encoder and training loop:

- fit: seconds to fit each vocabulary on the train split's texts; encode: texts a second to ids;
- test accuracy of the bag encoder (networks.TextBag: words plus hashed pairs of ids) under a linear head, trained
  the same number of epochs with the same seed, on the clean test split and on the test split with typos (one
  letter dropped from 15% of the words of length 4 or more: words a word vocabulary has never seen, which BPE
  breaks into pieces it has).

The word vocabulary is data.vocab_size words; BPE's is the same size in subwords (letters and merges).

    .venv/bin/python benchmarks/tokenizers_vs_words.py [--seeds 5] [--epochs 8]   (about 30 s)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.config import SplitConfig
from pipelines.data import text
from pipelines.data.builtin import reviews
from pipelines.data.sources import split
from pipelines.model.networks import TextBag

from common import median, pin_threads, record

VOCAB, MAX_LENGTH = 4000, 48  # reviews.yaml's max_length; the vocabulary is larger than the words these texts use


class Words:
    name = "words"

    def fit(self, texts: list[str]) -> None:
        self.vocabulary = text.fit_vocabulary(texts, size=VOCAB)
        self.size = len(self.vocabulary) + text.RESERVED

    def ids(self, texts: list[str]) -> np.ndarray:
        return text.token_ids(texts, self.vocabulary, max_length=MAX_LENGTH)


class BPE:
    name = "bpe"

    def fit(self, texts: list[str]) -> None:
        self.saved = text.fit_bpe(texts, size=VOCAB)  # data.tokenizer: bpe
        self.size = text.bpe_size(self.saved) + text.RESERVED

    def ids(self, texts: list[str]) -> np.ndarray:
        return text.bpe_ids(texts, self.saved, max_length=MAX_LENGTH)


def typos(texts: list[str], seed: int, share: float = 0.15) -> list[str]:
    rng = np.random.default_rng(seed)

    def drop(word: str) -> str:
        if len(word) < 4 or rng.random() >= share:
            return word
        at = int(rng.integers(1, len(word) - 1))
        return word[:at] + word[at + 1 :]

    return [" ".join(drop(w) for w in t.split()) for t in texts]


def accuracy(
    tokenizer, train_ids, train_y, test_ids: dict[str, np.ndarray], test_y, *, epochs: int, seed: int
) -> dict[str, float]:
    torch.manual_seed(seed)
    model = nn.Sequential(TextBag(tokenizer.size, MAX_LENGTH, 32), nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    x, y = torch.tensor(train_ids), torch.tensor(train_y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return {
            name: float((model(torch.tensor(ids)).argmax(1).numpy() == test_y).mean()) for name, ids in test_ids.items()
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    pin_threads(1)
    frame = reviews(8000, seed=0)
    labels = (frame["sentiment"] == "positive").to_numpy().astype(np.int64)
    train_idx, _, test_idx = split(labels, SplitConfig(val=0.15, test=0.15, seed=0), "classification")
    texts = frame["review"].fillna("").tolist()
    train_texts, test_texts = [texts[i] for i in train_idx], [texts[i] for i in test_idx]
    tests = {"clean": test_texts, "typos": typos(test_texts, seed=1)}
    results = {}
    for tokenizer in (Words(), BPE()):
        started = time.perf_counter()
        tokenizer.fit(train_texts)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        train_ids = tokenizer.ids(train_texts)
        encode_per_s = len(train_texts) / (time.perf_counter() - started)
        test_ids = {name: tokenizer.ids(t) for name, t in tests.items()}
        scores = [
            accuracy(tokenizer, train_ids, labels[train_idx], test_ids, labels[test_idx], epochs=args.epochs, seed=seed)
            for seed in range(args.seeds)
        ]
        results[tokenizer.name] = {
            "fit_s": round(fit_s, 3),
            "encode_texts_per_s": round(encode_per_s),
            "vocabulary": tokenizer.size - text.RESERVED,
            "ids_per_text": round(float((train_ids > 0).sum(1).mean()), 1),
            **{f"test_accuracy_{name}": round(median([s[name] for s in scores]), 4) for name in tests},
        }
        print(tokenizer.name, results[tokenizer.name], flush=True)
    words, bpe = results["words"], results["bpe"]
    detail = {
        "data": "builtin:reviews, 8000 rows, split 0.7/0.15/0.15 seed 0",
        "encoder": "TextBag dim 32 + linear",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "max_length": MAX_LENGTH,
        **results,
    }
    record(
        [
            {
                "name": "text_bpe_minus_words_accuracy_points",
                "value": round(100 * (bpe["test_accuracy_clean"] - words["test_accuracy_clean"]), 2),
                "unit": "points",
                "baseline": "Kiln's word vocabulary, same split, encoder, loop and seeds",
                "detail": detail,
            },
            {
                "name": "text_bpe_minus_words_accuracy_points_typos",
                "value": round(100 * (bpe["test_accuracy_typos"] - words["test_accuracy_typos"]), 2),
                "unit": "points",
                "baseline": "the same, on the test split with a letter dropped from 15% of its words",
                "detail": {"words": words["test_accuracy_typos"], "bpe": bpe["test_accuracy_typos"]},
            },
        ]
    )


if __name__ == "__main__":
    main()
