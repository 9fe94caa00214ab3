"""Shared helpers of the fine-tuning course.

Each module covers one concern and is imported on its own, for example
``from utils.environment import seed_everything``:

- ``environment``: device, precision, seeding, quiet mode, versions.
- ``assets``: fetch, verify and prepare the course's packaged models and data.
- ``data``: the sentiment data set, the Shakespeare corpus, and learners' own files.
- ``models``: load tokenizers and models from a packaged asset, a folder or the Hub.
- ``training``: the training loop taught in notebook 03, with checkpoints.
- ``evaluation``: predictions, metrics, bootstrap intervals, prompting baselines.
- ``language_modeling``: packing, prompt masking, perplexity and generation.
- ``plotting``: the figures the notebooks draw again and again.
"""

__version__ = "1.0.0"
