"""Security checks shared by every bundle: weights-only checkpoint loading and no patient identifiers in logs."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
import torch

from monai_apps.bundles import BUNDLES_DIR, bundle_imports, list_bundles

BUNDLES = list_bundles()


class Payload:
    """Stands for arbitrary pickled code inside a checkpoint: it would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _checkpoint_loaders(bundle: str, config: str) -> list[str]:
    """Config ids of the ``CheckpointLoader`` handlers of ``configs/<config>.json``."""
    data = json.loads((BUNDLES_DIR / bundle / "configs" / f"{config}.json").read_text())
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if str(node.get("_target_", "")).split(".")[-1] == "CheckpointLoader":
                found.append("#".join(path))
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, str(i)])

    walk(data, [])
    return found


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config", ["inference", "evaluate"])
def test_checkpoint_with_pickled_code_is_refused(bundle, config, tmp_path):
    """Every ``CheckpointLoader`` of a bundle loads weights only: a checkpoint that carries code does not run."""
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    loaders = _checkpoint_loaders(bundle, config)
    assert loaders, f"{bundle}/configs/{config}.json: no CheckpointLoader handler"
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(marker), "network": Payload(marker)}, evil)

    root = BUNDLES_DIR / bundle
    parser = ConfigParser()
    merged = ["train", "evaluate"] if config == "evaluate" else [config]  # evaluate.json overrides train.json
    parser.read_config([str(root / "configs" / f"{name}.json") for name in merged])
    parser["bundle_root"] = str(root)
    with bundle_imports(root):
        for loader_id in loaders:
            parser[f"{loader_id}#load_path"] = str(evil)
            parser[f"{loader_id}#map_location"] = "cpu"
            parser[f"{loader_id}#_disabled_"] = False
            loader = parser.get_parsed_content(loader_id, instantiate=True)
            engine = Engine(lambda e, b: None)
            loader.attach(engine)
            with pytest.raises(Exception, match="[Ww]eights only load failed"):
                engine.run([0], max_epochs=1)
    assert not marker.exists(), "the checkpoint's code ran"


def test_patient_identifiers_stay_out_of_logs_and_outputs(tmp_path, caplog, capfd):
    """Liver inference on a DICOM series with patient identifiers: none of them reaches the logs or the NIfTI."""
    import pydicom

    from monai_apps.bundles import run_bundle
    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
    from monai_apps.data.writers import write_dicom_series

    ct = generate_abdominal_ct(seed=4, shape=(48, 48, 12), spacing=(8.0, 8.0, 20.0))
    series = write_dicom_series(tmp_path / "series", ct.image, ct.affine)
    identifiers = {"PatientName": "Doe^Jane", "PatientID": "MRN7654321", "PatientBirthDate": "19450317"}
    for f in sorted(Path(series).iterdir()):
        ds = pydicom.dcmread(f)
        for key, value in identifiers.items():
            setattr(ds, key, value)
        ds.save_as(f)

    from monai_apps.export import build_network

    weights = tmp_path / "model.pt"
    torch.manual_seed(0)
    torch.save(build_network("liver_tumor_ct_segmentation", ["inference", "unet", "cpu"]).state_dict(), weights)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        run_bundle(
            "liver_tumor_ct_segmentation",
            ["inference", "unet", "cpu"],
            input_path=str(series),
            output_dir=str(out),
            ckpt_path=str(weights),
            num_workers=0,
        )
    outputs = list(out.rglob("*.nii.gz"))
    assert len(outputs) == 1
    raw = gzip.decompress(outputs[0].read_bytes())
    printed = capfd.readouterr()
    logged = caplog.text + printed.out + printed.err
    assert "Restored all variables" in logged, "the run's log was not captured"
    for value in identifiers.values():
        for form in {value, value.replace("^", " ")}:
            assert form not in logged, f"{form} written to the log"
            assert form.encode() not in raw, f"{form} written to {outputs[0].name}"
