"""The one registry of methods (tyr.methods.registry) agrees with everything that lists methods: the config
check, the schema's baseline options, config.yaml's defaults, the Snakemake rules, the baseline
modules and the docs table."""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from helpers.runs import dry_run, rule_counts
from tyr.methods import baselines
from tyr.methods import registry as methods
from tyr.workflow import config as tyrconf

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "config" / "config.schema.yaml").read_text())


def test_config_accepts_every_registered_method_and_names_the_allowed_ones_otherwise():
    cfg = copy.deepcopy(DEFAULT)
    cfg["methods"] = methods.names()
    validate(cfg, str(ROOT / "config" / "config.schema.yaml"))
    tyrconf.check(cfg)
    cfg["methods"] = ["tyr", "sparsegpt"]
    with pytest.raises(tyrconf.ConfigError) as e:
        tyrconf.check(cfg)
    assert "methods: 'sparsegpt' is not a method" in str(e.value) and str(methods.names()) in str(e.value)


def test_every_baseline_has_a_module_schema_options_and_defaults_equal_to_its_run_signature():
    options = SCHEMA["properties"]["baselines"]["properties"]
    assert sorted(options) == sorted(methods.baselines()) == sorted(baselines.METHODS) == sorted(DEFAULT["baselines"])
    assert set(methods.names()) - set(methods.baselines()) == {"tyr", "uniform"}
    for name in methods.baselines():
        run = importlib.import_module(methods.get(name).module).run
        signature = inspect.signature(run).parameters
        for key, value in DEFAULT["baselines"][name].items():
            assert key in options[name]["properties"], f"baselines.{name}.{key} has no schema entry"
            assert key in signature and signature[key].default == value, (
                f"baselines.{name}.{key}: config ≠ run() default"
            )


def test_the_rules_build_one_baseline_job_per_registered_baseline(tmp_path, tiny_model_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"source": str(tiny_model_dir("llama"))},
                "run": "registry-test",
                "target_sparsity": 0.5,
                "methods": methods.baselines(),
            }
        )
    )
    counts = rule_counts(dry_run(tmp_path, "--configfile", cfg, "--quiet", "rules", check=True).stdout)
    assert counts["baseline"] == len(methods.baselines())


def test_the_docs_table_is_the_registry():
    assert methods.markdown_table() in (ROOT / "docs" / "baselines.md").read_text()
