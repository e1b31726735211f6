# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Verify a bundle the way MONAI's model zoo does, offline, plus what MONAI Label and our users rely on.

    python ci/verify_bundle.py bundles/xlstm_unet_amos3d [--quick]

The verifier never writes inside the bundle it checks: demo data, checkpoints, logs and pictures go to a temporary
work folder (``--keep`` keeps it), and no bytecode is cached (so a read-only checkout verifies too).

Checks, in order (each prints PASS/FAIL; the exit code is the number of failures):

1. files: LICENSE, configs/{metadata,train,inference,evaluate,multi_gpu_train}.json, configs/logging.conf,
   docs/README.md, docs/data_license.txt, scripts/make_demo_data.py, scripts/prepare_data.py;
   rendered: where the bundle has a ``bundle.yaml``, its configs are what ``xlstm_bundle_tools.render`` writes;
2. version: ``version`` is a key of ``changelog``;
3. metadata: ``monai.bundle.verify_metadata`` against the schema it names, read from ``$XLSTM_SEG_SCHEMA_DIR``,
   ``../shared/schemas`` or ``shared/schemas``, else downloaded; skipped (SKIP, with the reason) when neither works;
4. properties: ``ConfigWorkflow.check_properties()`` for train, train+evaluate and infer returns nothing missing or
   miswired (MONAI 1.6 property sets), on a tiny demo dataset made with the bundle's own scripts;
5. net in/out: ``monai.bundle.verify_net_in_out`` on ``network_def`` of inference.json;
6. train/inference agree: every id train.json and inference.json both define is equal (``network_def`` up to
   ``deep_supervision``; not imports, output_dir, initialize, run), and, on a demo validation case, train.json's
   validation pipeline and inference.json's pipeline (preprocessing, network with the trained weights, inferer) give
   the same logits: the checkpoint training writes is the one inference reads, on the same grid and intensities;
7. MONAI Label keys: the inference config as MONAI Label's BundleInferTask reads it (first input/output keys of the
   metadata used by pre/post-processing, channel_def, dimension; SaveImaged filtered out) runs on one demo image and
   returns a uint8 label map on the image's grid; train.json exposes ``train#dataset#data``, ``validate#dataset#data``,
   ``train#handlers`` (a list), ``network`` and ``train#trainer#max_epochs``;
8. runs (skipped with --quick): ``python -m monai.bundle run training`` and then plain ``run`` of inference.json,
   both from a foreign working directory, with the bundle's configs/demo.json and one short epoch;
9. multi-GPU (skipped with --quick): multi_gpu_train.json under ``torchrun --nproc_per_node=2`` (gloo on CPU), and
   the checkpoint it writes loads into the plain network.

Conventions it relies on (docs/adding_a_bundle.md): ``scripts/make_demo_data.py --output DIR --size verify`` writes a
small demo set (``xlstm_bundle_tools.demo_sizes``: after ``scripts/prepare_data.py --source DIR --output DIR`` and its
5 folds, fold 0 has at least 2 validation cases, one per torchrun process, and there is a ``testing`` case; the
verifier checks this and says so); ``configs/demo.json`` sizes the runs for a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

sys.dont_write_bytecode = True  # importing a bundle's scripts must not leave __pycache__ in the bundle
REPO = Path(__file__).resolve().parents[1]
# subprocesses (demo generator, preparation, monai.bundle runs) do not cache bytecode either
QUIET_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
REQUIRED_FILES = [
    "LICENSE",
    "configs/metadata.json",
    "configs/train.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "configs/demo.json",
    "docs/README.md",
    "docs/data_license.txt",
    "scripts/make_demo_data.py",
    "scripts/prepare_data.py",
]
# MONAI's metadata schema, read offline where a copy exists (this project's workspace keeps one beside the checkout);
# elsewhere MONAI downloads it from the URL in metadata.json, and without a network the check is skipped, saying so.
SCHEMA_DIRS = [Path(d) for d in os.environ.get("XLSTM_SEG_SCHEMA_DIR", "").split(os.pathsep) if d] + [
    REPO.parent / "shared" / "schemas", REPO / "shared" / "schemas"]


class Skipped(Exception):
    """A check that cannot run on this machine (it says why); not counted as a failure."""


class Verifier:
    def __init__(self, bundle: Path, work: Path) -> None:
        self.bundle = bundle.resolve()
        self.work = work
        self.failures: list[str] = []
        self._dataset_dir: Path | None = None

    # ---------------------------------------------------------------- plumbing
    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        try:
            detail = fn()
            print(f"PASS  {name}" + (f": {detail}" if detail else ""), flush=True)
        except Skipped as why:
            print(f"SKIP  {name}: {why}", flush=True)
        except Exception as err:  # report every check, not just the first failure
            self.failures.append(name)
            print(f"FAIL  {name}: {type(err).__name__}: {err}", flush=True)
            if os.environ.get("VERIFY_TRACEBACK"):
                traceback.print_exc()

    def config(self, name: str) -> Path:
        return self.bundle / "configs" / name

    def overrides(self) -> dict:
        """Config overrides for checks on the demo data: demo sizes, outputs in the work folder."""
        demo = json.loads(self.config("demo.json").read_text())
        return {
            **demo,
            "bundle_root": str(self.bundle),
            "dataset_dir": str(self.dataset_dir()),
            "ckpt_dir": str(self.work / "models"),
            "output_dir": str(self.work / "eval"),
            "num_workers": 0,
        }

    def property_overrides(self) -> dict:
        """Property checks instantiate datasets: keep them from caching (loading) every case."""
        return {**self.overrides(), "cache_rate": 0.0}

    def dataset_dir(self) -> Path:
        """A tiny demo dataset made and prepared with the bundle's own scripts (once)."""
        if self._dataset_dir is None:
            raw, prepared = self.work / "demo_raw", self.work / "demo_prepared"
            python = [sys.executable]
            run = dict(check=True, capture_output=True, text=True, cwd=self.work, env=QUIET_ENV)
            try:
                subprocess.run(python + [str(self.bundle / "scripts/make_demo_data.py"), "--output", str(raw),
                                         "--size", "verify"], **run)
                subprocess.run(python + [str(self.bundle / "scripts/prepare_data.py"), "--source", str(raw),
                                         "--output", str(prepared)], **run)
            except subprocess.CalledProcessError as err:
                raise RuntimeError(f"{err.cmd[1]} failed:\n{err.stdout}\n{err.stderr}") from err
            self._check_verify_size(prepared / "datalist.json")
            self._dataset_dir = prepared
        return self._dataset_dir

    def _check_verify_size(self, datalist: Path) -> None:
        """The --size verify contract (xlstm_bundle_tools.demo_sizes), checked so that a violation reads as one."""
        from xlstm_bundle_tools import load_fold
        from xlstm_bundle_tools.demo_sizes import MIN_VALIDATION_CASES

        val = load_fold(datalist, fold=0, split="val")
        testing = json.loads(datalist.read_text()).get("testing") or []
        if len(val) < MIN_VALIDATION_CASES or not testing:
            raise ValueError(
                f"scripts/make_demo_data.py --size verify gave fold 0 {len(val)} validation case(s) and "
                f"{len(testing)} testing case(s) after prepare_data.py; the verifier needs >= {MIN_VALIDATION_CASES} "
                "(one per torchrun process) and >= 1: raise SIZES['verify'] in the generator")

    # ---------------------------------------------------------------- checks
    def files(self) -> str:
        missing = [f for f in REQUIRED_FILES if not (self.bundle / f).is_file()]
        if missing:
            raise FileNotFoundError(f"missing {missing}")
        for name in ("metadata.json", "train.json", "inference.json", "evaluate.json", "multi_gpu_train.json",
                     "demo.json"):
            json.loads(self.config(name).read_text())
        return f"{len(REQUIRED_FILES)} files"

    def rendered(self) -> str:
        if not (self.bundle / "bundle.yaml").is_file():
            raise Skipped("no bundle.yaml: configs are written by hand")
        from xlstm_bundle_tools.render import stale_files

        stale = stale_files(self.bundle)
        if stale:
            raise ValueError(f"{[p.name for p in stale]} differ from what bundle.yaml renders; run "
                             f"`python -m xlstm_bundle_tools.render {self.bundle}` (or `make configs`) and commit")
        return "configs/* match bundle.yaml"

    def version(self) -> str:
        meta = json.loads(self.config("metadata.json").read_text())
        if meta.get("version") not in meta.get("changelog", {}):
            raise ValueError(f"version {meta.get('version')!r} has no changelog entry")
        return meta["version"]

    def metadata(self) -> str:
        from monai.bundle import verify_metadata

        meta = json.loads(self.config("metadata.json").read_text())
        schema_name = meta["schema"].rsplit("/", 1)[-1]
        source = next((d / schema_name for d in SCHEMA_DIRS if (d / schema_name).is_file()), None)
        target = self.work / "schema" / schema_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            shutil.copy(source, target)  # verify_metadata skips its download when the file exists
        else:
            from monai.apps import download_url

            try:
                download_url(meta["schema"], filepath=str(target), progress=False)
            except Exception as err:
                raise Skipped(f"{schema_name} is in none of {[str(d) for d in SCHEMA_DIRS]} and its download failed "
                              f"({type(err).__name__}); set XLSTM_SEG_SCHEMA_DIR to a folder holding it") from err
        verify_metadata(meta_file=str(self.config("metadata.json")), filepath=str(target))
        return schema_name + ("" if source is not None else " (downloaded)")

    def properties(self, workflow_type: str, configs: list[str], extra: dict | None = None) -> str:
        from monai.bundle import ConfigWorkflow

        workflow = ConfigWorkflow(
            config_file=[str(self.config(c)) for c in configs],
            meta_file=str(self.config("metadata.json")),
            logging_file=False,
            workflow_type=workflow_type,
            **{**self.property_overrides(), **(extra or {})},
        )
        sys.path.insert(0, str(self.bundle))
        try:
            workflow.initialize()
            problems = workflow.check_properties()
        finally:
            sys.path.remove(str(self.bundle))
        if problems:
            raise ValueError(f"missing or miswired properties: {problems}")
        return f"{workflow_type} ({' + '.join(configs)})"

    def net_in_out(self) -> str:
        from monai.bundle import verify_net_in_out

        verify_net_in_out(
            net_id="network_def",
            meta_file=str(self.config("metadata.json")),
            config_file=str(self.config("inference.json")),
            bundle_root=str(self.bundle),
            **{k: v for k, v in self.overrides().items() if k.startswith("network_def")},
        )
        return "network_def"

    # ids both files may define differently: what each workflow imports, writes and runs
    AGREEMENT_EXEMPT = ("imports", "output_dir", "initialize", "run", "training", "finalize")

    def agreement(self) -> str:
        """train.json and inference.json define one network, geometry and intensity pipeline (see the docstring)."""
        import torch
        from monai.bundle import ConfigParser

        from xlstm_bundle_tools import load_fold

        train, infer = (json.loads(self.config(n).read_text()) for n in ("train.json", "inference.json"))

        def comparable(key: str, value):
            return {k: v for k, v in value.items() if k != "deep_supervision"} if key == "network_def" else value

        common = sorted((set(train) & set(infer)) - set(self.AGREEMENT_EXEMPT))
        differ = [k for k in common if comparable(k, train[k]) != comparable(k, infer[k])]
        if "network_def" not in common:
            raise KeyError("train.json and inference.json must both define network_def")
        if differ:
            shown = "; ".join(f"{k}: train {json.dumps(train[k])[:80]} vs inference {json.dumps(infer[k])[:80]}"
                              for k in differ)
            raise ValueError(f"train.json and inference.json disagree on {differ} ({shown})")

        overrides = {**self.property_overrides(), "device": "cpu", "amp": False}
        parsers = {}
        for name in ("train.json", "inference.json"):
            parser = ConfigParser()
            parser.read_config([str(self.config(name)), str(self.config("demo.json"))])
            parser.update({k: v for k, v in overrides.items() if k in parser or "#" in k})
            parsers[name] = parser
        case = load_fold(self.dataset_dir() / "datalist.json", fold=0, split="val")[0]
        train_net = parsers["train.json"].get_parsed_content("network_def").eval()
        infer_net = parsers["inference.json"].get_parsed_content("network_def").eval()
        infer_net.load_state_dict(train_net.state_dict(), strict=True)  # what inference does with model.pt
        logits = {}
        with torch.no_grad():
            for name, net, pre, inferer in (
                    ("train.json", train_net, "validate#preprocessing", "validate#inferer"),
                    ("inference.json", infer_net, "preprocessing", "inferer")):
                parser = parsers[name]
                data = case if name == "train.json" else {"image": case["image"]}
                sample = parser.get_parsed_content(pre)(dict(data))
                logits[name] = parser.get_parsed_content(inferer)(sample["image"][None].float(), net)
        a, b = logits["train.json"], logits["inference.json"]
        if a.shape != b.shape or not torch.allclose(a, b, atol=1e-5, rtol=1e-4):
            detail = f"shapes {tuple(a.shape)} vs {tuple(b.shape)}" if a.shape != b.shape else \
                f"max |difference| {float((a - b).abs().max()):.3g}"
            raise ValueError(f"train.json's validation pipeline and inference.json's disagree on a demo case ({detail})")
        return f"{len(common)} shared ids equal; same logits {tuple(a.shape)} on a demo case"

    def monailabel_keys(self) -> str:
        import torch
        from monai.bundle import ConfigParser
        from monai.transforms import Compose, LoadImaged, SaveImaged

        meta = json.loads(self.config("metadata.json").read_text())
        image_key, image_spec = next(iter(meta["network_data_format"]["inputs"].items()))
        pred_key, pred_spec = next(iter(meta["network_data_format"]["outputs"].items()))
        if (image_key, pred_key) != ("image", "pred"):
            raise ValueError(f"MONAI Label and verify_net_in_out read inputs.image/outputs.pred; got {image_key}, {pred_key}")
        labels = {v.lower(): int(k) for k, v in pred_spec.get("channel_def", {}).items() if v.lower() != "background"}
        if not labels:
            raise ValueError("outputs.pred.channel_def gives MONAI Label no labels")
        dimension = len(image_spec["spatial_shape"])

        parser = ConfigParser()
        parser.read_config(str(self.config("inference.json")))
        parser.update({"bundle_root": str(self.bundle), "device": "cpu", **{
            k: v for k, v in self.overrides().items() if k.startswith("network_def") or k in (
                "target_spacing", "patch_size", "image_size", "dataset_dir")}})
        for key in ("network_def", "preprocessing", "postprocessing", "inferer"):
            if key not in parser:
                raise KeyError(f"inference.json has no '{key}', which MONAI Label reads")
        network = parser.get_parsed_content("network_def").eval()
        pre = parser.get_parsed_content("preprocessing")
        pre = list(pre.transforms) if isinstance(pre, Compose) else list(pre)
        if not any(isinstance(t, LoadImaged) for t in pre):
            raise ValueError("preprocessing has no LoadImaged for MONAI Label to wrap")
        post = parser.get_parsed_content("postprocessing")
        post = [t for t in (post.transforms if isinstance(post, Compose) else post) if not isinstance(t, SaveImaged)]
        inferer = parser.get_parsed_content("inferer")
        data = json.loads((self.dataset_dir() / "datalist.json").read_text())
        entry = data["testing"][0] if data.get("testing") else data["training"][0]
        def absolute(path: str) -> str:
            return path if os.path.isabs(path) else str(self.dataset_dir() / path)

        # a case is one file or, for multi-modal bundles, a list of per-modality files
        image_path = [absolute(p) for p in entry["image"]] if isinstance(entry["image"], list) else absolute(entry["image"])
        # MONAI Label's request also carries the path under 'image_path' (a string): monai 1.6's Spacingd
        # calls .update() on every 'image_*' key, which is how the real client failed before MetaSafeSpacingd
        first_path = image_path[0] if isinstance(image_path, list) else image_path
        sample = Compose(pre)({image_key: image_path, "image_path": first_path})
        if image_key not in sample:
            raise KeyError(f"preprocessing does not produce '{image_key}'")
        with torch.no_grad():
            sample[pred_key] = inferer(sample[image_key][None], network)[0]
        out = Compose(post)(sample)[pred_key]
        if out.dtype not in (torch.uint8, torch.float32):
            raise TypeError(f"postprocessing ends with {out.dtype}; MONAI Label's ITK writer needs uint8 or float")
        original = tuple(out.meta.get("spatial_shape", ())) if hasattr(out, "meta") else ()
        # the input file's own grid: a 2D network may segment 3D volumes slice by slice (dimension 2, 3D masks)
        if original and tuple(out.shape[-len(original):]) != tuple(int(s) for s in original):
            raise ValueError(f"prediction grid {tuple(out.shape)} is not the input's {original}")

        train = ConfigParser()
        train.read_config(str(self.config("train.json")))
        for key in ("train#dataset#data", "validate#dataset#data", "network", "train#trainer#max_epochs"):
            if key not in train:
                raise KeyError(f"train.json has no '{key}', which MONAI Label's BundleTrainTask overrides")
        if not isinstance(train["train#handlers"], list):
            raise TypeError("train#handlers must be a plain list (MONAI Label inserts a CheckpointLoader into it)")
        return f"{dimension}D, {len(labels)} labels, pred {out.dtype} on the input grid"

    def runs(self) -> str:
        """`run training` then plain `run` (inference), both from a foreign working directory."""
        foreign = self.work / "elsewhere"
        foreign.mkdir(exist_ok=True)
        overrides = {**self.overrides(), "epochs": 1, "iterations_per_epoch": 2, "val_interval": 1}
        overrides.pop("bundle_root")  # the bundle must find itself

        def args(**extra) -> list[str]:  # each --key once: fire would let a later duplicate win
            out = []
            for key, value in {**overrides, **extra}.items():
                out += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
            return out

        train_cfg = f"['{self.config('train.json')}','{self.config('demo.json')}']"
        infer_cfg = f"['{self.config('inference.json')}','{self.config('demo.json')}']"
        base = [sys.executable, "-m", "monai.bundle", "run"]
        for cmd in (base + ["training", "--config_file", train_cfg] + args(),  # logs and curves to work/eval
                    base + ["--config_file", infer_cfg] + args(output_dir=str(self.work / "predictions"))):
            result = subprocess.run(cmd, cwd=foreign, capture_output=True, text=True, env=QUIET_ENV)
            if result.returncode:
                raise RuntimeError(f"{' '.join(cmd[3:5])} failed (exit {result.returncode}):\n{result.stdout[-3000:]}"
                                   f"\n{result.stderr[-3000:]}")
        if not (self.work / "models" / "model.pt").is_file():
            raise FileNotFoundError("training wrote no models/model.pt")
        masks = sorted((self.work / "predictions").rglob("*"))
        masks = [m for m in masks if m.is_file()]
        if not masks:
            raise FileNotFoundError("inference wrote no masks")
        return f"checkpoint + {len(masks)} mask(s) from {foreign}"

    def multi_gpu(self) -> str:
        """multi_gpu_train.json under torchrun with 2 processes (gloo on CPU, nccl on GPUs), one short epoch."""
        overrides = {**self.overrides(), "epochs": 1, "iterations_per_epoch": 2, "val_interval": 1,
                     "ckpt_dir": str(self.work / "ddp_models"), "output_dir": str(self.work / "ddp_eval")}
        overrides.pop("bundle_root")
        args = []
        for key, value in overrides.items():
            args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
        configs = f"['{self.config('train.json')}','{self.config('multi_gpu_train.json')}','{self.config('demo.json')}']"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "--config_file", configs] + args
        env = {**QUIET_ENV, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, cwd=self.work, capture_output=True, text=True, env=env)
        if result.returncode:
            raise RuntimeError(f"torchrun failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        if not (self.work / "ddp_models" / "model.pt").is_file():
            raise FileNotFoundError("DDP training wrote no model.pt")
        import torch

        state = torch.load(self.work / "ddp_models" / "model.pt", weights_only=True)
        if any(k.startswith("module.") for k in state):
            raise ValueError("the DDP checkpoint keeps 'module.' prefixes; single-process loading would fail")
        return "2 processes, checkpoint loads without DDP prefixes"

    def run_all(self, quick: bool) -> int:
        print(f"verifying {self.bundle}", flush=True)
        self.check("files", self.files)
        self.check("configs rendered from bundle.yaml", self.rendered)
        self.check("version/changelog", self.version)
        self.check("metadata schema", self.metadata)
        self.check("properties: train", lambda: self.properties("train", ["train.json", "demo.json"]))
        self.check("properties: train+evaluate",
                   lambda: self.properties("train", ["train.json", "evaluate.json", "demo.json"]))
        self.check("properties: infer",
                   lambda: self.properties("infer", ["inference.json", "demo.json"], {"load_pretrain": False}))
        self.check("verify_net_in_out", self.net_in_out)
        self.check("train and inference agree (ids, weights, pipeline)", self.agreement)
        self.check("MONAI Label keys", self.monailabel_keys)
        if not quick:
            self.check("run training + run inference from a foreign cwd", self.runs)
            self.check("multi-GPU config under torchrun (2 processes)", self.multi_gpu)
        print(f"{len(self.failures)} failed" + (f": {self.failures}" if self.failures else ""), flush=True)
        return len(self.failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders")
    parser.add_argument("--quick", action="store_true", help="skip the training/inference runs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    failures = 0
    for bundle in args.bundles:
        work = Path(tempfile.mkdtemp(prefix=f"verify_{bundle.name}_"))
        try:
            failures += Verifier(bundle, work).run_all(args.quick)
        finally:
            if args.keep:
                print(f"work folder kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return failures


if __name__ == "__main__":
    sys.exit(main())
