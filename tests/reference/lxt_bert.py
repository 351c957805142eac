"""LXT 2.1's efficient BERT without its model registry: `lxt.efficient.models` imports every
supported architecture on import (Qwen3 and others need transformers 5, LXT's BERT needs 4.x),
so a bare package is registered first and only `lxt.efficient.models.bert` is loaded. Used by
make_attribution_fixtures.py and bench.py (in the .venv-lxt environment)."""

import importlib.util
import sys
import types
from pathlib import Path


def attnlrp_bert():
    """Patches transformers' BERT with LXT's AttnLRP rules; returns (modeling_bert, lxt_bert)."""
    import transformers.models.bert.modeling_bert as modeling_bert

    models_dir = Path(importlib.util.find_spec("lxt.efficient").submodule_search_locations[0]) / "models"
    if "lxt.efficient.models" not in sys.modules:
        package = types.ModuleType("lxt.efficient.models")
        package.__path__ = [str(models_dir)]
        package.get_default_map = lambda *a, **k: {}
        sys.modules["lxt.efficient.models"] = package
    import lxt.efficient.models.bert as lxt_bert
    from lxt.efficient import monkey_patch

    monkey_patch(modeling_bert, patch_map=lxt_bert.attnLRP, verbose=False)
    return modeling_bert, lxt_bert
