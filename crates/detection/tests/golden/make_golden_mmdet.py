"""Golden fixture for importing mmdetection Mask R-CNN checkpoints (tests/import_mmdet.rs).

mmdetection 3.3.0 builds Mask R-CNN from its own `mask-rcnn_r50_fpn_1x_coco.py` with slim
widths (ResNet-50 of base width 8, FPN 16, box head 32, mask head 16, 3 classes), every
parameter and BatchNorm statistic drawn from a seeded generator; the fixture holds its state
dict under `state.` (mmdet's key names, as in a released checkpoint) and, in eval mode:
C2..C5 and P2..P6 of one input, the RPN head's per-level outputs, and the box and mask heads'
outputs on given pooled RoI features. Only modules without compiled mmcv ops run, so mmcv-lite
suffices; RoIAlign and NMS are covered by the other fixtures.

Run (see requirements-mmdet.txt):
    python make_golden_mmdet.py   # writes mask_rcnn_mmdet.safetensors beside this file
"""

import os
import sys
import types

import torch
from safetensors.torch import save_file


class _NoCompiledOps(types.ModuleType):
    """Stands in for mmcv's compiled `_ext`: importing works, calling an op fails loudly."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"mmcv._ext.{name} is not built (mmcv-lite)")

        return unavailable


sys.modules["mmcv._ext"] = _NoCompiledOps("mmcv._ext")

import mmdet  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build_model():
    register_all_modules()
    path = os.path.join(
        os.path.dirname(mmdet.__file__), ".mim", "configs", "mask_rcnn", "mask-rcnn_r50_fpn_1x_coco.py"
    )
    model = Config.fromfile(path).model
    model.backbone.base_channels = 8
    model.backbone.init_cfg = None
    model.neck.in_channels = [32, 64, 128, 256]
    model.neck.out_channels = 16
    model.rpn_head.in_channels = 16
    model.rpn_head.feat_channels = 16
    for extractor in (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor):
        extractor.out_channels = 16
    model.roi_head.bbox_head.in_channels = 16
    model.roi_head.bbox_head.fc_out_channels = 32
    model.roi_head.bbox_head.num_classes = 3
    model.roi_head.mask_head.in_channels = 16
    model.roi_head.mask_head.conv_out_channels = 16
    model.roi_head.mask_head.num_classes = 3
    return MODELS.build(model)


def main():
    torch.manual_seed(0)
    model = build_model()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    model.eval()

    out = {f"state.{k}": v.contiguous() for k, v in model.state_dict().items()}
    image = torch.randn(1, 3, 96, 128, generator=generator)
    box_pooled = torch.randn(5, 16, 7, 7, generator=generator)
    mask_pooled = torch.randn(4, 16, 14, 14, generator=generator)
    with torch.no_grad():
        c = model.backbone(image)
        p = model.neck(c)
        objectness, deltas = model.rpn_head(list(p))
        class_logits, box_regression = model.roi_head.bbox_head(box_pooled)
        mask_logits = model.roi_head.mask_head(mask_pooled)
    out["image"] = image
    for i, level in enumerate(c):
        out[f"c{i + 2}"] = level
    for i, level in enumerate(p):
        out[f"p{i + 2}"] = level
        out[f"rpn.objectness.{i}"] = objectness[i]
        out[f"rpn.deltas.{i}"] = deltas[i]
    out["box.pooled"] = box_pooled
    out["box.class_logits"] = class_logits
    out["box.box_regression"] = box_regression
    out["mask.pooled"] = mask_pooled
    out["mask.logits"] = mask_logits
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "mask_rcnn_mmdet.safetensors"))
    print(f"wrote {len(out)} tensors")


if __name__ == "__main__":
    main()
