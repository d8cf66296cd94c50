#!/usr/bin/env bash
# The device check, run on a machine with a CUDA driver and Python + PyTorch (no Rust, no
# network): rtb's ops and models against the CPU, then PyTorch's throughput on the same GPU,
# merged into one table (stdout) and one JSON file. Built and carried from a development
# machine by `cargo xtask gpu-check --build` (gpu-check/bin/rtb).
#
#   bash gpu-check/run.sh [OUT_DIR]          # default $OUT, else gpu-check/out
#
# Environment: RTB_DEVICE (cuda), RTB_SIZE (paper; small for a quick or CPU run), RTB_BIN
# (gpu-check/bin/rtb), PYTHON (python3), RTB_ITERS (5), RTB_TIMEOUT (seconds per step, 360),
# RTB_PEER (1; 0 skips PyTorch).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${OUT:-$here/out}}
device=${RTB_DEVICE:-cuda}
size=${RTB_SIZE:-paper}
bin=${RTB_BIN:-$here/bin/rtb}
python=${PYTHON:-python3}
iters=${RTB_ITERS:-5}
limit=${RTB_TIMEOUT:-360}
peer=${RTB_PEER:-1}
mkdir -p "$out"
start=$(date +%s)

if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing: build it with \`cargo xtask gpu-check --build\`" >&2
    exit 2
fi

# The binary links the CUDA 13 libraries by soname (libcublas.so.13, libcurand.so.10,
# libnvrtc.so.13, libcuda.so.1): take them from the machine's PyTorch wheels or toolkit.
if [ "$device" != cpu ]; then
    dirs=$("$python" - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
found = []
for root in roots:
    for pattern in ("nvidia/cu13/lib", "nvidia/*/lib"):
        found += sorted(glob.glob(os.path.join(root, pattern)))
print(":".join(dict.fromkeys(found)))
PY
)
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64; do
        [ -d "$d" ] && dirs="$dirs:$d"
    done
    export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
ldd "$bin" > "$out/ldd.txt" 2>&1
if grep -q "not found" "$out/ldd.txt"; then
    echo "run.sh: libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):" >&2
    grep "not found" "$out/ldd.txt" >&2
    [ "$device" != cpu ] && exit 2
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi -L; "$bin" env; } > "$out/machine.txt" 2>&1

# f32, then bf16 autocast (f32 weights); on the CPU, f16 autocast stands in for bf16 (candle's
# CPU backend has no bf16 matrix product).
if [ "$device" = cpu ]; then precision=f32,f16; else precision=f32,bf16; fi
status=0
echo "== rtb device-check --device $device --size $size --precision $precision"
timeout "$limit" "$bin" device-check --device "$device" --size "$size" --iters "$iters" \
    --precision "$precision" --output "$out/rtb.json" 2> "$out/rtb.log" || status=$?
[ "$status" -ne 0 ] && { echo "rtb device-check exited $status (log: $out/rtb.log)"; tail -5 "$out/rtb.log"; }

if [ "$peer" = 1 ]; then
echo "== PyTorch peer (f32, then bf16 autocast)"
timeout "$limit" "$python" "$here/torch_peer.py" --device "$device" --size "$size" --iters "$iters" \
    --output "$out/torch.json" 2> "$out/torch.log" || echo "torch_peer (f32) failed: see $out/torch.log"
if [ "$device" != cpu ]; then
    timeout "$limit" "$python" "$here/torch_peer.py" --device "$device" --size "$size" --iters "$iters" \
        --bf16 --output "$out/torch-bf16.json" 2> "$out/torch-bf16.log" \
        || echo "torch_peer (bf16) failed: see $out/torch-bf16.log"
fi
fi

"$python" "$here/table.py" --rtb "$out/rtb.json" --torch "$out/torch.json" \
    --torch-bf16 "$out/torch-bf16.json" --output "$out/gpu-check.json"
echo "== done in $(( $(date +%s) - start )) s; files in $out"
exit "$status"
