"""Merges `rtb device-check`'s report with PyTorch's (f32 and bf16 autocast) into one table and
one JSON file: per model, rtb's loss check against the CPU and both sides' throughput with
their ratio. Missing inputs (no torch, a failed run) show as "-". Standard library only."""

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
        name = peer_name(m["name"])
        t32 = peers["f32"].get(name, {})
        t16 = peers["bf16"].get(name, {})
        rows.append({
            "model": m["name"],
            "batch": m.get("throughput_batch"),
            "loss_rel_diff": m.get("loss_rel_diff"),
            "grad_norm_rel_diff": m.get("grad_norm_rel_diff"),
            "eval_rel_diff": m.get("eval_rel_diff"),
            "pass": m.get("pass"),
            "rtb_train": m.get("train_images_per_s"),
            "torch_train_f32": t32.get("train_images_per_s"),
            "torch_train_bf16": t16.get("train_images_per_s"),
            "rtb_eval": m.get("eval_images_per_s"),
            "torch_eval_f32": t32.get("eval_images_per_s"),
            "train_ratio_f32": ratio(m.get("train_images_per_s"), t32.get("train_images_per_s")),
            "eval_ratio_f32": ratio(m.get("eval_images_per_s"), t32.get("eval_images_per_s")),
            "error": m.get("error") or t32.get("error"),
        })
    ops = rtb.get("ops", [])
    failed = [op["name"] for op in ops if not op.get("pass")]
    print(f"\nrtb {rtb.get('rtb_version')} on {rtb.get('device')}, {rtb.get('size')} sizes; "
          f"ops: {len(ops) - len(failed)}/{len(ops)} within bounds" + (f" (failed: {', '.join(failed)})" if failed else ""))
    header = f"{'model':<24} {'batch':>5} {'loss rel':>9} {'grad rel':>9} {'eval rel':>9} {'ok':>4} " \
             f"{'rtb im/s':>9} {'torch f32':>9} {'bf16':>9} {'ratio':>6} | {'rtb eval':>9} {'torch':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<24} {fmt(r['batch'], 'd'):>5} {fmt(r['loss_rel_diff'], '.1e'):>9} "
              f"{fmt(r['grad_norm_rel_diff'], '.1e'):>9} {fmt(r['eval_rel_diff'], '.1e'):>9} "
              f"{('yes' if r['pass'] else 'NO'):>4} {fmt(r['rtb_train'], '.1f'):>9} "
              f"{fmt(r['torch_train_f32'], '.1f'):>9} {fmt(r['torch_train_bf16'], '.1f'):>9} "
              f"{fmt(r['train_ratio_f32'], '.2f'):>6} | {fmt(r['rtb_eval'], '.1f'):>9} "
              f"{fmt(r['torch_eval_f32'], '.1f'):>9} {fmt(r['eval_ratio_f32'], '.2f'):>6}")
        if r["error"]:
            print(f"    error: {r['error']}")
    with open(args.output, "w") as f:
        json.dump({"rtb": rtb, "torch_f32": load(args.torch), "torch_bf16": load(args.torch_bf16), "table": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
