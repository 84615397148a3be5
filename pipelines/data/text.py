"""Free text as token ids: a word vocabulary fitted on the train split, saved with the model as JSON.

Words are lower-cased runs of letters, digits and apostrophes, and `!`/`?` on their own. The vocabulary keeps
the train split's most frequent words seen at least twice (at most `data.vocab_size`); a row becomes
`data.max_length` ids, padded with 0. Reserved ids: 0 padding, 1 a word outside the vocabulary, 2 an empty or
missing text (so every row has at least one id an encoder can attend to). Word pairs (bigrams) are not in the
vocabulary: the bag encoder hashes pairs of ids itself (networks.TextBag).

Or, with `data.tokenizer: bpe`, byte-pair pieces trained on the train split by the `tokenizers` library
(`fit_bpe`), saved as that library's own JSON (a declarative file, no code). Measured side by side
(benchmarks/tokenizers_vs_words.py, the bag encoder on builtin:reviews, 5 seeds), BPE of the same vocabulary size
scored 1.2 points higher on the clean test split and 2.8 points higher with a letter dropped from 15% of its words
(an unseen word is UNKNOWN to a word vocabulary; BPE still knows its pieces), at half the encoding speed. Words
stay the default: a vocabulary anyone can read in the model's JSON, for about a point on clean text.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

PAD, UNKNOWN, EMPTY = 0, 1, 2
RESERVED = 3
MIN_COUNT = 2
WORD = re.compile(r"[\w']+|[!?]")


def is_missing(value) -> bool:
    """None, NaN or pandas' NA: a missing cell, whatever the column's dtype."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def words(text) -> list[str]:
    """A cell's words; a missing cell has none."""
    if is_missing(text):
        return []
    return WORD.findall(str(text).lower())


def fit_vocabulary(texts: Iterable, *, size: int) -> list[str]:
    """The most frequent words seen at least MIN_COUNT times, most frequent first (ties alphabetical)."""
    counts = Counter(w for text in texts for w in words(text))
    ranked = sorted((item for item in counts.items() if item[1] >= MIN_COUNT), key=lambda item: (-item[1], item[0]))
    return [w for w, _ in ranked[:size]]


def token_ids(texts: Iterable, vocabulary: list[str], *, max_length: int) -> np.ndarray:
    """[rows, max_length] int64 ids: the first max_length words of each text, then padding."""
    index = {w: i + RESERVED for i, w in enumerate(vocabulary)}
    rows = []
    for text in texts:
        found = [index.get(w, UNKNOWN) for w in words(text)[:max_length]] or [EMPTY]
        rows.append(found + [PAD] * (max_length - len(found)))
    return np.array(rows, dtype=np.int64).reshape(-1, max_length)


def fit_bpe(texts: Iterable, *, size: int) -> str:
    """A byte-pair vocabulary of at most `size` pieces (merges seen at least MIN_COUNT times), lower-cased and
    split on whitespace and punctuation first, as the `tokenizers` library's JSON."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=size, min_frequency=MIN_COUNT, special_tokens=["[UNK]"], show_progress=False
    )
    tokenizer.train_from_iterator((str(t) for t in texts if not is_missing(t)), trainer)
    return tokenizer.to_str()


@functools.lru_cache(maxsize=8)
def _bpe(saved: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(saved)


def bpe_size(saved: str) -> int:
    return _bpe(saved).get_vocab_size()


def bpe_ids(texts: Iterable, saved: str, *, max_length: int) -> np.ndarray:
    """[rows, max_length] int64 ids of `fit_bpe`'s pieces (shifted past the reserved ids), then padding; the
    library's own unknown piece maps to UNKNOWN."""
    texts = list(texts)
    present = [i for i, t in enumerate(texts) if not is_missing(t) and str(t).strip()]
    rows = np.zeros((len(texts), max_length), dtype=np.int64)
    rows[:, 0] = EMPTY
    tokenizer = _bpe(saved)
    unknown = tokenizer.token_to_id("[UNK]")
    for row, encoded in zip(present, tokenizer.encode_batch([str(texts[i]) for i in present]), strict=True):
        ids = [UNKNOWN if i == unknown else i + RESERVED for i in encoded.ids[:max_length]] or [EMPTY]
        rows[row, : len(ids)] = ids
    return rows


def looks_like_text(values) -> bool:
    """Free-form strings rather than categories or identifiers: among at least 20 cells, a mean length over 30
    characters, at least 3 words a cell on average (a UUID, a URL or an e-mail address is one) and mostly
    distinct values (schema.infer_type's rule)."""
    present = [str(v) for v in values]
    if len(present) < 20:
        return False
    mean_length = sum(map(len, present)) / len(present)
    mean_words = sum(len(v.split()) for v in present) / len(present)
    return mean_length > 30 and mean_words >= 3 and len(set(present)) >= 0.5 * len(present)


CHAR_BUCKETS = 1 << 15  # hashed character n-gram ids: the rows of a TextBag's character table
CHAR_SIZES = (3, 4, 5)


def char_ngram_ids(texts: Iterable, *, count: int, buckets: int = CHAR_BUCKETS) -> np.ndarray:
    """[rows, count] hashed ids (1..buckets-1; 0 pads) of each text's character 3- to 5-grams, case kept, over
    the text with a space at each end (so a word's first and last letters make n-grams of their own): the
    first `count` distinct ones, by position. They catch what a word vocabulary drops: misspellings, handles,
    URLs, casing, numbers (fastText's subwords, Bojanowski et al. 2017). crc32 is stable across processes,
    unlike Python's salted hash()."""
    found = []
    for value in texts:
        string = "" if is_missing(value) else f" {' '.join(str(value).split())} "
        seen: dict[int, None] = {}
        for start in range(len(string)):
            for n in CHAR_SIZES:
                if start + n <= len(string):
                    seen.setdefault(zlib.crc32(string[start : start + n].encode()) % (buckets - 1) + 1)
            if len(seen) >= count:
                break
        found.append(list(seen)[:count])
    rows = np.zeros((len(found), count), dtype=np.int64)
    for row, ids in enumerate(found):
        rows[row, : len(ids)] = ids
    return rows
