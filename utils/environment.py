"""Where code runs and how reproducibly: device, precision, seeds, quiet output, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

# Packages whose versions the course's stored outputs depend on.
REPORTED_PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "evaluate",
    "tokenizers",
    "accelerate",
    "peft",
    "numpy",
    "scikit-learn",
)


def in_colab() -> bool:
    """Return True when running inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def hub_offline() -> bool:
    """Return True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


DEVICE_ENV_VAR = "COURSE_DEVICE"
OUTPUT_ENV_VAR = "COURSE_OUTPUT_DIR"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(allow_mps: bool = False) -> torch.device:
    """Choose where tensors live: CUDA if present, else CPU.

    Apple's MPS backend is used only when ``allow_mps=True``, with a warning,
    because some operations silently give wrong results on it. The environment
    variable ``COURSE_DEVICE`` (``auto``, ``cpu``, ``cuda`` or ``mps``) overrides the
    choice: the test command sets ``COURSE_DEVICE=cpu``, so that on a GPU machine the
    notebooks still run the CPU settings their stored outputs were made with.
    """
    requested = os.environ.get(DEVICE_ENV_VAR, "auto").strip().lower() or "auto"
    if requested not in DEVICE_CHOICES:
        raise ValueError(
            f"{DEVICE_ENV_VAR}={requested!r} is not a device the course knows; use one of {', '.join(DEVICE_CHOICES)}."
        )
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{DEVICE_ENV_VAR}=cuda, but torch sees no CUDA GPU here; unset {DEVICE_ENV_VAR}.")
        return torch.device("cuda")
    if requested == "mps":
        allow_mps = True
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if allow_mps and mps is not None and mps.is_available():
        warnings.warn(
            "Using Apple MPS: some operations are known to give wrong results on it. "
            "Compare a few numbers with a CPU run before trusting a result.",
            stacklevel=2,
        )
        return torch.device("mps")
    return torch.device("cpu")


def output_dir(name: str) -> Path:
    """The folder where a notebook writes checkpoints and saved models: ``outputs/<name>``.

    ``outputs`` is relative to the notebook's folder. The environment variable
    ``COURSE_OUTPUT_DIR`` moves it; the test command points it to a temporary folder, so
    that a test run never overwrites what you saved while working through a notebook.
    """
    return Path(os.environ.get(OUTPUT_ENV_VAR) or "outputs") / name


@dataclass(frozen=True)
class Precision:
    """The numeric format of a training run.

    ``name`` is ``"fp32"``, ``"bf16"`` or ``"fp16"``; ``autocast_dtype`` is the
    dtype for ``torch.autocast`` (None for plain fp32); ``needs_grad_scaler`` says
    whether fp16's small range calls for a ``torch.amp.GradScaler``.
    """

    name: str
    autocast_dtype: torch.dtype | None
    needs_grad_scaler: bool


PRECISIONS = {
    "fp32": Precision("fp32", None, False),
    "bf16": Precision("bf16", torch.bfloat16, False),
    "fp16": Precision("fp16", torch.float16, True),
}


# Native bf16 arithmetic arrived with NVIDIA's Ampere GPUs (compute capability 8.0).
BF16_MIN_CAPABILITY = (8, 0)


def precision_for_gpu(capability: tuple[int, int]) -> Precision:
    """The training precision for an NVIDIA GPU of the given compute capability.

    bf16 only where the GPU computes it natively (8.0 and newer: A100, H100, RTX 30xx...);
    fp16 with a gradient scaler on older GPUs such as the T4 (7.5) of Colab's free tier.
    ``torch.cuda.is_bf16_supported()`` is not used: by default it also counts emulated bf16
    and answers True on a T4, where bf16 would be slow and need the scaler it skips.
    """
    return PRECISIONS["bf16"] if tuple(capability) >= BF16_MIN_CAPABILITY else PRECISIONS["fp16"]


def pick_precision(device: torch.device | str) -> Precision:
    """Choose the training precision for a device: fp32 on CPU and MPS, and on a CUDA GPU
    bf16 or fp16 by its compute capability (``precision_for_gpu``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return PRECISIONS["fp32"]
    return precision_for_gpu(torch.cuda.get_device_capability(device))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) in one call: ``transformers.set_seed``.

    Returns None on purpose: a notebook cell that ends with this call shows no
    output (``torch.manual_seed`` returns a generator whose repr has a memory address).
    """
    import transformers

    transformers.set_seed(seed)


def quiet() -> None:
    """Turn off progress bars and chatter so that notebook outputs are reproducible.

    Silences the progress bars of datasets, transformers, huggingface_hub and of tqdm
    itself (``TQDM_DISABLE=1``, which accelerate's and TRL's wrappers read), lowers
    transformers' and datasets' logging to errors, and hides known harmless warnings.
    The course's training loop follows the same switch (see ``progress_bars_enabled``).
    """
    import datasets
    import huggingface_hub
    import transformers

    os.environ["TQDM_DISABLE"] = "1"  # bars drawn through accelerate's and TRL's tqdm wrappers
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*`past_key_values` is deprecated.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def progress_bars_enabled() -> bool:
    """Return False after ``quiet()``: the course's loops then show no progress bar."""
    import transformers

    return transformers.utils.logging.is_progress_bar_enabled()


def versions_report() -> dict[str, str]:
    """Return the versions of Python, the platform and the course's key packages."""
    report = {"python": platform.python_version(), "platform": platform.system()}
    for package in REPORTED_PACKAGES:
        try:
            report[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            report[package] = "not installed"
    return report


def describe_environment() -> dict[str, str]:
    """Summarise device, precision, Colab and offline status (the same on every CPU machine)."""
    device = pick_device()
    summary = {
        "device": str(device),
        "precision": pick_precision(device).name,
        "colab": str(in_colab()),
        "hub offline": str(hub_offline()),
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary


def machine_report() -> dict[str, str]:
    """What differs from one computer to the next: processor, cores, torch threads, memory."""
    import psutil

    report = {
        "processor": platform.processor() or platform.machine(),
        "cpu cores (logical)": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "cpu capability": str(torch.backends.cpu.get_cpu_capability()),
        "memory (GiB)": f"{psutil.virtual_memory().total / 2**30:.1f}",
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        report["gpu"] = f"{properties.name}, compute capability {properties.major}.{properties.minor}"
        report["gpu memory (GiB)"] = f"{properties.total_memory / 2**30:.1f}"
    return report


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory of this process so far, in MiB.

    On CUDA: the most GPU memory torch has allocated. Elsewhere: the peak resident
    set size of the whole process (Linux and macOS), which never goes down.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class MemoryTracker:
    """Measure the extra memory a block of code needs at its peak, in MiB.

    On CUDA it uses torch's peak-allocation counter. On CPU it samples the
    process's resident memory every few milliseconds in a background thread,
    so short spikes can be missed and the figure is an estimate.

    >>> with MemoryTracker("cpu") as tracker:
    ...     block = torch.ones(1024, 1024, 64)  # 256 MiB, written, so resident
    >>> tracker.peak_increase_mb > 200
    True
    """

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_increase_mb = 0.0
        self._baseline = 0
        self._peak = 0
        self._stop = None
        self._thread = None

    def __enter__(self) -> MemoryTracker:  # noqa: PYI034 (typing.Self needs Python 3.11)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            return self
        import threading

        import psutil

        process = psutil.Process()
        self._baseline = self._peak = process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, process.memory_info().rss)
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            import psutil

            peak = max(self._peak, psutil.Process().memory_info().rss)
        self.peak_increase_mb = (peak - self._baseline) / 2**20


def saved_activation_mib(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """The memory autograd keeps for the backward pass of one forward pass on ``batch``, in MiB.

    Counts every tensor saved for the backward pass while the forward pass runs (the
    activations), once per storage, and leaves out the model's own parameters, which exist
    anyway. Unlike sampling the process's memory, the count is exact and the same on every
    machine. The backward pass is then run to release the saved tensors (gradients are
    accumulated into ``.grad``, as in training). With gradient checkpointing, only what is kept
    until the backward pass is counted, not the recomputation inside it.
    """
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch).loss
    loss.backward()
    return sum(saved.values()) / 2**20
