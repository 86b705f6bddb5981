"""The command line's commands on a trained run: predict and export (your own images; the model outside
PyTorch) and serve (draw a digit in a browser, every run answers). cli.py adds their parsers and calls them."""
from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """The `predict`, `export` and `serve` subcommands."""
    _predict_parsers(sub)
    _serve_parser(sub)


# --- predict and export (your own images; the model outside PyTorch) -------------------------------
def _predict_parsers(sub) -> None:
    p = sub.add_parser("predict", help="classify your own images (or read their digits, frcnn) with a trained run")
    p.add_argument("run_dir", help="a finished run folder (holding model.pt)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="PNG, JPEG, BMP, GIF, WebP or TIFF files")
    p.add_argument("--topk", type=int, default=3, help="classes shown per image (default 3)")
    p.add_argument("--format", dest="fmt", choices=("table", "json", "csv"), default="table")
    p.add_argument("--save-preprocessed", dest="save_dir", metavar="DIR", help="write what the model saw, as PNGs")
    p.add_argument("--draw", dest="draw_dir", metavar="DIR", help="frcnn: write each image with its boxes")
    p.add_argument("--min-score", dest="min_score", type=float, default=0.5, help="frcnn: lowest score reported")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--onnx", dest="onnx_file", metavar="FILE", help="the ONNX file (default RUN_DIR/model.onnx)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p = sub.add_parser("export", help="export a classifier run to ONNX and check it against PyTorch")
    p.add_argument("run_dir")
    p.add_argument("--format", dest="fmt", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="the file to write (default RUN_DIR/model.onnx)")
    p.add_argument("--data-dir", dest="data_dir", default="", help="where the parity check's test images are")


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import run

    return run(args.run_dir, args.inputs, topk=args.topk, fmt=args.fmt, save_dir=args.save_dir,
               draw_dir=args.draw_dir, backend=args.backend, onnx_file=args.onnx_file, device=args.device,
               min_score=args.min_score, trust_code=args.trust_code)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    print(export_onnx(args.run_dir, out=args.out, data_dir=args.data_dir, trust_code=args.trust_code).describe())
    return 0


# --- serve (draw a digit in a browser, every model answers) ----------------------------------------
def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="a draw-a-digit web page where every run answers (mnistbench[serve])")
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_STUDY_DIR", help="run folders, or study folders (every "
                   "finished run of the study)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-bytes", dest="max_bytes", type=int, default=5_000_000,
                   help="largest request body in bytes (default 5 MB)")
    p.add_argument("--max-pixels", dest="max_pixels", type=int, default=16_000_000,
                   help="largest image in pixels (default 16 M)")
    p.add_argument("--min-score", dest="min_score", type=float, default=0.5, help="frcnn: lowest score reported")


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.server import serve

    return serve(args.dirs, host=args.host, port=args.port, device=args.device, max_bytes=args.max_bytes,
                 max_pixels=args.max_pixels, min_score=args.min_score, trust_code=args.trust_code)


COMMANDS = {"predict": cmd_predict, "export": cmd_export, "serve": cmd_serve}
