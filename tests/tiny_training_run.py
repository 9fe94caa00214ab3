"""Run a short, checkpointed training of a tiny model; used by test_training.py.

Usage: python tiny_training_run.py CHECKPOINT_DIR OUTPUT_FILE [--resume] [--sleep SECONDS]
Writes the final weights to OUTPUT_FILE. ``--sleep`` slows every step down so that
a test can kill the process in the middle of training.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_classifier, tiny_loader
from transformers import get_linear_schedule_with_warmup

from utils.environment import seed_everything
from utils.training import train, weight_decay_groups

TOTAL_STEPS = 18  # 3 epochs of 6 batches: checkpoints land inside and between epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint_dir")
    parser.add_argument("output")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed_everything(0)
    model = tiny_classifier(seed=0, dropout=0.1)  # dropout: the global RNG matters
    loader = tiny_loader(count=48, batch_size=8, seed=1)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=1e-2)
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, TOTAL_STEPS)

    def slow_down(step, history):
        time.sleep(args.sleep)

    train(
        model, loader, optimizer, scheduler=scheduler, num_epochs=3, checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=2, resume=args.resume, progress=False, on_step=slow_down,
    )  # fmt: skip
    torch.save(model.state_dict(), args.output)


if __name__ == "__main__":
    main()
