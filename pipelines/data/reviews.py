"""`builtin:reviews`: generated product reviews, free text beside a category, a price and a yes/no answer.

Is a review positive? The words say most of it, and their order matters: "not great" and "never broke" turn a
word's meaning around, so a bag of single words falls short of one that sees word pairs; and in "it is not, to be
fair, flimsy" the "not" is words away from what it turns around, which no word pair sees: a linear model over
words and pairs (the TF-IDF baseline) cannot add "not" and "flimsy" into "good", a network can, given enough rows
(8000 by default; on 2000 it does not yet beat the baseline). A few cells are missing and about 5% of labels
disagree with the text, as in real reviews. Deterministic for a seed; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRODUCTS = ["kettle", "backpack", "headphones", "desk lamp", "blender", "rain jacket", "keyboard", "tent"]
GOOD = ["great", "excellent", "sturdy", "comfortable", "reliable", "quiet", "beautiful", "solid"]
BAD = ["flimsy", "noisy", "cheap", "useless", "awful", "fragile", "disappointing", "uncomfortable"]
BROKE = ["broke", "cracked", "stopped working", "fell apart", "leaked"]
FILLER = [
    "I bought it for my {who} last {when}.",
    "It arrived on {day} in a plain box.",
    "The {product} comes in {colour}.",
    "I use it every {when}.",
    "Delivery took {n} days.",
    "My {who} tried it as well.",
]
SENTENCES = [  # (template, what it says about the product); "not" and "never" turn a word around
    ("The {product} is {good}.", 1.0),
    ("The {product} is {bad}.", -1.0),
    ("Honestly it is not {good}.", -1.0),
    ("It {broke} after a {when}.", -1.5),
    ("It never {broke} and is not {bad}.", 1.5),
    ("It is not, {hedge}, {good}.", -1.0),
    ("It is not, {hedge}, {bad}.", 1.0),  # "not" words away
    ("It is, {hedge}, {good}.", 1.0),
    ("It is, {hedge}, {bad}.", -1.0),
] + [(filler, 0.0) for filler in FILLER]
HEDGES = ["to be fair", "as far as I can tell", "whatever the box says", "after a few weeks of use", "honestly"]
WHO = ["sister", "son", "partner", "office", "father", "flatmate"]
WHEN = ["week", "month", "spring", "winter", "morning", "weekend"]
DAYS = ["Monday", "Tuesday", "Friday", "Saturday"]
COLOURS = ["black", "grey", "green", "white", "red"]


def reviews(rows: int = 8000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def pick(options):
        return options[rng.integers(len(options))]

    texts, scores = [], []
    for _ in range(rows):
        product, score, sentences = pick(PRODUCTS), 0.0, []
        for _ in range(rng.integers(2, 5)):
            sentence, delta = SENTENCES[rng.integers(len(SENTENCES))]
            sentences.append(
                sentence.format(
                    product=product,
                    good=pick(GOOD),
                    bad=pick(BAD),
                    broke=pick(BROKE),
                    who=pick(WHO),
                    when=pick(WHEN),
                    day=pick(DAYS),
                    colour=pick(COLOURS),
                    n=rng.integers(2, 9),
                    hedge=pick(HEDGES),
                )
            )
            score += delta
        texts.append((product, " ".join(sentences)))
        scores.append(score)
    score = np.array(scores) + rng.normal(0, 0.1, rows)  # breaks ties; the 5% flipped labels are the noise
    positive = (score > 0) ^ (rng.random(rows) < 0.05)
    frame = pd.DataFrame(
        {
            "review": [t for _, t in texts],
            "product": [p for p, _ in texts],
            "price": rng.gamma(3.0, 15.0, rows).round(2),
            "verified": rng.choice(["yes", "no"], rows, p=[0.8, 0.2]),
            "sentiment": np.where(positive, "positive", "negative"),
        }
    )
    for column, share in (("review", 0.03), ("price", 0.05), ("verified", 0.05)):
        frame.loc[rng.random(rows) < share, column] = None
    return frame
