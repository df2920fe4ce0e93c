"""ONNX Runtime for the plain forward pass: the same weights (and embedding) as Keras, faster on a CPU.

A model version's Keras graph is converted once (tf2onnx, on its first use in a process) into
``models_dir/<name>/<version>/forward.onnx``, stamped with the SHA-256 of the `.keras` file it came from,
so a replaced file is converted again and a stale one is never run.  The converted graph answers
``weights`` and, where the model has one (`ml/embedding.py`), ``embedding`` in one pass.  GradCAM needs
gradients and stays on Keras.  `HYDRA_INFERENCE_ENGINE` chooses (docs/models.md, "Inference engine").

Never a failed chunk: a missing converter, a conversion that fails or a corrupt file makes `runner_for`
answer None, with the reason logged once, and the caller runs the Keras graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
FILE_NAME = "forward.onnx"
OPSET = 17
SOURCE_KEY = "hydra_source_sha256"  # metadata of the .onnx file: the .keras file it was converted from
OUTPUTS_KEY = "hydra_outputs"
# Topologies `auto` runs on ONNX Runtime: where it beat Keras (bench/results/inference-engines-*.txt).  On
# InceptionV3 at 299 px it did not (0.7-1.15x: both end in the same kind of AVX-512 convolution kernels), so
# it stays on Keras unless HYDRA_INFERENCE_ENGINE=onnxruntime.
AUTO_TOPOLOGIES = frozenset({"compact"})
_RUNNERS: "weakref.WeakKeyDictionary[Any, Runner | None]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # one conversion at a time in a process


class ConversionError(RuntimeError):
    """The Keras graph could not be converted or the converted file cannot be run."""


def available() -> bool:
    """ONNX Runtime and the converter are installed."""
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(model: Any, target: Path, *, source_digest: str = "") -> Path:
    """Write `model`'s forward pass (embedding and weights, or weights alone) as ONNX to `target`.

    The file is written beside `target` and renamed into place, so a process reading it (another worker
    converting the same version) never sees half a file.
    """
    import tensorflow as tf
    import tf2onnx

    from hydra_assets.ml.embedding import with_embedding

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    both = with_embedding(model)
    spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")]
    if both is None:
        names = ["weights"]
        fn = tf.function(lambda x: model(x, training=False), input_signature=spec)
    else:
        names = ["embedding", "weights"]
        fn = tf.function(lambda x: both([x], training=False), input_signature=spec)
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    except Exception as error:  # tf2onnx raises many kinds
        raise ConversionError(f"tf2onnx cannot convert {model.name}: {type(error).__name__}: {error}") from error
    if len(proto.graph.output) != len(names):
        raise ConversionError(f"{model.name}: converted graph has {len(proto.graph.output)} outputs, expected {names}")
    _rename_outputs(proto, names)
    for key, value in ((SOURCE_KEY, source_digest), (OUTPUTS_KEY, ",".join(names))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(proto.SerializeToString())
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return target


def _rename_outputs(proto: Any, names: list[str]) -> None:
    """Give the graph outputs the names callers ask for (tf2onnx names them after TensorFlow's Identity ops)."""
    renamed = {out.name: new for out, new in zip(proto.graph.output, names, strict=True)}
    for node in proto.graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    for out in proto.graph.output:
        out.name = renamed[out.name]


def session(path: Path, *, threads: int | None = None, spinning: bool = False, arena: bool = False) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation, one intra-op thread per core.

    Without spinning: threads that busy-wait between operators take the CPU from the decode and database
    work of the same pipeline on a busy 2-core machine (and measured slower there, bench/inference_engines.py).
    Without the memory arena: an arena keeps the largest batch's activations per session (GBs for
    InceptionV3 at 64 x 299 px), and the predictor service keeps many versions loaded.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = arena
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Runner:
    """A converted model version: weights (N, n_labels) and its embedding (N, D) or None, per batch."""

    def __init__(self, sess: Any, path: Path) -> None:
        self.session, self.path = sess, path
        self.input_name = sess.get_inputs()[0].name
        self.outputs = [o.name for o in sess.get_outputs()]
        if "weights" not in self.outputs:
            raise ConversionError(f"{path} has no 'weights' output (outputs: {self.outputs})")

    @property
    def has_embedding(self) -> bool:
        return "embedding" in self.outputs

    def weights(self, floats: np.ndarray, batch: int) -> np.ndarray:
        return self._run(floats, batch, ["weights"])[0]

    def embeddings_and_weights(self, floats: np.ndarray, batch: int) -> tuple[np.ndarray | None, np.ndarray]:
        if not self.has_embedding:
            return None, self.weights(floats, batch)
        features, weights = self._run(floats, batch, ["embedding", "weights"])
        return features.reshape(len(floats), -1), weights

    def _run(self, floats: np.ndarray, batch: int, names: list[str]) -> list[np.ndarray]:
        parts = [self.session.run(names, {self.input_name: np.ascontiguousarray(floats[i : i + batch], np.float32)})
                 for i in range(0, len(floats), batch)]
        return [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(names))]


def load_or_convert(model: Any, keras_path: Path, target: Path, *, what: str) -> Runner:
    """The runner of a model version: its converted file when it matches the `.keras` file, else a new one."""
    digest = file_digest(keras_path)
    with _LOCK:
        if target.is_file():
            try:
                sess = session(target)
                if sess.get_modelmeta().custom_metadata_map.get(SOURCE_KEY) == digest:
                    return Runner(sess, target)
                log.info("%s: %s was converted from another file: converting again", what, target)
            except Exception as error:  # a corrupt or truncated file: convert again
                log.warning("%s: cannot run %s (%s): converting again", what, target, error)
        started = time.perf_counter()
        convert(model, target, source_digest=digest)
        runner = Runner(session(target), target)
    log.info("%s: converted to ONNX in %.1f s (%s)", what, time.perf_counter() - started, target)
    return runner


def runner_for(active: Any) -> Runner | None:
    """The ONNX Runtime runner of an active model version, or None when it runs on Keras (`keras`; `auto` for
    a topology outside AUTO_TOPOLOGIES or without ONNX Runtime installed; any conversion failure).

    Resolved once per loaded model in a process (a failure too: its reason is logged once, not per chunk).
    """
    engine = getattr(active, "engine", "keras")
    target = getattr(active, "onnx_path", None)
    keras_path = getattr(active, "keras_path", None)
    if engine == "keras" or target is None or keras_path is None:
        return None
    if engine == "auto" and getattr(active, "topology", "") not in AUTO_TOPOLOGIES:
        return None
    model = active.keras_model
    if model in _RUNNERS:
        return _RUNNERS[model]
    runner = None
    if not available():
        level = logging.WARNING if engine == "onnxruntime" else logging.INFO
        log.log(level, "%s: inference on Keras: onnxruntime or tf2onnx is not installed", active.key)
    else:
        try:
            runner = load_or_convert(model, Path(keras_path), Path(target), what=f"model {active.key}")
            if len(active.label_names) != runner.session.get_outputs()[runner.outputs.index("weights")].shape[-1]:
                raise ConversionError(f"{target} does not answer {len(active.label_names)} weights")
        except Exception as error:  # conversion or runtime of any kind: Keras answers, never a failed chunk
            log.warning("%s: inference on Keras: no ONNX Runtime model: %s", active.key, error)
            runner = None
    _RUNNERS[model] = runner
    return runner


def forget(active: Any, error: BaseException) -> None:
    """A runner that failed at run time: this loaded model goes back to Keras in this process."""
    log.warning("%s: inference on Keras from now on: ONNX Runtime failed: %s: %s", active.key,
                type(error).__name__, error)
    _RUNNERS[active.keras_model] = None


__all__ = ["AUTO_TOPOLOGIES", "FILE_NAME", "ConversionError", "Runner", "available", "convert", "forget", "load_or_convert",
           "runner_for", "session"]
