"""Run a short, checkpointed training of a tiny model; used by test_training.py.

Usage: python tiny_training_run.py CHECKPOINT_DIR OUTPUT_FILE [--resume] [--kill-after STEP]
Writes the final weights to OUTPUT_FILE. ``--kill-after`` makes the process kill itself with
SIGKILL right after that optimizer step (no clean-up, no exception: as if the machine failed),
so a test knows exactly where training stopped.
"""

import argparse
import os
import signal
import sys
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
    parser.add_argument("--kill-after", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed_everything(0)
    model = tiny_classifier(seed=0, dropout=0.1)  # dropout: the global RNG matters
    loader = tiny_loader(count=48, batch_size=8, seed=1)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=1e-2)
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, TOTAL_STEPS)

    def kill_after(step, history):
        if step == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    train(
        model, loader, optimizer, scheduler=scheduler, num_epochs=3, checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=2, resume=args.resume, progress=False, on_step=kill_after,
    )  # fmt: skip
    torch.save(model.state_dict(), args.output)


if __name__ == "__main__":
    main()
