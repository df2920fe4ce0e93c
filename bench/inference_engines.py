"""Keras against ONNX Runtime on the same batch: images/s, GFLOP/s and the share of the CPU's FP32 peak.

    .venv/bin/python bench/inference_engines.py                      # InceptionV3 299 px (16, 32) + compact 128 px
    .venv/bin/python bench/inference_engines.py --models compact --compact-repeat 30 --openvino ''
    .venv/bin/python bench/inference_engines.py | tee bench/results/inference-engines-$(date +%F).txt

Engines, each on the same float32 batch: ``keras`` is the classifier's traced pass
(`hydra_assets.ingest.classifier.forward`, TensorFlow's default threads); ``onnxruntime`` is the converted
graph of `hydra_assets.ml.onnx_engine` as production runs it (one intra-op thread per core, every graph
optimisation, no spinning, no memory arena); ``onnxruntime-spinning`` keeps ONNX Runtime's defaults
(threads spin between operators, arena on); ``openvino-f32`` / ``openvino-bf16`` run the same ONNX file
through OpenVINO when it is installed (bf16 uses the AMX units: faster, but not an FP32 figure and not
the same weights to 1e-4 on a trained model).  Timings are interleaved (A B C A B C ...) because the
machine is shared; medians are printed with the best pass and the load average before and after.

FLOPs per image are counted from the layer shapes: 2 x multiply-adds of every Conv2D and Dense layer (batch
norm, activations and pooling, under 1 % of InceptionV3's, are left out).  The FP32 peak is cores x clock
x 64 FLOP/cycle (two AVX-512 FMA units x 16 float32 lanes x 2): the clock is measured with a dependent
`imul` chain (the VM's /proc/cpuinfo shows the nominal 2.1 GHz, not the turbo clock it runs at) and a
small C loop of AVX-512 FMAs, compiled here with gcc, checks the 64 FLOP/cycle per core (on a quiet
machine two threads reached 342 GFLOP/s, 1.96x one: the two vCPUs are separate cores); a large SGEMM
through numpy's BLAS is printed beside it as what a tuned kernel reaches on this machine now.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPES = {"inceptionv3": 299, "compact": 128, "vgg16": 224}


KERNELS = r"""
#include <immintrin.h>
float fma_loop(long iters) {  /* 12 independent AVX-512 FMA chains: enough to fill two FMA units */
  __m512 a[12]; __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < 12; k++) a[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; k++) a[k] = _mm512_fmadd_ps(a[k], b, c);
  }
  __m512 s = a[0];
  for (int k = 1; k < 12; k++) s = _mm512_add_ps(s, a[k]);
  return _mm512_reduce_add_ps(s);
}
long mul_chain(long iters) {  /* dependent imul: 3 cycles each, so the clock is 12 x iters / seconds */
  long x = 1, y = 3;
  for (long i = 0; i < iters; i++)
    __asm__ volatile("imul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0" : "+r"(x) : "r"(y));
  return x;
}
"""


def cpu_facts(folder: Path) -> dict[str, object]:
    """CPU model, flags, cores and the FP32 peak: nominal (/proc/cpuinfo MHz) and measured (clock, FMA loop)."""
    text = Path("/proc/cpuinfo").read_text()
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    from hydra_assets.ml.onnx_engine import cores

    facts: dict[str, object] = {
        "model": fields.get("model name", platform.processor()), "cpu_model": fields.get("model", "?"),
        "cores": cores(), "nominal_ghz": float(fields.get("cpu MHz", "0")) / 1000,
        "flags": " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
                          if f in flags),
        "ghz": None, "fma_gflops": None,
    }
    if "avx512f" in flags and shutil.which("gcc"):
        source, library = folder / "peak.c", folder / "peak.so"
        source.write_text(KERNELS)
        subprocess.run(["gcc", "-O2", "-mavx512f", "-mfma", "-shared", "-fPIC", "-o", str(library), str(source)],
                       check=True)
        lib = ctypes.CDLL(str(library))
        lib.fma_loop.restype, lib.fma_loop.argtypes = ctypes.c_float, [ctypes.c_long]
        lib.mul_chain.restype, lib.mul_chain.argtypes = ctypes.c_long, [ctypes.c_long]
        # Short bursts (~5 ms), many times, the fastest kept: a burst that runs without being descheduled
        # measures the hardware; a long run on a machine at load 8 measures its share of it.
        n, clocks, fmas = 1_000_000, [], []
        for _ in range(300):
            started = time.perf_counter()
            lib.mul_chain(n)
            clocks.append(12 * n / (time.perf_counter() - started) / 1e9)
            started = time.perf_counter()
            lib.fma_loop(n)
            fmas.append(12 * 16 * 2 * n / (time.perf_counter() - started) / 1e9)
        facts["ghz"], facts["fma_gflops"] = max(clocks), max(fmas)
    # the clock under AVX-512 FMAs (below the scalar turbo clock) is the one the peak runs at
    facts["avx_ghz"] = float(facts["fma_gflops"]) / 64 if facts["fma_gflops"] else facts["nominal_ghz"]  # type: ignore[arg-type]
    facts["peak_gflops"] = cores() * float(facts["avx_ghz"]) * 64  # type: ignore[arg-type]
    return facts


def sgemm_gflops(n: int = 2048, repeat: int = 7) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / min(times) / 1e9


def cores() -> int:
    from hydra_assets.ml.onnx_engine import cores as count

    return count()


def model_flops(model) -> float:  # type: ignore[no-untyped-def]
    """FLOPs per image: 2 x multiply-adds of the Conv2D and Dense layers, from their shapes."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return float(total)


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def openvino_engines(onnx_path: Path, precisions: list[str]) -> dict[str, object]:
    """OpenVINO on the same ONNX file, when installed: f32, and bf16 (AMX: not an FP32 figure)."""
    if not precisions:
        return {}
    try:
        import openvino as ov
    except ImportError:
        return {}
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    engines = {}
    for precision in precisions:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                     "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": cores()})
        request = compiled.create_infer_request()
        output = next(o for o in compiled.outputs if "weights" in o.get_names())
        engines[f"openvino-{precision}"] = (lambda r, out: lambda x: r.infer({0: x})[out].copy())(request, output)
    return engines


def spread_answers(model, size: int) -> None:  # type: ignore[no-untyped-def]
    """Scale the random `logits` kernel so that logits differ by a few units between images: with weights=None
    every answer is ~1/n_labels, and an agreement check on those would say little."""
    from hydra_assets.ml.embedding import embed

    features, _ = embed(model, np.random.default_rng(7).random((4, size, size, 3), dtype=np.float32), batch=4)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    scale = 2.0 / max(float(np.std(features @ kernel)), 1e-12)
    logits.set_weights([kernel * scale, bias])


def bench_model(topology: str, batches: list[int], repeat: int, folder: Path, peak: float,
                openvino: list[str]) -> list[str]:
    from hydra_assets.ingest.classifier import forward
    from hydra_assets.ml import onnx_engine
    from hydra_assets.ml.topologies import build_model

    size = SHAPES[topology]
    model = build_model(topology, (size, size, 3), 3)
    spread_answers(model, size)
    flops = model_flops(model)
    lines = [f"\n== {topology} {size}x{size}: {flops / 1e9:.3f} GFLOP per image (conv + dense, 2 x MACs)"]
    path = folder / f"{topology}.keras"
    model.save(path)
    started = time.perf_counter()
    onnx_path = onnx_engine.convert(model, folder / f"{topology}.onnx")
    lines.append(f"   conversion (tf2onnx, opset {onnx_engine.OPSET}): {time.perf_counter() - started:.1f} s, "
                 f"{onnx_path.stat().st_size / 1e6:.0f} MB")
    keras_fn = forward(model)
    production = onnx_engine.Runner(onnx_engine.session(onnx_path), onnx_path)
    spinning = onnx_engine.Runner(onnx_engine.session(onnx_path, spinning=True, arena=True), onnx_path)
    engines = {
        "keras": lambda x: np.asarray(keras_fn(x)),
        "onnxruntime": lambda x: production.weights(x, len(x)),
        "onnxruntime-spinning": lambda x: spinning.weights(x, len(x)),
        **openvino_engines(onnx_path, openvino),
    }
    for n in batches:
        x = np.random.default_rng(n).random((n, size, size, 3), dtype=np.float32)
        reference = engines["keras"](x)
        diffs = {name: float(np.abs(fn(x) - reference).max()) for name, fn in engines.items() if name != "keras"}
        times: dict[str, list[float]] = {name: [] for name in engines}
        before = loadavg()
        reps = max(repeat, 320 // n) if topology == "compact" else repeat  # small batches: more passes
        for _ in range(reps):  # interleaved: every engine sees the same load
            for name, fn in engines.items():
                t = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t)
        lines.append(f"   batch {n}: median of {reps} interleaved passes; load average {before} -> {loadavg()}; "
                     f"weights spread {float(reference.max() - reference.min()):.3f}")
        keras_s = statistics.median(times["keras"])
        for name, values in times.items():
            median = statistics.median(values)
            gflops = flops * n / median / 1e9
            agree = "" if name == "keras" else f"  max |dw| {diffs[name]:.1e}"
            agree += "  (bf16: not FP32)" if name.endswith("bf16") else ""
            lines.append(f"     {name:<19} {n / median:8.1f} img/s  {median * 1000:8.1f} ms/batch  "
                         f"{gflops:6.1f} GFLOP/s  {100 * gflops / peak:5.1f} % of peak  "
                         f"x{keras_s / median:4.2f} vs keras  (best {100 * flops * n / min(values) / 1e9 / peak:4.1f} %"
                         f" of peak, slowest {max(values) * 1000:.0f} ms){agree}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="inceptionv3,compact")
    parser.add_argument("--batches", default="16,32", help="batch sizes for InceptionV3 and VGG16 (64 x 299 px "
                        "with five engines held ~13 GB here)")
    parser.add_argument("--compact-batches", default="1,8,64")
    parser.add_argument("--openvino", default="f32,bf16", help="OpenVINO precisions to add when it is installed "
                        "('' for none)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compact-repeat", type=int, default=15)
    args = parser.parse_args()
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python {platform.python_version()}, "
          f"tensorflow {tf.__version__}, onnxruntime {onnxruntime.__version__}, tf2onnx {tf2onnx.__version__}")
    with tempfile.TemporaryDirectory(prefix="hydra-engines-") as folder:
        facts = cpu_facts(Path(folder))
        print(f"CPU: {facts['model']} (family 6 model {facts['cpu_model']}), {facts['cores']} cores, "
              f"flags {facts['flags']}; /proc/cpuinfo says {facts['nominal_ghz']:.2f} GHz (nominal)", flush=True)
        if facts["ghz"]:
            print(f"measured (fastest of 300 bursts of ~5 ms): scalar clock {facts['ghz']:.2f} GHz (dependent imul "
                  f"chain); AVX-512 FMA loop on one core {facts['fma_gflops']:.0f} GFLOP/s = "
                  f"{facts['fma_gflops'] / facts['ghz']:.1f} FLOP per scalar cycle: two FMA units (64 FLOP/cycle) "
                  f"at an AVX-512 clock of {facts['avx_ghz']:.2f} GHz", flush=True)  # type: ignore[operator]
        peak = float(facts["peak_gflops"])  # type: ignore[arg-type]
        print(f"FP32 peak = {facts['cores']} cores x {facts['avx_ghz']:.2f} GHz x 64 FLOP/cycle (2 AVX-512 FMA units x "
              f"16 float32 lanes x 2 FLOPs) = {peak:.0f} GFLOP/s (at the nominal {facts['nominal_ghz']:.2f} GHz: "
              f"{facts['cores'] * facts['nominal_ghz'] * 64:.0f})", flush=True)  # type: ignore[operator]
        sgemm = sgemm_gflops()
        print(f"numpy SGEMM 2048^3 (OpenBLAS, best of 7): {sgemm:.0f} GFLOP/s = {100 * sgemm / peak:.0f} % of peak; "
              f"load average {loadavg()}", flush=True)
        for topology in args.models.split(","):
            compact = topology == "compact"
            batches = [int(b) for b in (args.compact_batches if compact else args.batches).split(",")]
            for line in bench_model(topology, batches, args.compact_repeat if compact else args.repeat,
                                    Path(folder), peak, [p for p in args.openvino.split(",") if p]):
                print(line, flush=True)
        print(f"\nload average at the end {loadavg()}")


if __name__ == "__main__":
    main()
