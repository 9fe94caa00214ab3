"""Loading models: packaged assets, local folders, and Hub ids (offline and failing)."""

import pytest
import torch
from tiny import tiny_classifier
from transformers import AutoModelForSequenceClassification

from utils import models
from utils.models import ModelLoadError, count_parameters, load_causal_lm, load_classifier, load_tokenizer
from utils.settings_checks import SettingsError


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer("minilm")


def test_the_packaged_encoder_gets_a_new_two_label_head():
    torch.manual_seed(0)
    model = load_classifier("minilm")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.classifier.out_features == 2
    assert 22_000_000 < count_parameters(model) < 23_000_000
    assert model.dtype == torch.float32


def test_the_packaged_causal_lm_knows_a_fact():
    tokenizer, model = load_tokenizer("smollm2"), load_causal_lm("smollm2")
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(output[0, prompt["input_ids"].shape[1] :]).startswith(" Paris")


def test_a_local_folder_loads_like_a_hub_id(tmp_path, minilm_tokenizer):
    """The Hub path is the same call: from_pretrained with a name. A folder stands in for it."""
    tiny_classifier().save_pretrained(tmp_path)
    minilm_tokenizer.save_pretrained(tmp_path)
    model = load_classifier(tmp_path)
    assert isinstance(model, AutoModelForSequenceClassification._model_mapping[type(model.config)])
    assert load_tokenizer(str(tmp_path)).vocab_size == minilm_tokenizer.vocab_size


def test_a_hub_id_while_offline_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as raised:
        load_classifier("distilbert-base-uncased")
    message = str(raised.value)
    assert "offline" in message and "'minilm'" in message and "unset HF_HUB_OFFLINE" in message


def test_a_hub_id_that_cannot_be_downloaded_is_explained(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", unreachable)
    with pytest.raises(ModelLoadError, match="Could not load 'someone/some-model'.*check the spelling and your connection"):
        load_tokenizer("someone/some-model")


def test_folders_that_are_not_models_are_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_classifier(tmp_path)
    with pytest.raises(ModelLoadError, match="No model folder at ./not-here"):
        load_classifier("./not-here")


def test_count_trainable_parameters():
    model = tiny_classifier()
    total = count_parameters(model)
    model.bert.embeddings.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) < total


def test_the_mean_pooling_head_reads_the_average_of_the_real_tokens(minilm_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = load_classifier("minilm", pooling="mean", num_hidden_layers=2).eval()
    assert isinstance(model, models.MeanPoolingClassifier) and model.bert.pooler is None
    batch = minilm_tokenizer(["A gorgeous, moving film.", "Dull."], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.bert(**batch).last_hidden_state
    short = batch["attention_mask"][1].sum()
    by_hand = model.classifier(hidden[1, :short].mean(dim=0))  # padding left out
    assert torch.allclose(logits[1], by_hand, atol=1e-5)


def test_a_saved_mean_pooling_model_reloads_with_its_own_head(minilm_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = load_classifier("minilm", pooling="mean", num_hidden_layers=2).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is models.MeanPoolingClassifier
    batch = minilm_tokenizer(["Fine."], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)


def test_an_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        load_classifier("minilm", pooling="max")


@pytest.mark.parametrize("dropout", [1.0, -0.1, 1.5])
def test_a_dropout_outside_zero_to_one_is_refused_before_the_model_loads(dropout, monkeypatch):
    def no_loading(name):
        raise AssertionError("the model was looked up")

    monkeypatch.setattr(models, "resolve_model_source", no_loading)
    with pytest.raises(SettingsError, match=rf"hidden_dropout_prob must be a probability in \[0, 1\) such as 0.1, "
                                            rf"not {dropout}"):  # fmt: skip
        models.load_classifier("minilm", hidden_dropout_prob=dropout)
