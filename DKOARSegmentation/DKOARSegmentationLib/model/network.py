"""Building an nnU-Net v2 network from a plans file, without importing names the file gives.

nnU-Net imports whatever class a plans file names; a model folder is data, not code, so only the
network classes and torch operations listed here are accepted.
"""

from __future__ import annotations

from ..errors import DKOARError


def _allowed_ops():
    import torch

    return {
        "torch.nn.modules.conv.Conv3d": torch.nn.Conv3d,
        "torch.nn.modules.conv.Conv2d": torch.nn.Conv2d,
        "torch.nn.Conv3d": torch.nn.Conv3d,
        "torch.nn.Conv2d": torch.nn.Conv2d,
        "torch.nn.modules.instancenorm.InstanceNorm3d": torch.nn.InstanceNorm3d,
        "torch.nn.modules.instancenorm.InstanceNorm2d": torch.nn.InstanceNorm2d,
        "torch.nn.InstanceNorm3d": torch.nn.InstanceNorm3d,
        "torch.nn.InstanceNorm2d": torch.nn.InstanceNorm2d,
        "torch.nn.modules.batchnorm.BatchNorm3d": torch.nn.BatchNorm3d,
        "torch.nn.BatchNorm3d": torch.nn.BatchNorm3d,
        "torch.nn.LeakyReLU": torch.nn.LeakyReLU,
        "torch.nn.modules.activation.LeakyReLU": torch.nn.LeakyReLU,
        "torch.nn.ReLU": torch.nn.ReLU,
        "torch.nn.modules.activation.ReLU": torch.nn.ReLU,
        "torch.nn.Dropout3d": torch.nn.Dropout3d,
        "torch.nn.modules.dropout.Dropout3d": torch.nn.Dropout3d,
    }


def _allowed_networks():
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    except ImportError:
        raise DKOARError("the nnU-Net network classes are not installed: pip install --no-deps "
                         "dynamic-network-architectures") from None

    return {
        "dynamic_network_architectures.architectures.unet.PlainConvUNet": PlainConvUNet,
        "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": ResidualEncoderUNet,
    }


def build_network(architecture: dict, num_input_channels: int, num_outputs: int, deep_supervision: bool = False):
    """The network of a plans configuration's ``architecture`` entry."""
    name = architecture.get("network_class_name", "")
    networks = _allowed_networks()
    if name not in networks:
        raise DKOARError(f"the model's network class {name!r} is not one this extension runs ({', '.join(sorted(networks))})")
    kwargs = dict(architecture.get("arch_kwargs", {}))
    ops = _allowed_ops()
    for key in architecture.get("_kw_requires_import", []):
        value = kwargs.get(key)
        if value is None:
            continue
        if value not in ops:
            raise DKOARError(f"the model's {key} {value!r} is not an operation this extension allows")
        kwargs[key] = ops[value]
    return networks[name](input_channels=num_input_channels, num_classes=num_outputs,
                          deep_supervision=deep_supervision, **kwargs)


# MONAI's segmentation networks a manifest may name (class name -> monai.networks.nets attribute)
MONAI_NETWORKS = ("UNet", "BasicUNet", "DynUNet", "SegResNet", "AttentionUnet", "UNETR", "SwinUNETR")


def build_monai_network(spec: dict):
    """A MONAI network from a manifest's {"class": ..., "kwargs": {...}}; only the classes of
    ``MONAI_NETWORKS``, built with JSON keyword arguments."""
    name = spec.get("class")
    if name not in MONAI_NETWORKS:
        raise DKOARError(f"the model's MONAI network {name!r} is not one this extension runs ({', '.join(MONAI_NETWORKS)})")
    try:
        from monai.networks import nets
    except ImportError:
        raise DKOARError("this model is a MONAI network and MONAI is not installed: pip install --no-deps monai") from None
    try:
        return getattr(nets, name)(**spec.get("kwargs", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise DKOARError(f"cannot build MONAI {name} from the manifest's arguments ({exc})") from None
