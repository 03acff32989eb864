"""Where a policy trained, in words: the device, its arithmetic, the optimiser's pace and the time per stage, and the
warning of a training run that was expected to find a GPU on a worker that has none (no PyTorch here: the web process
reads it).
"""
from __future__ import annotations

from typing import Any

STAGES = ("extraction", "data", "training", "policy_gradient", "evaluation")  # extraction: the dataset's job, before
# the run; policy_gradient: the fine-tuning after the offline training (train_crl_policy's default for synthetic data)


def describe(hardware: dict[str, Any]) -> str:
    """One line for ``pipeline.training_hardware``'s dict (plus its optional "seconds" per stage), e.g.
    ``NVIDIA H200 (cuda, bfloat16 autocast), 170.0 optimiser steps/s; data 1 s, training 46 s, evaluation 56 s``;
    "" for an empty dict (a run that has not trained yet)."""
    if not hardware.get("device_name"):
        return ""
    text = (f"{hardware['device_name']} ({hardware.get('device', '?')}, {hardware.get('dtype', '?')}), "
            f"{float(hardware.get('steps_per_s', 0.0)):.1f} optimiser steps/s")
    seconds = hardware.get("seconds") or {}
    stages = [f"{name.replace('_', ' ')} {float(seconds[name]):.0f} s" for name in STAGES if name in seconds]
    return f"{text}; {', '.join(stages)}" if stages else text


def missing_gpu_warning(*, no_cuda: bool, cuda_available: bool, worker: str, gpu_expected: bool) -> str:
    """The warning of a training run that did not ask for the CPU (no_cuda False) on a worker without a usable GPU
    (``torch.cuda.is_available()`` False) where one is expected (``gpu_expected``: the worker's
    CRL_TRAINING_GPU_EXPECTED, on by default with CRL_ENV=production): it trains on the CPU, slower; "" when there
    is nothing to say. Where no GPU is expected (the CPU-only quick start) a run without one trains on the CPU as
    planned, and saying so on every run would be noise."""
    if no_cuda or cuda_available or not gpu_expected:
        return ""
    return (f"No GPU on worker {worker or '(unnamed)'}: torch.cuda.is_available() is False, so this run trains on "
            "the CPU (slower). Start the gpu queue's worker on a machine with a CUDA GPU and a CUDA build of PyTorch, "
            "or tick \"CPU only\" (no_cuda) to train on the CPU on purpose; where the workers are meant to train on "
            "the CPU, set CRL_TRAINING_GPU_EXPECTED=0.")
