"""Merges `rtb device-check`'s report with PyTorch's (f32 and bf16 autocast) into one table and
one JSON file: per model and precision, rtb's check against the CPU's f32 (loss, gradient
cosine, evaluation outputs) and both sides' throughput with their ratio, rtb's f32 beside
PyTorch's f32 and rtb's bf16 autocast beside PyTorch's. Missing inputs (no torch, a failed run) show as "-". Standard library only."""

import argparse
import json
import os
import sys




def peer_name(rtb_name):
    task, _, arch = rtb_name.partition(" ")
    if task == "cifar":
        return "cifar-swin-t" if arch.startswith("swin") else "cifar-resnet50"
    if task == "mask":
        return "mask-rcnn"
    return "upernet"


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def ratio(a, b):
    return a / b if a and b else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtb", required=True)
    p.add_argument("--torch")
    p.add_argument("--torch-bf16")
    p.add_argument("--output", required=True)
    args = p.parse_args()
    rtb = load(args.rtb)
    if rtb is None:
        print(f"table.py: no rtb report at {args.rtb}", file=sys.stderr)
        return 1
    peers = {}
    for key, path in (("f32", args.torch), ("bf16", args.torch_bf16)):
        report = load(path)
        peers[key] = {m["name"]: m for m in (report or {}).get("models", [])}
    rows = []
    for m in rtb.get("models", []):
        precision = m.get("precision", "f32")
        # rtb's f32 row against PyTorch's f32, its bf16 autocast row against PyTorch's autocast
        # (an f16 row, the CPU's stand-in, has no peer).
        peer = peers.get(precision, {}).get(peer_name(m["name"]), {})
        rows.append({
            "model": m["name"],
            "precision": precision,
            "batch": m.get("throughput_batch"),
            "loss_rel_diff": m.get("loss_rel_diff"),
            "grad_cosine": m.get("grad_cosine"),
            "eval_rel_diff": m.get("eval_rel_diff"),
            "pass": m.get("pass"),
            "rtb_train": m.get("train_images_per_s"),
            "torch_train": peer.get("train_images_per_s"),
            "train_ratio": ratio(m.get("train_images_per_s"), peer.get("train_images_per_s")),
            "rtb_eval": m.get("eval_images_per_s"),
            "torch_eval": peer.get("eval_images_per_s"),
            "eval_ratio": ratio(m.get("eval_images_per_s"), peer.get("eval_images_per_s")),
            "error": m.get("error") or peer.get("error"),
        })
    ops = rtb.get("ops", [])
    failed = [f"{op['name']} ({op.get('dtype', 'f32')})" for op in ops if not op.get("pass")]
    print(f"\nrtb {rtb.get('rtb_version')} on {rtb.get('device')}, {rtb.get('size')} sizes; "
          f"ops: {len(ops) - len(failed)}/{len(ops)} within bounds" + (f" (failed: {', '.join(failed)})" if failed else ""))
    header = f"{'model':<24} {'type':>5} {'batch':>5} {'loss rel':>9} {'grad cos':>8} {'eval rel':>9} {'ok':>4} " \
             f"{'rtb im/s':>9} {'torch':>9} {'ratio':>6} | {'rtb eval':>9} {'torch':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<24} {r['precision']:>5} {fmt(r['batch'], 'd'):>5} {fmt(r['loss_rel_diff'], '.1e'):>9} "
              f"{fmt(r['grad_cosine'], '.4f'):>8} {fmt(r['eval_rel_diff'], '.1e'):>9} "
              f"{('yes' if r['pass'] else 'NO'):>4} {fmt(r['rtb_train'], '.1f'):>9} "
              f"{fmt(r['torch_train'], '.1f'):>9} {fmt(r['train_ratio'], '.2f'):>6} | "
              f"{fmt(r['rtb_eval'], '.1f'):>9} {fmt(r['torch_eval'], '.1f'):>9} {fmt(r['eval_ratio'], '.2f'):>6}")
        if r["error"]:
            print(f"    error: {r['error']}")
    with open(args.output, "w") as f:
        json.dump({"rtb": rtb, "torch_f32": load(args.torch), "torch_bf16": load(args.torch_bf16), "table": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
