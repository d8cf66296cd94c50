"""Golden fixtures for rtb-segmentation: transformers' UperNetForSemanticSegmentation over a
tiny SwinBackbone with seeded random weights (BatchNorm running statistics included), and
mmsegmentation's training loss and sliding-window inference re-implemented in torch.

Run from the repository root with the pinned stack (requirements-golden.txt):

    python3 -m venv /work/venvs/golden
    /work/venvs/golden/bin/pip install -r crates/segmentation/tests/golden/requirements-golden.txt
    /work/venvs/golden/bin/python crates/segmentation/tests/golden/make_golden.py

Writes upernet_swin_tiny.safetensors (the model's state dict under transformers 5's names)
and upernet_golden.safetensors (inputs and reference outputs), about 0.7 MB together.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import SwinConfig, UperNetConfig, UperNetForSemanticSegmentation

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)
IGNORE = 255


def tiny_config():
    """Must equal SwinConfig::tiny().into_dense(0.0) and UperNetConfig::tiny() (dropout
    aside: transformers has none) in the crates."""
    backbone = SwinConfig(image_size=64, patch_size=4, num_channels=3, embed_dim=8, depths=[2, 2, 2, 2],
                          num_heads=[1, 2, 2, 4], window_size=3, mlp_ratio=2.0, qkv_bias=True,
                          hidden_act="gelu", layer_norm_eps=1e-5, drop_path_rate=0.0, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    return UperNetConfig(backbone_config=backbone, hidden_size=16, pool_scales=[1, 2, 3, 6],
                         auxiliary_channels=8, auxiliary_num_convs=1, auxiliary_concat_input=False,
                         auxiliary_loss_weight=0.4, loss_ignore_index=IGNORE, num_labels=5,
                         use_auxiliary_head=True)


def randomize(model, seed):
    """Seeded random values everywhere, BatchNorm running statistics included, so eval-mode
    BatchNorm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # norm scales
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def mmseg_loss(logits, labels, avg_non_ignore):
    """mmseg's BaseDecodeHead.losses with CrossEntropyLoss: logits resized (bilinear,
    align_corners=False) to the labels, per-pixel cross-entropy with the ignore index, then
    the mean over all pixels (avg_non_ignore=False, the default) or over valid ones."""
    seg_logit = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(seg_logit, labels.long(), reduction="none", ignore_index=IGNORE)
    if avg_non_ignore:
        return loss.sum() / (labels != IGNORE).sum()
    return loss.mean()


def encode_decode(model, img):
    """mmseg's EncoderDecoder.encode_decode: decode head logits resized to the input."""
    return model(pixel_values=img).logits  # transformers resizes to pixel_values' size


def slide_inference(model, img, crop, stride, num_classes):
    """mmseg's EncoderDecoder.slide_inference (0.x and 1.x agree), written out."""
    h_stride, w_stride = stride
    h_crop, w_crop = crop
    batch, _, h_img, w_img = img.shape
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds = img.new_zeros((batch, num_classes, h_img, w_img))
    count = img.new_zeros((batch, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1 = h_idx * h_stride
            x1 = w_idx * w_stride
            y2 = min(y1 + h_crop, h_img)
            x2 = min(x1 + w_crop, w_img)
            y1 = max(y2 - h_crop, 0)
            x1 = max(x2 - w_crop, 0)
            crop_logit = encode_decode(model, img[:, :, y1:y2, x1:x2])
            preds += F.pad(crop_logit, (x1, preds.shape[3] - x2, y1, preds.shape[2] - y2))
            count[:, :, y1:y2, x1:x2] += 1
    assert (count == 0).sum() == 0
    return preds / count


def main():
    g = torch.Generator().manual_seed(4321)
    model = randomize(UperNetForSemanticSegmentation(tiny_config()), 3).eval()
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, os.path.join(HERE, "upernet_swin_tiny.safetensors"))

    gold = {}
    with torch.no_grad():
        # (1) Heads alone on given C2..C5 (the channels and strides of a 64x64 input).
        feats = [torch.randn(2, 8 << i, 16 >> i, 16 >> i, generator=g) for i in range(4)]
        for i, f in enumerate(feats):
            gold[f"head.c{i + 2}"] = f
        gold["head.decode"] = model.decode_head(feats)
        gold["head.aux"] = model.auxiliary_head(feats)

        # (2) The whole model, eval mode.
        x = torch.randn(2, 3, 64, 64, generator=g)
        gold["whole.input"] = x
        gold["whole.logits"] = model(pixel_values=x).logits

        # A size that is not a multiple of 32: zero-padded to 64x64, logits cropped back.
        xp = torch.randn(1, 3, 40, 56, generator=g)
        gold["padded.input"] = xp
        gold["padded.logits"] = model(pixel_values=F.pad(xp, (0, 8, 0, 24))).logits[:, :, :40, :56]

        # (4) Sliding window: crop 32, stride 21 (512 / 341 scaled) over 48x80.
        xs = torch.randn(1, 3, 48, 80, generator=g)
        gold["slide.input"] = xs
        gold["slide.logits"] = slide_inference(model, xs, (32, 32), (21, 21), 5)

    # (3) One training step: train mode (batch statistics; transformers has no dropout, the
    # rtb side turns its dropout off), mmseg's losses, gradients.
    model.train()
    labels = torch.randint(0, 5, (2, 64, 64), generator=g)
    labels[torch.rand(2, 64, 64, generator=g) < 0.2] = IGNORE
    feats = model.backbone(pixel_values=x).feature_maps
    decode = model.decode_head(feats)
    aux = model.auxiliary_head(feats)
    loss_decode = mmseg_loss(decode, labels, False)
    loss_aux = 0.4 * mmseg_loss(aux, labels, False)
    total = loss_decode + loss_aux
    total.backward()
    gold["train.labels"] = labels.to(torch.uint8)
    gold["train.decode"] = loss_decode.detach().reshape(1)
    gold["train.aux"] = loss_aux.detach().reshape(1)
    gold["train.total"] = total.detach().reshape(1)
    with torch.no_grad():
        gold["train.decode_valid"] = mmseg_loss(decode, labels, True).reshape(1)
        gold["train.aux_valid"] = (0.4 * mmseg_loss(aux, labels, True)).reshape(1)
    params = dict(model.named_parameters())
    for name in ["decode_head.classifier.weight", "decode_head.classifier.bias",
                 "decode_head.fpn_bottleneck.conv.weight", "decode_head.psp_modules.3.1.conv.weight",
                 "decode_head.lateral_convs.0.batch_norm.weight", "decode_head.bottleneck.batch_norm.bias",
                 "auxiliary_head.convs.0.conv.weight", "auxiliary_head.classifier.bias",
                 "backbone.swin.embeddings.patch_embeddings.projection.weight",
                 "backbone.hidden_states_norms.stage4.weight"]:
        gold["grad." + name] = params[name].grad.detach().clone()
    buffers = dict(model.named_buffers())
    for name in ["decode_head.bottleneck.batch_norm.running_mean", "decode_head.bottleneck.batch_norm.running_var",
                 "decode_head.psp_modules.0.1.batch_norm.running_var"]:
        gold["stat." + name] = buffers[name].detach().clone()

    save_file({k: v.detach().contiguous() for k, v in gold.items()}, os.path.join(HERE, "upernet_golden.safetensors"))


if __name__ == "__main__":
    main()
