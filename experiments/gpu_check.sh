#!/usr/bin/env bash
# Everything a CPU-only machine cannot check, in one command, on a machine with an NVIDIA GPU:
#
#   bash experiments/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu_check_<date>
#
#   1. the tests marked `gpu` (Triton IRNN vs the reference, the authors' design in Triton, ...)
#   2. the Triton IRNN against the C scan (CPU) and the PyTorch scan (GPU): forward and all gradients
#   3. a 2-GPU DDP training run under Hydra (only when 2 or more GPUs are visible)
#   4. SPANet's memory-lean inference on the GPU: bytes per pixel (peak allocator memory) at 1, 4 and 16 MP
#      against the modules' forward, and the output difference (PASS/FAIL lines with the numbers)
#   5. experiments/irnn_authors_design.py: our IRNN forward+backward vs the authors' kernel design (one thread
#      per output, rescanning from the border) vs the bandwidth floor
#   6. experiments/bench_spanet.py --device cuda
#   7. experiments/bench_train.py --device cuda at the SPANet recipe's paper batch (32) and crop (256)
#   8. experiments/bench_models.py --device cuda: every network's forward and forward+backward at batch 8, 256x256
#
# Every step's full output goes to OUT_DIR/<step>.log; the end prints one summary (PASS/FAIL per step and the
# tables). Exit status: the number of failed steps. Run from the repository root with the suite's environment
# active (CUDA build of torch, triton). Takes about 10-20 minutes on one recent GPU.
set -u
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check_$(date +%Y%m%d_%H%M%S)}"
mkdir -p "$OUT"
export WANDB_MODE="${WANDB_MODE:-offline}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
declare -a NAMES STATUS
FAILED=0

step() {  # step NAME COMMAND... : run, log, record
  local name="$1"; shift
  echo "=== $name: $*" | tee "$OUT/$name.log"
  if "$@" >> "$OUT/$name.log" 2>&1; then s=PASS; else s="FAIL (status $?)"; FAILED=$((FAILED + 1)); fi
  NAMES+=("$name"); STATUS+=("$s")
  echo "=== $name: $s"
}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); nothing to check" >&2
  exit 1
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" -c "import torch; print('devices:', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], 'torch', torch.__version__, 'CUDA', torch.version.cuda)" | tee "$OUT/device.txt"
"$PY" -c "import triton; print('triton', triton.__version__)" >> "$OUT/device.txt" 2>&1 || echo "triton: not importable (the IRNN falls back to the PyTorch scan on CUDA)" >> "$OUT/device.txt"

step gpu_tests "$PY" -m pytest -q -m gpu -p no:cacheprovider tests

step triton_vs_c "$PY" - <<'PYEOF'
import torch
from src.models.irnn import irnn, c_backend_available
torch.manual_seed(0)
worst = 0.0
for shape in [(2, 32, 64, 64), (1, 32, 257, 131), (1, 8, 512, 512)]:
    x = torch.randn(*shape, dtype=torch.float64)
    w = torch.rand(4, shape[1], dtype=torch.float64) * 1.2
    b = torch.rand(4, shape[1], dtype=torch.float64) * 2 - 1
    g = torch.randn(shape[0], 4, *shape[1:], dtype=torch.float64)
    ref = {}
    for name, dev, backend in [("c", "cpu", "c" if c_backend_available() else "torch"),
                               ("torch-cuda", "cuda", "torch"), ("triton", "cuda", "triton")]:
        xs, ws, bs = (t.to(dev, torch.float32).requires_grad_() for t in (x, w, b))
        out = irnn(xs, ws, bs, backend=backend)
        grads = torch.autograd.grad(out, (xs, ws, bs), g.to(dev, torch.float32))
        ref[name] = [t.detach().double().cpu() for t in (out, *grads)]
    for name in ("torch-cuda", "triton"):
        for what, a, e in zip(("out", "dx", "dw", "db"), ref[name], ref["c"]):
            err = ((a - e).abs().max() / e.abs().max().clamp_min(1e-12)).item()
            worst = max(worst, err)
            print(f"{shape} {name} vs c: {what} max rel err {err:.2e}")
print(f"worst relative error {worst:.2e}")
assert worst < 1e-4, worst
PYEOF

if [ "$NGPU" -ge 2 ]; then
  step ddp_2gpu bash -c "$PY -m src.train trainer=ddp trainer.devices=2 model=spanet debug=limit \
      data.test_photos=[chelsea] data.eval_long_side=64 schedule.batch_size=8 hydra.run.dir=$OUT/ddp_run \
      && $PY -c \"import json; m = json.load(open('$OUT/ddp_run/metrics.json')); \
print('ddp metrics:', m['global_step'], m['cost']); assert m['cost']['device_count'] == 2 and m['val']['n_images'] == 3\""
else
  NAMES+=("ddp_2gpu"); STATUS+=("SKIPPED (1 GPU)")
fi

step lean_memory "$PY" - <<'PYEOF'
# SPANet's memory-lean inference (src/models/spanet_lean.py) on the GPU: peak allocator memory per pixel against
# the modules' forward under inference_mode, and the largest output difference (TF32 off: both in float32).
import time, torch
from src.models.spanet import SPANet
from src.utils.checkpoint import load_net_weights
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
dev, failed = torch.device("cuda"), 0
def run(net, x, lean):
    net.lean_inference = lean
    torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    base, t0 = torch.cuda.memory_allocated(), time.perf_counter()
    with torch.inference_mode():
        out = net(x)["out"]
    torch.cuda.synchronize()
    return out, (torch.cuda.max_memory_allocated() - base) / x[0, 0].numel(), time.perf_counter() - t0
for name, mps in (("spanet", (1, 4, 16)), ("b_a", (4,)), ("spanet_release", (4,))):
    torch.manual_seed(0)
    net = (load_net_weights(SPANet("b_d"), "weights/spanet_release.pt") if name == "spanet_release"
           else SPANet("b_f" if name == "spanet" else name)).eval().to(dev)
    run(net, torch.rand(1, 3, 64, 64, device=dev), True)  # warm-up: Triton compiles, cuDNN plans
    for mp in mps:
        w = int(round((mp * 1e6 * 4 / 3) ** 0.5)); x = torch.rand(1, 3, int(round(mp * 1e6 / w)), w, device=dev)
        lean, bpp, t = run(net, x, True)
        ref, bpp_ref, t_ref = run(net, x, False)
        diff = (lean - ref).abs().max().item()
        ok = bpp <= 500 and diff <= 1e-5
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} lean {name} {mp} MP: {bpp:.0f} B/px (modules' forward {bpp_ref:.0f}, "
              f"{bpp / bpp_ref:.2f}x), {t:.2f} s vs {t_ref:.2f} s, max |lean - forward| {diff:.1e} "
              f"(limits: 500 B/px, 1e-5)")
        del lean, ref, x
raise SystemExit(failed)
PYEOF

step irnn_vs_authors "$PY" experiments/irnn_authors_design.py --device cuda
step bench_spanet "$PY" experiments/bench_spanet.py --device cuda --json "$OUT/bench_spanet.json"
step bench_train "$PY" experiments/bench_train.py --device cuda --batch 32 --crop 256 --workers 8 --steps 20 \
     --warmup 5 --json "$OUT/bench_train.json"
step bench_models "$PY" experiments/bench_models.py --device cuda --batch 8 --side 256 --repeats 5 --warmup 2 \
     --json "$OUT/bench_models.json"

echo
echo "================ gpu_check summary ($OUT) ================"
cat "$OUT/device.txt"
for i in "${!NAMES[@]}"; do printf '%-18s %s\n' "${NAMES[$i]}" "${STATUS[$i]}"; done
echo
grep -h "worst relative error" "$OUT/triton_vs_c.log" 2>/dev/null
grep -hE "^(PASS|FAIL) lean" "$OUT/lean_memory.log" 2>/dev/null
for f in irnn_vs_authors bench_spanet bench_train bench_models; do
  echo; echo "--- $f"; grep -E '^\||^[A-Za-z].*(recipe|IRNN|Inference)' "$OUT/$f.log" 2>/dev/null | tail -20
done
exit "$FAILED"
