"""Loads the SAEs genolens wrote in SAELens's layout (tests/fixtures/sae/<architecture>/) with
sae-lens itself and records its encodings of tests/fixtures/sae/inputs.safetensors, for
tests/sae.rs::saved_saes_encode_as_sae_lens_does to compare with genolens's.

Pinned environment: tests/reference/requirements-saelens.txt (sae-lens 6.18.0). Run by
`just saelens-check`. Writes <architecture>/saelens_encodings.safetensors (feature_acts =
SAE.encode(x), sae_out = SAE.decode(feature_acts)) and tests/fixtures/sae/saelens_check.json
(versions, the classes sae-lens built, shapes, L0).
"""

import json
import pathlib
import sys

import safetensors.torch
import sae_lens
import torch
from sae_lens import SAE

ROOT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "sae"


def main() -> int:
    x = safetensors.torch.load_file(ROOT / "inputs.safetensors")["x"]
    summary = {
        "sae_lens": sae_lens.__version__,
        "torch": torch.__version__,
        "inputs": list(x.shape),
        "saes": {},
    }
    for name in ["standard", "topk", "jumprelu"]:
        folder = ROOT / name
        sae = SAE.load_from_disk(str(folder), device="cpu")
        with torch.no_grad():
            acts = sae.encode(x)
            out = sae.decode(acts)
        safetensors.torch.save_file(
            {"feature_acts": acts.contiguous(), "sae_out": out.contiguous()},
            folder / "saelens_encodings.safetensors",
        )
        summary["saes"][name] = {
            "class": type(sae).__name__,
            "architecture": sae.cfg.architecture(),
            "d_in": sae.cfg.d_in,
            "d_sae": sae.cfg.d_sae,
            "hook_name": sae.cfg.metadata.hook_name,
            "mean_l0": float((acts > 0).float().sum(-1).mean()),
        }
        print(name, summary["saes"][name])
    (ROOT / "saelens_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
