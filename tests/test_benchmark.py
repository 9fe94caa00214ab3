"""The throughput benchmark runs both sides and reports a ratio (its speed is not asserted)."""

import torch
from transformers import BertConfig, BertForSequenceClassification

from utils.benchmark import BenchmarkSettings, _timing, compare, main
from utils.models import load_tokenizer


def test_step_times_are_the_gaps_between_step_ends():
    timing = _timing([1.0, 1.5, 2.5], started=0.5, examples=30)
    assert timing.step_seconds == [0.5, 1.0] and timing.examples_per_second == 15.0


def test_the_benchmark_compares_both_sides_on_a_tiny_model(tmp_path, capsys):
    tokenizer = load_tokenizer("minilm")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    result = compare(BenchmarkSettings(model=str(tmp_path), num_examples=48, batch_size=8, max_length=16, rounds=1))
    assert result["examples"] == 48 and result["ratio"] > 0 and len(result["round_ratios"]) == 1
    assert main(["--model", str(tmp_path), "--num-examples", "24", "--batch-size", "8", "--rounds", "1"]) == 0
    assert "utils-loop/Trainer throughput ratio" in capsys.readouterr().out
