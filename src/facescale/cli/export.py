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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.deploy.onnx_export import export_onnx, export_safetensors, source_spec
    from facescale.errors import FacescaleError
    from facescale.models.loading import load_backbone

    if not args.out and not args.safetensors:
        raise FacescaleError("nothing to do: give --out model.onnx and/or --safetensors weights.safetensors")
    module, spec = load_backbone(args.source, args.backbone)
    spec_dict = source_spec(spec)
    if args.safetensors:
        export_safetensors(module, spec_dict, args.safetensors)
        print(f"wrote {args.safetensors} ({spec_dict['name']}, fp32)")
    if args.out:
        check = export_onnx(
            module, spec_dict, args.out, opset=args.opset, tolerance=args.tolerance, exporter=args.exporter
        )
        print(check.describe())
        print(f"wrote {args.out} ({spec_dict['name']}, opset {args.opset}, dynamic batch)")
    return 0
