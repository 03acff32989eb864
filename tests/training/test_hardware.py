"""Device honesty: where a run trained, in words, and the warning of a GPU asked for on a worker without one."""
from __future__ import annotations

from training.hardware import describe, missing_gpu_warning


def test_describe_names_the_device_dtype_pace_and_the_stages_in_order():
    text = describe({"device": "cuda", "device_name": "NVIDIA H200", "dtype": "bfloat16 autocast",
                     "steps_per_s": 170.04, "seconds": {"evaluation": 56.2, "total": 103, "data": 1.2,
                                                        "training": 46.0}})
    assert text == ("NVIDIA H200 (cuda, bfloat16 autocast), 170.0 optimiser steps/s; "
                    "data 1 s, training 46 s, evaluation 56 s")


def test_describe_puts_the_extraction_of_a_runs_dataset_first():
    # a newcomer's finding: the run's page said "data 0 s" and left out the extraction job's 5 s that it records
    text = describe({"device": "cpu", "device_name": "cpu", "dtype": "float32", "steps_per_s": 1.2,
                     "seconds": {"data": 0.1, "training": 52, "evaluation": 23, "total": 75, "extraction": 4.65}})
    assert text.endswith("; extraction 5 s, data 0 s, training 52 s, evaluation 23 s")


def test_describe_gives_the_policy_gradient_stage_its_own_time_after_the_offline_training():
    text = describe({"device": "cpu", "device_name": "cpu", "dtype": "bfloat16 autocast", "steps_per_s": 13.6,
                     "seconds": {"data": 1, "training": 118, "evaluation": 2, "policy_gradient": 359, "total": 480}})
    assert text.endswith("; data 1 s, training 118 s, policy gradient 359 s, evaluation 2 s")


def test_describe_says_nothing_before_training():
    assert describe({}) == "" and describe({"warning": "No GPU"}) == ""


def test_the_missing_gpu_warning_is_given_only_when_a_gpu_was_expected_wanted_and_absent():
    text = missing_gpu_warning(no_cuda=False, cuda_available=False, worker="w1@gpu-box", gpu_expected=True)
    assert "No GPU on worker w1@gpu-box" in text and "CRL_TRAINING_GPU_EXPECTED=0" in text
    assert missing_gpu_warning(no_cuda=True, cuda_available=False, worker="w1", gpu_expected=True) == ""
    assert missing_gpu_warning(no_cuda=False, cuda_available=True, worker="w1", gpu_expected=True) == ""


def test_a_cpu_only_deployment_trains_on_the_cpu_without_the_warning():
    # the quick start (make run, no GPU, CRL_TRAINING_GPU_EXPECTED off): the form's "CPU only" unticked by default
    # must not make every run warn that it trains on the CPU, as planned
    assert missing_gpu_warning(no_cuda=False, cuda_available=False, worker="w1", gpu_expected=False) == ""
