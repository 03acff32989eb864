"""`dt_policy.onnx`: a trained Decision Transformer as an ONNX graph, for teams that serve the policy elsewhere.

The graph is the model's forward (dt.DecisionTransformer) traced by PyTorch's TorchScript-based exporter
(`torch.onnx.export(..., dynamo=False)`: the newer exporter needs `onnxscript` besides `onnx`), opset `OPSET`,
with the batch and the number of steps left dynamic:

    inputs   returns_to_go float32 [B, T]; states float32 [B, T, S]; actions int64 [B, T]; timesteps int64 [B, T];
             attention_mask int64 [B, T] (1 valid, 0 left padding; all ones for unpadded rows)
    output   logits float32 [B, T, A], read from each state token (T <= the config's context_length)

that is DTLite's `action_logits` with an explicit mask; the tests hold the two to 1e-4. Written only when the
`onnx` package is installed (the `[onnx]` extra), which also checks the graph (`onnx.checker`); ONNX Runtime runs it.
"""
from __future__ import annotations

import importlib.util
import io
import warnings

import torch

OPSET = 17
INPUT_NAMES = ("returns_to_go", "states", "actions", "timesteps", "attention_mask")
OUTPUT_NAME = "logits"


def onnx_available() -> bool:
    """Whether the `onnx` package can be imported (then export writes `dt_policy.onnx`)."""
    return importlib.util.find_spec("onnx") is not None


def onnx_bytes(model: torch.nn.Module) -> bytes:
    """A dt.DecisionTransformer (not imported here: dt.py imports checkpoint.py, which imports this module) as a
    checked ONNX graph (the module docstring's inputs and output), traced in eval mode on the CPU.

    Raises ImportError without the `onnx` package, onnx.checker.ValidationError for a graph ONNX refuses."""
    import onnx

    config = model.config
    T = min(2, config.context_length)  # any length: the traced shapes stay symbolic (dynamic_axes)
    B = 2
    example = (
        torch.zeros(B, T, dtype=torch.float32),
        torch.zeros(B, T, config.state_dim, dtype=torch.float32),
        torch.zeros(B, T, dtype=torch.int64),
        torch.arange(T, dtype=torch.int64).expand(B, T).contiguous(),
        torch.ones(B, T, dtype=torch.int64),
    )
    axes = {name: {0: "batch", 1: "steps"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        # The tracer warns about the Python ints and checks of the forward (sizes, the context-length check); the
        # tests run the graph at other batch sizes and lengths than traced. torch >= 2.9 also warns that this
        # exporter is deprecated: the newer one would add the `onnxscript` dependency.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                _cpu(model), example, buffer, dynamo=False, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def _cpu(model: torch.nn.Module) -> torch.nn.Module:
    # a model trained on a GPU is exported from a CPU copy (the graph's constants are its weights)
    first = next(model.parameters(), None)
    if first is None or first.device.type == "cpu":
        return model
    copy = type(model)(model.config)
    copy.load_state_dict({name: t.detach().cpu() for name, t in model.state_dict().items()})
    return copy.eval()
