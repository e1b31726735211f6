# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Spatial transforms that survive the extra keys real clients put into a case's dictionary."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.transforms import Spacingd

__all__ = ["MetaSafeSpacingd"]


class MetaSafeSpacingd(Spacingd):
    """``monai.transforms.Spacingd`` that leaves alone the non-dict values of keys named ``<key>_...``.

    Since MONAI 1.6, ``Spacingd`` calls ``d[k].update(meta)`` on every key ``k`` of the case that starts with
    ``"<key>_"`` when the image is NIfTI, meant for the old ``image_meta_dict``. MONAI Label's infer request carries
    ``image_path`` (a string), and user datalists often carry ``image_id`` or ``image_size``; with plain ``Spacingd`` those
    fail with ``AttributeError: 'str' object has no attribute 'update'`` before the network runs. Here such values
    are set aside during the call and put back unchanged; dict-valued meta keys are updated as MONAI does. Same
    arguments, same inverse (``Invertd`` undoes it as it undoes ``Spacingd``). On MONAI 1.4/1.5 it behaves exactly as
    ``Spacingd``.
    """

    def __call__(self, data: Mapping[Hashable, object], lazy: bool | None = None) -> dict:
        d = dict(data)
        prefixes = tuple(f"{key}_" for key in self.keys)
        aside = {k: d.pop(k) for k in list(d) if isinstance(k, str) and k.startswith(prefixes)
                 and not isinstance(d[k], dict)}
        out = super().__call__(d, lazy=lazy)
        out.update(aside)
        return out
