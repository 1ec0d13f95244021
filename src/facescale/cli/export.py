"""``facescale export``: a trained backbone to ONNX (checked with onnxruntime) and safetensors."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a backbone to ONNX (verified with onnxruntime) and/or safetensors",
        description=(
            "Export a backbone to one self-contained ONNX file: input 'input' [N, 3, 112, 112] with a "
            "dynamic batch axis, RGB aligned faces normalised as (pixel - 127.5) / 127.5 (the insightface "
            "convention), output 'embedding' [N, D], fp32 weights. The export is run with onnxruntime and "
            "torch on random faces at two batch sizes; the max abs difference is printed and the command "
            "fails (writing nothing) when it exceeds the tolerance."
        ),
    )
    parser.add_argument(
        "source",
        help="a run directory, a checkpoint (trainer.pt), an insightface backbone.pth or a .safetensors file",
    )
    parser.add_argument("--out", help="the ONNX file to write (e.g. model.onnx)")
    parser.add_argument("--backbone", help="backbone name when SOURCE does not record it (e.g. r50)")
    parser.add_argument("--safetensors", help="also write the fp32 weights to this .safetensors file")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")
    parser.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch's tracing exporter (default; much faster on deep ResNets) or the torch.export one",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="max abs difference allowed, relative to the largest output magnitude (default: 1e-3)",
    )
    int8 = parser.add_argument_group("int8 (onnxruntime static quantization, checked in the same command)")
    int8.add_argument(
        "--int8",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write a statically quantized int8 model (default: OUT with .int8.onnx); needs --calibrate",
    )
    int8.add_argument(
        "--calibrate",
        metavar="DATASET",
        help="aligned faces to calibrate on: a rec, image folder, list or .bin",
    )
    int8.add_argument("--calibrate-images", type=int, default=256, help="calibration faces (default: 256)")
    int8.add_argument(
        "--check-bins", nargs="*", default=[], metavar="BIN", help="verification bins: fp32 vs int8 accuracy"
    )
    int8.add_argument(
        "--int8-format", choices=("qdq", "qoperator"), default="qdq", help="quantized graph format"
    )
    int8.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor instead of per output channel"
    )
    int8.add_argument(
        "--max-drop", type=float, default=0.3, help="accuracy drop allowed on any check bin, points (0.3)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from facescale.deploy.onnx_export import export_onnx, export_safetensors, source_spec
    from facescale.errors import FacescaleError
    from facescale.eval.thresholds import ONNX_THRESHOLDS_KEY, read_thresholds
    from facescale.models.loading import load_backbone

    if not args.out and not args.safetensors:
        raise FacescaleError("nothing to do: give --out model.onnx and/or --safetensors weights.safetensors")
    if args.int8 is not None and not (args.out and args.calibrate):  # before anything is written
        raise FacescaleError(
            "--int8 needs --out (the fp32 model) and --calibrate DATASET (faces to calibrate on)"
        )
    module, spec = load_backbone(args.source, args.backbone)
    spec_dict = source_spec(spec)
    if args.safetensors:
        export_safetensors(module, spec_dict, args.safetensors)
        print(f"wrote {args.safetensors} ({spec_dict['name']}, fp32)")
    metadata = {}
    thresholds = read_thresholds(args.source)
    if thresholds:  # the measured operating points travel with the model
        metadata[ONNX_THRESHOLDS_KEY] = json.dumps(thresholds)
    if args.out:
        check = export_onnx(
            module,
            spec_dict,
            args.out,
            opset=args.opset,
            tolerance=args.tolerance,
            exporter=args.exporter,
            extra_metadata=metadata,
        )
        print(check.describe())
        print(f"wrote {args.out} ({spec_dict['name']}, opset {args.opset}, dynamic batch)")
    if args.int8 is not None:
        _export_int8(args)
    return 0


def _export_int8(args: argparse.Namespace) -> None:
    from pathlib import Path

    from facescale.atomic import write_bytes_atomic
    from facescale.deploy.quantize import calibration_faces, check_int8, quantize_onnx
    from facescale.errors import FacescaleError
    from facescale.eval.sets import load_set
    from facescale.eval.verification import evaluate_verification

    out = Path(args.int8 or Path(args.out).with_suffix(".int8.onnx"))
    fp32 = Path(args.out).read_bytes()
    faces = calibration_faces(args.calibrate, args.calibrate_images)
    held_out = calibration_faces(args.calibrate, min(256, args.calibrate_images), skip=1)
    int8 = quantize_onnx(fp32, faces, args.int8_format, per_channel=not args.per_tensor)

    def accuracy(embed: Any, vset: Any) -> float:  # the verification protocol's 10-fold accuracy
        return evaluate_verification(embed, vset.images, vset.issame).accuracy_mean

    sets = [load_set(b) for b in args.check_bins]
    check = check_int8(fp32, int8, held_out, sets, args.max_drop, accuracy=accuracy)
    print(check.describe())
    if not check.passed:
        raise FacescaleError(f"{out}: not written, the int8 model is too far from fp32 (see above)")
    write_bytes_atomic(out, int8)
    scales = "per-tensor" if args.per_tensor else "per-channel"
    print(
        f"wrote {out} (int8 {args.int8_format}, {scales} weights, "
        f"calibrated on {len(faces)} faces of {args.calibrate})"
    )
