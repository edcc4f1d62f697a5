"""Stand-ins for torchvision's pretrained files, for the miniature ImageNet (no download).

A stand-in is a torchvision-format state dict of ``arch`` (1000 classes) under the file
name torchvision's ``IMAGENET1K_V1`` weights have (``resnet18-f37072fd.pth``), so that
``backbone.weights=IMAGENET1K_V1`` loads it from ``$TORCH_HOME/hub/checkpoints`` exactly as
it loads the real file. Its convolutions are random (seeded); only its last linear layer is
fitted, by ridge regression on the features of the miniature's train images, to the
classes that have images; every other class gets a weight of 0 and a bias far below. So
the miniature's held-out images are mostly classified correctly and a study finds
examples: it is *not* a pretrained network, and must never go into a real hub cache.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

from ..data import ImageNetDataModule
from .torchvision_models import torchvision_classifier
from .weights import WeightsError

# The smallest image side each architecture maps to a feature map (vgg16 halves it five times).
MIN_IMAGE_SIZE = {"resnet18": 1, "vgg16": 32}


def check_standin_image_size(archs: list[str], image_size: int) -> None:
    """Refuse, before anything is fitted, an image side one of ``archs`` cannot take."""
    for arch in archs:
        least = MIN_IMAGE_SIZE.get(arch, 1)
        if image_size < least:
            raise WeightsError(f"a {arch} stand-in needs images of at least {least} pixels, not {image_size}: "
                               f"raise --weights-image-size (the runs' data.image_size) or leave out {arch}")


def hub_file_name(arch: str, weights_name: str = "IMAGENET1K_V1") -> str:
    """The file name torchvision gives ``arch``'s ``weights_name`` in the hub cache (e.g. resnet18-f37072fd.pth)."""
    return os.path.basename(models.get_model_weights(arch)[weights_name].url)


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier's output layer (the last ``nn.Linear`` in module order)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise WeightsError(f"{type(model).__name__} has no linear output layer to fit")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """(N,3,H,W) -> (N,D): the inputs of the output layer, in eval mode."""
    head = last_linear(model)
    captured: list[Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).double()


def fit_head(head: nn.Linear, features: Tensor, labels: Tensor, ridge: float = 1.0, margin: float = 10.0) -> None:
    """Ridge-fit ``head`` so that ``features`` (N,D) map to one-hot ``labels`` (N,) x ``margin``.

    Classes without a training image get weight 0 and a bias ``margin`` below the lowest
    fitted logit on the training features, so they never win on such images.
    """
    classes = int(labels.max()) + 1
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    targets = torch.nn.functional.one_hot(labels, classes).double() * margin
    offset = targets.mean(0)
    gram = z @ z.T + ridge * torch.eye(len(z), dtype=z.dtype)  # dual form: N is small, D may be large
    coef = z.T @ torch.linalg.solve(gram, targets - offset)  # (D, classes)
    weight = (coef / std[:, None]).T  # logits = features @ weight.T + bias
    bias = offset - (mean / std) @ coef
    fitted = features @ weight.T + bias
    head.weight.zero_()
    head.bias.fill_(float(fitted.min()) - margin)
    head.weight[:classes] = weight.to(head.weight.dtype)
    head.bias[:classes] = bias.to(head.bias.dtype)


def standin_state_dict(arch: str, images: Tensor, labels: Tensor, seed: int = 0) -> dict[str, Tensor]:
    """A 1000-class ``arch`` state dict: seeded random features, head fitted on (images (N,3,H,W), labels (N,))."""
    torch.manual_seed(seed)
    model = torchvision_classifier(arch, num_classes=1000)
    with torch.no_grad():
        fit_head(last_linear(model), penultimate_features(model, images), labels)
    return model.state_dict()


def write_standin_weights(arch: str, torch_home: str | os.PathLike, images: Tensor, labels: Tensor,
                          seed: int = 0) -> Path:
    """Write a stand-in for ``arch``'s IMAGENET1K_V1 under ``torch_home/hub/checkpoints/`` (atomically)."""
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hub_file_name(arch)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    torch.save(standin_state_dict(arch, images, labels, seed), tmp)
    os.replace(tmp, path)
    return path


def write_miniature_standins(imagenet_root: str | os.PathLike, archs: list[str], torch_home: str | os.PathLike,
                             image_size: int = 64, seed: int = 0) -> list[Path]:
    """Stand-ins for each of ``archs``, fitted on the train split of the (miniature) ImageNet at ``imagenet_root``.

    ``image_size``: the crop the runs will use (``data.image_size``): the head is fitted on those features.
    """
    train = ImageNetDataModule(imagenet_root, image_size=image_size).split("train")
    items = [item for item in (train[i] for i in range(len(train))) if item is not None]
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    return [write_standin_weights(arch, torch_home, images, labels, seed) for arch in archs]
