"""Every dataset Kiln ships: `builtin:<name>` tables written once as parquet (scikit-learn's digits, breast
cancer and diabetes; the generated `customers`, `houses` and `reviews`) and `builtin:digits-images`, scikit-learn's
digits as image files in class folders. Deterministic for a seed; nothing is downloaded.

`reviews`: generated product reviews, free text beside a category, a price and a yes/no answer.

Is a review positive? The words say most of it, and their order matters: "not great" and "never broke" turn a
word's meaning around, so a bag of single words falls short of one that sees word pairs; and in "it is not, to be
fair, flimsy" the "not" is words away from what it turns around, which no word pair sees: a linear model over
words and pairs (the TF-IDF baseline) cannot add "not" and "flimsy" into "good", a network can, given enough rows
(8000 by default; on 2000 it does not yet beat the baseline). A few cells are missing and about 5% of labels
disagree with the text, as in real reviews.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PREFIX = "builtin:"
NAMES = ("digits", "breast_cancer", "diabetes", "customers", "houses", "reviews", "digits-images")


def write_table(name: str, folder: Path) -> Path:
    """A built-in table as a real parquet file (written once, atomically): scikit-learn's digits, breast
    cancer (string labels) and diabetes (a regression: `progression`), or `customers` and `houses`, generated
    tables with the mess real ones have (a yes/no label; a price), and `reviews`, free text (`reviews` below)."""
    path = folder / f"{name}.parquet"
    if path.exists():
        return path
    if name in ("customers", "houses"):
        frame = customers() if name == "customers" else houses()
    elif name == "reviews":
        frame = reviews()
    elif name == "diabetes":
        from sklearn import datasets

        frame = datasets.load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    else:
        from sklearn import datasets

        loaded = (datasets.load_digits if name == "digits" else datasets.load_breast_cancer)(as_frame=True)
        frame = loaded.frame.rename(columns={"target": "label"})
        if name == "breast_cancer":
            frame["label"] = [str(loaded.target_names[i]) for i in frame["label"]]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def write_digits(
    root: Path, *, side: int = 16, colour: bool = False, resample: str = "bilinear", suffix: str = ".png", seed: int = 0
) -> Path:
    """scikit-learn's digits as image files in class folders (root/<digit>/<n><suffix>), upscaled to side x side:
    the image set `builtin:digits-images` is (grey PNG, bilinear). `colour` paints each digit in a random bright
    colour on a random dark background, different for every image (colored MNIST's scheme); `resample` is nearest
    or bilinear; `suffix` .png or .jpg (JPEG at PIL's default quality). Written once; a half-written tree is never
    used (atomic rename)."""
    from PIL import Image
    from sklearn import datasets

    if root.exists():
        return root
    digits = datasets.load_digits()
    rng = np.random.default_rng(seed)
    method = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}[resample]
    tmp = root.with_name(root.name + ".tmp")
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = tmp / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        ink = image / 16.0
        if colour:
            background, foreground = rng.uniform(0, 64, size=3), rng.uniform(96, 255, size=3)
            painted = background + ink[..., None] * (foreground - background)
            picture = Image.fromarray(painted.round().astype(np.uint8), mode="RGB")
        else:
            picture = Image.fromarray((ink * 255).astype(np.uint8), mode="L")
        picture.resize((side, side), method).save(folder / f"{i:04d}{suffix}")
    tmp.replace(root)
    return root


def customers(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Will a customer churn? An id column, string categories, a yes/no answer, missing cells everywhere."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west", "islands"], rows)
    tenure = rng.gamma(2.0, 12.0, rows).round(1)
    spend = (rng.normal(40, 15, rows) + np.select([plan == "plus", plan == "pro"], [20, 45], 0)).round(2)
    support = rng.choice(["yes", "no"], rows, p=[0.3, 0.7])
    score = (
        1.0
        - 0.08 * tenure
        + 0.04 * (spend - 50)
        + 1.5 * (support == "yes")
        - 1.5 * (plan == "pro")
        + 1.0 * (region == "islands")
        + rng.normal(0, 0.5, rows)
    )
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{100000 + i}" for i in range(rows)],
            "plan": plan,
            "region": region,
            "tenure_months": tenure,
            "monthly_spend": spend,
            "called_support": support,
            "churned": np.where(score > 0, "yes", "no"),
        }
    )
    for column, share in (("region", 0.1), ("tenure_months", 0.15), ("monthly_spend", 0.05), ("called_support", 0.1)):
        frame.loc[rng.random(rows) < share, column] = None
    return frame


def houses(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """What is a house's price? An id, string categories, a yes/no answer, missing cells, a skewed target."""
    rng = np.random.default_rng(seed)
    town = rng.choice(
        ["old town", "riverside", "hills", "harbour", "suburbs", "airport"], rows, p=[0.15, 0.2, 0.15, 0.1, 0.3, 0.1]
    )
    rooms = rng.integers(1, 8, rows)
    area = (25 + 18 * rooms + rng.gamma(2.0, 8.0, rows)).round(1)
    built = rng.integers(1900, 2025, rows)
    garage = rng.choice(["yes", "no"], rows, p=[0.4, 0.6])
    premium = (
        pd.Series(town)
        .map({"old town": 1.35, "riverside": 1.25, "hills": 1.15, "harbour": 1.3, "suburbs": 1.0, "airport": 0.8})
        .to_numpy()
    )
    price = (
        2500
        * area
        * premium
        * (1 + 0.1 * (garage == "yes"))
        * (1 - 0.001 * (2025 - built))
        * rng.lognormal(0, 0.08, rows)
    )
    frame = pd.DataFrame(
        {
            "listing": [f"H-{i:06d}" for i in range(rows)],
            "town": town,
            "rooms": rooms,
            "area_m2": area,
            "year_built": built,
            "garage": garage,
            "price": price.round(-2),
        }
    )
    for column, share in (("town", 0.05), ("area_m2", 0.1), ("garage", 0.1), ("year_built", 0.05)):
        frame.loc[rng.random(rows) < share, column] = None
    return frame


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
