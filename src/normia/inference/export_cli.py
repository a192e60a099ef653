"""`normia export ckpt=PATH|run=ID [registered_name=NAME] [data.path=FILE] [format=export|torchscript]`: a trained
run as a registered MLflow model (pyfunc flavour, with its signature and an input example; no pickle), served by
`mlflow models serve -m models:/NAME/1`. The version is tagged with the sha256 of each of its files;
`normia export verify=models:/NAME/1` checks them all and loads the model (run it before serving a version). format=export (torch.export, .pt2) or torchscript (.pt) also logs the
model in that form to the export run, after checking it against eager PyTorch on the input example.

The store is $MLFLOW_TRACKING_URI, else ./mlflow.db. NAME defaults to the run's experiment name. data.path: a file
for the input example, when the run's training data is not readable here. Bad input: one line, exit 2, no MLflow run
and no model version.
"""

from __future__ import annotations

import argparse

from normia.errors import UserError

KEYS = ("ckpt", "run", "registered_name", "data.path", "format", "verify")


def main(argv: list[str]) -> int:
    """Entry point of `normia export`; prints the registered model's URI and where it came from."""
    parser = argparse.ArgumentParser(
        prog="normia export",
        description="Log a trained run to MLflow as a pyfunc model with its signature and register a version.",
    )
    parser.add_argument(
        "args",
        nargs="+",
        help="ckpt=PATH or run=MLFLOW_RUN_ID, [registered_name=NAME], [data.path=FILE]; or verify=models:/NAME/N",
    )
    parser.add_argument("--config-dir", metavar="DIR", help="the project whose code the run's config names")
    parser.add_argument("--trust", action="store_true", help="load the run's config without the trust checks")
    args = parser.parse_args(argv)
    from normia.inference.predict_cli import parse_pairs, run_source

    pairs = parse_pairs(args.args, KEYS, "normia export")
    if "verify" in pairs:
        return verify(pairs)
    source = run_source(pairs, "normia export")
    fmt = pairs.get("format", "pyfunc")
    from normia.inference.pyfunc import PROGRAM_FORMATS

    if fmt == "onnx":
        raise UserError(
            "format=onnx needs the onnx and onnxscript packages, which are not installed: use format=export "
            "(torch.export) or format=torchscript"
        )
    if fmt != "pyfunc" and fmt not in PROGRAM_FORMATS:
        raise UserError(f"unknown format={fmt}: pyfunc (default), export (torch.export) or torchscript")
    from normia.api import project_scope
    from normia.inference.loading import load_run
    from normia.inference.pyfunc import check_registered_name, example_input, export_run, registered_name_of

    if "registered_name" in pairs:
        check_registered_name(pairs["registered_name"])  # before the run is loaded or anything written
    from normia.tracking.uri import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(None)
    check_reachable(uri)
    with project_scope(args.config_dir):
        run = load_run(source, trust=args.trust, tracking_uri=uri)
        example = example_input(run, pairs.get("data.path"))
        name = pairs.get("registered_name") or registered_name_of(str(run.cfg.get("name") or ""))
        exported = export_run(run, example, name, uri, program_format=None if fmt == "pyfunc" else fmt)
    print(f"registered {exported.model_uri} (MLflow run {exported.export_run_id})")
    print(f"  from run {exported.source_run_id or '-'}, checkpoint {exported.checkpoint}")
    print(f"  serve:   mlflow models serve -m {exported.model_uri} --env-manager local -p 5001")
    return 0


def verify(pairs: dict[str, str]) -> int:
    """`normia export verify=models:/NAME/VERSION`: every file of the version matches the sha256 recorded at export
    and the model loads. Raises UserError (exit 2, one line naming the file) otherwise."""
    if len(pairs) > 1:
        raise UserError("verify= takes no other argument: normia export verify=models:/NAME/VERSION")
    from normia.inference.artifact_digests import TAG
    from normia.inference.registered import verify_registered
    from normia.tracking.uri import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(None)
    check_reachable(uri)
    count, _ = verify_registered(pairs["verify"], uri)
    print(f"verified {pairs['verify']}: its {count} files match their sha256 (tag {TAG}) and it loads")
    return 0
