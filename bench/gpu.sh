#!/usr/bin/env bash
# bench/gpu.sh: the `full` preset on a GPU, one call, at most ~8 minutes.
#
# Writes a labelled synthetic archive on the native 0.01 A grid, measures the
# pure training and encoding throughput of the full model (spectra/s, and the
# fraction of the GPU's peak from the model's FLOPs per spectrum counted by
# torch.utils.flop_counter), trains it with harps-train for a fixed time
# budget (torchrun when there are several GPUs), encodes every spectrum with
# harps-encode, and measures on the held-out stars what it reaches:
# harps-analyse (MI, 10-NN label errors, PCA baseline) and harps-tags
# (tag errors).  Prints a report and writes it as JSON to $OUT (the device
# machine's result folder) or bench/out/.
#
#   bench/gpu.sh                 on a machine with NVIDIA GPUs
#   bench/gpu.sh --cpu-smoke     the same steps on the CPU with a tiny budget
#                                (tiny preset, 0.5 A grid, ~1 minute): the test
#                                (harps-train's time includes building its cache)
#   bench/gpu.sh --help
#
# Settings (environment): N spectra (1200), N_STARS (240), BUDGET_S training
# seconds (120), BATCH (16 per GPU), WORK directory (var/bench/gpu-PRESET,
# kept between calls: the archive is reused), PY (the venv's python).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) SMOKE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench/gpu.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
export PYTHONPATH="$REPO:$REPO/resdir/res${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu PRESET=tiny STEP=0.5 NGPU=1
    N=${N:-80} N_STARS=${N_STARS:-30} BUDGET_S=${BUDGET_S:-5} BATCH=${BATCH:-4}
    THREADS=(--threads 1) WORKERS=0
else
    if ! command -v nvidia-smi >/dev/null || ! "$PY" -c 'import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "bench/gpu.sh: no CUDA GPU here (use --cpu-smoke to test the script)" >&2
        exit 2
    fi
    DEVICE=cuda PRESET=full STEP=0.01
    NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
    N=${N:-1200} N_STARS=${N_STARS:-240} BUDGET_S=${BUDGET_S:-120} BATCH=${BATCH:-16}
    THREADS=() WORKERS=$(( $(nproc) > 8 ? 8 : $(nproc) ))
fi
WORK=${WORK:-$REPO/var/bench/gpu-$PRESET}
RESULT=${OUT:-$REPO/bench/out}
mkdir -p "$WORK" "$RESULT"
ARCH=$WORK/archive RUN=$WORK/run
T0=$(date +%s)

# 1. the archive (kept between calls)
if [ ! -f "$ARCH/labels.csv" ]; then
    log "generating $N spectra of $N_STARS stars on the $STEP A grid"
    "$PY" -m harps_synth --out "$ARCH" -n "$N" --n-stars "$N_STARS" --seed 2026 --step "$STEP" \
        --workers "$(nproc)" --no-progress
fi
T_SYNTH=$(date +%s)

# 2. pure throughput and FLOPs of the model (random normalised spectra, no I/O)
log "measuring training and encoding throughput of the $PRESET preset on $DEVICE"
"$PY" - "$PRESET" "$DEVICE" "$BATCH" "$WORK/throughput.json" "${THREADS[@]}" <<'EOF'
import json, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
from ml.model import ModelConfig, SpectrumVAE
preset, device, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if "--threads" in sys.argv:
    torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
cfg = ModelConfig.from_preset(preset)
with torch.device("meta"):  # FLOPs per spectrum, counted without computing
    m = SpectrumVAE(cfg)
    x, mask = torch.zeros(1, cfg.length), torch.ones(1, cfg.length, dtype=torch.bool)
    with FlopCounterMode(display=False) as fc:
        m.encode(x)
    enc_flops = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        xh, mu, lv = m(x)
        m.loss(x, mask, xh, mu, lv, 1e-3)["loss"].backward()
    train_flops = fc.get_total_flops()
dev = torch.device(device)
model = SpectrumVAE(cfg).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = 1 + 0.05 * torch.randn(batch, cfg.length, device=dev)
mask = torch.ones_like(x, dtype=torch.bool)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
def timed(step, n):
    for _ in range(2):
        step()
    sync(); t = time.perf_counter()
    for _ in range(n):
        step()
    sync(); return (time.perf_counter() - t) / n
def train_step():
    xh, mu, lv = model(x)
    loss = model.loss(x, mask, xh, mu, lv, 1e-3)["loss"]
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
@torch.no_grad()
def encode_step():
    model.encode(x)
n = 20 if dev.type == "cuda" else 3
t_train, t_enc = timed(train_step, n), timed(encode_step, n)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
json.dump({"device": name, "preset": preset, "batch": batch, "length": cfg.length,
           "train_flops_per_spectrum": train_flops, "encode_flops_per_spectrum": enc_flops,
           "train_spectra_per_s": batch / t_train, "encode_spectra_per_s": batch / t_enc,
           "peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30
           if dev.type == "cuda" else None}, open(out, "w"), indent=1)
EOF
T_THRU=$(date +%s)

# 3. training for the budget: steps = budget x measured steps/s (all GPUs)
STEPS=$("$PY" -c "import json; t = json.load(open('$WORK/throughput.json'))
print(max(2, int($BUDGET_S * t['train_spectra_per_s'] / $BATCH)))")
rm -rf "$RUN"
TRAIN=(-m ml.train "$ARCH" --labels "$ARCH/labels.csv" --out "$RUN" --preset "$PRESET"
       --max-steps "$STEPS" --batch-size "$BATCH" --kl-max 1e-4 --kl-ramp-steps
       $(( STEPS / 4 + 1 )) --val-fraction 0.25 --seed 1 --device "$DEVICE" --workers "$WORKERS"
       --checkpoint-every "$STEPS" --quiet "${THREADS[@]}")
log "training $STEPS steps of $BATCH x $NGPU spectra (budget ${BUDGET_S} s)"
T_TRAIN0=$(date +%s.%N)
if [ "$NGPU" -gt 1 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" "${TRAIN[@]}"
else
    "$PY" "${TRAIN[@]}"
fi
T_TRAIN1=$(date +%s.%N)
CKPT=$RUN/best.ckpt
[ -f "$CKPT" ] || CKPT=$RUN/last.ckpt

# 4. encoding (end to end: read, preprocess, encode, decode, write)
log "encoding every spectrum with harps-encode"
"$PY" -m ml.encode "$CKPT" "$ARCH" --out "$RUN/latents" --inputs-root "$ARCH" --device "$DEVICE" \
    --batch-size 32 --workers "$WORKERS" --quiet "${THREADS[@]}" | tee "$WORK/encode.txt"
LATENTS=("$RUN"/latents/latents_*.fits)

# 5. science on the held-out stars
log "analysing and tagging (held-out stars of the training split)"
"$PY" -m ml.analysis "${LATENTS[@]}" --labels "$ARCH/labels.csv" --checkpoint "$CKPT" \
    --cache "$RUN/cache" --out "$RUN/analysis" | tee "$WORK/analysis.txt"
"$PY" -m ml.tags fit --latents "${LATENTS[@]}" --labels "$ARCH/labels.csv" --out "$RUN/tags" \
    --checkpoint "$CKPT" --seed 1 --quiet | tee "$WORK/tags.txt"
T_END=$(date +%s)

# 6. the report
"$PY" - "$WORK" "$RUN" "$RESULT" "$STEPS" "$BATCH" "$NGPU" "$T_TRAIN0" "$T_TRAIN1" \
    "$((T_SYNTH - T0))" "$((T_END - T0))" <<'EOF'
import json, re, sys, time
from pathlib import Path
work, run, result = map(Path, sys.argv[1:4])
steps, batch, ngpu = map(int, sys.argv[4:7])
t_train, synth_s, total_s = float(sys.argv[8]) - float(sys.argv[7]), *map(int, sys.argv[9:11])
#: dense peak TFLOPS (NVIDIA data sheets, SXM where there are two forms; no sparsity):
#: FP32 (CUDA cores), TF32 and BF16 (tensor cores)
PEAKS = {"H200": (67, 495, 989), "H100 SXM": (67, 495, 989), "H100 PCIe": (51, 378, 756),
         "H100": (67, 495, 989), "A100": (19.5, 156, 312), "L40S": (91.6, 183, 362),
         "L4": (30.3, 60, 121), "A10": (31.2, 62.5, 125), "V100": (15.7, 0, 0),
         "RTX 4090": (82.6, 82.6, 165)}
t = json.loads((work / "throughput.json").read_text())
peak = next((v for k, v in PEAKS.items() if k.lower() in t["device"].lower()), None)
def fractions(rate, flops):
    """Achieved FLOP rate as fractions of the FP32 and TF32 peaks (None: unknown GPU)."""
    return {f"fraction_of_peak_{kind}": None if not peak or not peak[i]
            else rate * flops / (peak[i] * 1e12) for i, kind in enumerate(("fp32", "tf32"))}
enc = re.search(r"([\d.]+) spectra/s", (work / "encode.txt").read_text())
summary = json.loads((Path(run) / "analysis" / "summary.json").read_text())
tags = json.loads((Path(run) / "tags" / "validation.json").read_text())
rep = {"device": t["device"], "gpus": ngpu, "preset": t["preset"], "peak_tflops": peak,
       "train": {"flops_per_spectrum": t["train_flops_per_spectrum"],
                 "spectra_per_s_per_gpu": t["train_spectra_per_s"],
                 **fractions(t["train_spectra_per_s"], t["train_flops_per_spectrum"]),
                 "harps_train_steps": steps, "harps_train_s": t_train,
                 "harps_train_spectra_per_s": steps * batch * ngpu / t_train},
       "encode": {"flops_per_spectrum": t["encode_flops_per_spectrum"],
                  "spectra_per_s": t["encode_spectra_per_s"],
                  **fractions(t["encode_spectra_per_s"], t["encode_flops_per_spectrum"]),
                  "harps_encode_spectra_per_s": float(enc.group(1)) if enc else None},
       "science": {"evaluation": summary["evaluation"], "n_informative": summary["n_informative"],
                   "best_mi_ksg": summary["best_mi_ksg"],
                   "knn10_median_abs_error": summary["knn10_median_abs_error"],
                   "tags_mae": {k: v["mae"] for k, v in tags["labels"].items()},
                   "tags_within_1sigma": {k: v["within_1sigma"] for k, v in tags["labels"].items()}},
       "seconds": {"synth": synth_s, "total": total_s}, "peak_memory_gib": t["peak_memory_gib"]}
path = result / f"gpu-{time.strftime('%Y%m%dT%H%M%S')}.json"
path.write_text(json.dumps(rep, indent=1))
pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
tr, en, sc = rep["train"], rep["encode"], rep["science"]
print(f"\n{rep['device']} x {ngpu}, preset {rep['preset']}; peak TFLOPS FP32/TF32/BF16 {peak}")
print(f"training: {tr['flops_per_spectrum'] / 1e9:.3g} GFLOP/spectrum, "
      f"{tr['spectra_per_s_per_gpu']:.1f} spectra/s per device ({pct(tr['fraction_of_peak_fp32'])}"
      f" of FP32 peak, {pct(tr['fraction_of_peak_tf32'])} of TF32); harps-train "
      f"{tr['harps_train_steps']} steps in {tr['harps_train_s']:.0f} s = "
      f"{tr['harps_train_spectra_per_s']:.1f} spectra/s end to end")
print(f"encoding: {en['flops_per_spectrum'] / 1e9:.3g} GFLOP/spectrum, "
      f"{en['spectra_per_s']:.1f} spectra/s ({pct(en['fraction_of_peak_fp32'])} of FP32 peak, "
      f"{pct(en['fraction_of_peak_tf32'])} of TF32); harps-encode end to end "
      f"{en['harps_encode_spectra_per_s']} spectra/s")
best, knn = sc["best_mi_ksg"]["latent"], sc["knn10_median_abs_error"]["latent"]
print(f"science ({sc['evaluation']}, {sc['n_informative']} informative dims): best MI Teff "
      f"{best['Teff']:.2f}, RV {best['RV']:.2f}, [M/H] {best['[M/H]']:.2f} nats; 10-NN "
      f"median |dTeff| {knn['Teff']:.0f} K; tag MAE " + ", ".join(
          f"{k} {v:.3g}" for k, v in sc["tags_mae"].items()))
print(f"total {total_s} s; report {path}")
EOF
