"""Shared loaders for the corruption references (imported by the golden scripts here).

- imagecorruptions(frost_dir=None): the imagecorruptions 1.1.2 corruption module with its
  `gaussian(..., multichannel=True)` call redirected to `channel_axis=-1` (scikit-image 0.20
  removed `multichannel`; the numbers are the same) and, when frost_dir is given, its frost
  files read from that directory (the same six files it ships).
- create_c(path): the corruption functions of one hendrycks/robustness create_c script
  (make_imagenet_c.py or make_cifar_c.py), without its torch data loaders and without running
  its dataset loop. That code is not on PyPI and is not part of this repository: clone
  github.com/hendrycks/robustness anywhere outside the repository and pass
  ImageNet-C/create_c (the golden scripts take --create-c DIR or RTB_CREATE_C).
- random_noise_018: scikit-image <= 0.18's `random_noise(mode='s&p')` rule, which drew its two
  masks from numpy's global state (0.19+ uses fresh OS entropy and cannot be seeded), written
  out from its documented behaviour; install it with use_random_noise_018(module).
"""
import ast
import os

import numpy as np


def patched_gaussian(image, *args, multichannel=None, **kwargs):
    from skimage.filters import gaussian
    if multichannel:
        kwargs["channel_axis"] = -1
    return gaussian(image, *args, **kwargs)


def imagecorruptions(frost_dir=None):
    from imagecorruptions import corruptions
    corruptions.gaussian = patched_gaussian
    if frost_dir is not None:
        corruptions.resource_filename = (
            lambda package, name: os.path.join(frost_dir, os.path.basename(name)))
    return corruptions


def create_c(path):
    """The corruption functions of one create_c script as a dict (see the module docstring)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = []
    for node in tree.body:
        text = ast.unparse(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if "torch" not in text:
                keep.append(node)
        elif isinstance(node, ast.FunctionDef):
            keep.append(node)
        elif isinstance(node, ast.ClassDef) and "data.Dataset" not in text:
            keep.append(node)
        elif isinstance(node, ast.Assign) and "argtypes" in text:
            keep.append(node)
    namespace = {"__name__": "create_c_" + os.path.basename(path)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    namespace["gaussian"] = patched_gaussian
    return namespace


def random_noise_018(image, mode="s&p", amount=0.05, salt_vs_pepper=0.5, **_):
    """skimage.util.random_noise(image, mode='s&p', amount=...) as scikit-image <= 0.18 drew it:
    a flipped mask, then a salted mask, each np.random.choice([True, False]) over the whole
    array from the global state; flipped & salted -> 1, flipped & not salted -> 0."""
    assert mode == "s&p"
    out = np.array(image, dtype=np.float64, copy=True)
    flipped = np.random.choice([True, False], size=out.shape, p=[amount, 1 - amount])
    salted = np.random.choice([True, False], size=out.shape,
                              p=[salt_vs_pepper, 1 - salt_vs_pepper])
    out[flipped & salted] = 1
    out[flipped & ~salted] = 0
    return np.clip(out, 0, 1)


def use_random_noise_018(module_or_namespace):
    """Points `sk.util.random_noise` of a reference module (or create_c namespace) at the
    scikit-image <= 0.18 rule. Returns the original function."""
    sk = (module_or_namespace["sk"] if isinstance(module_or_namespace, dict)
          else module_or_namespace.sk)
    original = sk.util.random_noise
    sk.util.random_noise = random_noise_018
    return original
