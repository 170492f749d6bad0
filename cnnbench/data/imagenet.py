"""ImageNet (ILSVRC-2012) as image folders: ``<root>/<split>/<wnid>/<image>.JPEG``.

Reading the folders is cnnbench.data.folders' (the same code as data=folder,
with ``<data root>/imagenet`` as the default root); this module turns the
official archives into them::

    python -m cnnbench.data.imagenet prepare-val ROOT    # devkit + val tar -> ROOT/val/<wnid>/
    python -m cnnbench.data.imagenet prepare-train ROOT  # train tar -> ROOT/train/<wnid>/
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from cnnbench.errors import UserError


# --------------------------------------------------------------------------- preparing the folders


def prepare_val(root: Path) -> Path:
    """Turn ``ILSVRC2012_img_val.tar`` and ``ILSVRC2012_devkit_t12.tar.gz`` in ``root`` into ``root/val/<wnid>/``.

    The val archive is one flat folder of 50,000 images; the devkit's ground
    truth says which class each is. torchvision's ImageNet parsers do the work
    (they check the archives' MD5 sums first).
    """
    from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE, parse_devkit_archive, parse_val_archive

    root = Path(root).expanduser()
    require_archives(root, [ARCHIVE_META["devkit"][0], ARCHIVE_META["val"][0]])
    if (root / "val").exists():
        raise UserError(f"{root / 'val'} exists already; remove it to prepare the validation images again")
    with archive_errors():
        if not (root / META_FILE).is_file():
            parse_devkit_archive(str(root))
        parse_val_archive(str(root))
    return root / "val"


def prepare_train(root: Path) -> Path:
    """Unpack ``ILSVRC2012_img_train.tar`` (one tar per class inside) in ``root`` into ``root/train/<wnid>/``."""
    from torchvision.datasets.imagenet import ARCHIVE_META, parse_train_archive

    root = Path(root).expanduser()
    require_archives(root, [ARCHIVE_META["train"][0]])
    if (root / "train").exists():
        raise UserError(f"{root / 'train'} exists already; remove it to unpack the training images again")
    with archive_errors():
        parse_train_archive(str(root))
    return root / "train"


def require_archives(root: Path, names: List[str]) -> None:
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise UserError(
            f"{', '.join(missing)} not found in {root}; download the ILSVRC2012 archives from "
            "image-net.org (registration needed) and put them there"
        )


@contextmanager
def archive_errors() -> Iterator[None]:
    """Turn the RuntimeError torchvision raises for a damaged archive into a one-line UserError."""
    try:
        yield
    except RuntimeError as err:
        raise UserError(str(err).strip().splitlines()[0]) from err


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.data.imagenet",
        description="Turn the official ILSVRC2012 archives into the folders `data=imagenet` reads: "
                    "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG. Put the archives in ROOT first.",
    )
    parser.add_argument("command", choices=["prepare-val", "prepare-train"],
                        help="prepare-val: ILSVRC2012_devkit_t12.tar.gz + ILSVRC2012_img_val.tar -> ROOT/val; "
                             "prepare-train: ILSVRC2012_img_train.tar -> ROOT/train")
    parser.add_argument("root", type=Path, help="the folder holding the archives (the future data.root)")
    args = parser.parse_args(argv)
    try:
        done = prepare_val(args.root) if args.command == "prepare-val" else prepare_train(args.root)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"prepared {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
