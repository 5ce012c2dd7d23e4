"""Bad configuration stops before any job runs, with a message naming the key and value."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from helpers.runs import dry_run, rule_counts
from tyr.workflow import config as tyrconf

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def with_(path: str, value):
    cfg = copy.deepcopy(DEFAULT)
    *parents, key = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[key] = value
    return cfg


def check(cfg):
    validate(cfg, str(ROOT / "config" / "config.schema.yaml"))
    tyrconf.check(cfg)


def test_default_config_is_valid():
    check(copy.deepcopy(DEFAULT))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("target_sparsity", 1.5, "target_sparsity"),
        ("target_sparsity", 0, "target_sparsity"),
        ("target_sparsity", [0.25, 1.0], "target_sparsity"),
        ("run", "my run/with slash", "run"),
        ("methods", ["tyr", "magic"], "methods"),
        ("supernet.accumulate", "sometimes", "accumulate"),
        ("supernet.delta", 0.0, "delta"),
        ("data.seq_len", 0, "seq_len"),
        ("search.offspring", "many", "offspring"),
        ("model.dtype", "int3", "dtype"),
        ("search.attention_kept", "sometimes", "attention_kept"),
        ("search.attention_shares", [1.5], "attention_shares"),
        ("devices.supernet", "tpu", "tpu"),
        ("devices.evaluate", "cuda:x", "cuda:x"),
    ],
)
def test_schema_rejects(key, value, message):
    with pytest.raises(Exception, match=message):
        check(with_(key, value))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("data.source", "/nonexistent/corpus.txt", "data.source: local path '/nonexistent/corpus.txt'"),
        ("data.source", ["./missing-folder"], "data.source: local path 'missing-folder'"),
        (
            "data.source",
            ["pydoc", "./missing-folder"],
            "data.source: a list holds local files or folders only; 'pydoc'",
        ),
        ("model.source", "/nonexistent/model.gguf", "model.source: local path '/nonexistent/model.gguf'"),
        ("evaluate.wikitext", "/nonexistent/test.txt", "evaluate.wikitext"),
        ("search.stages", [[512, 32], [2048, 1]], "search.stages: the first stage keeps 32"),
        ("search.stages", [[512, 4], [2048, 2]], "must not increase and must end with 1"),
        ("search.stages", [[512, 4], [10**7, 1]], "exceeds the fitness split"),
        ("search.stages", [[16000, 2], [4096, 1]], "set data.fitness_sequences ≥ 79 or search.fixed_last_stage"),
        ("search.share_text", "self", "search.share_text: self-sampled text cannot choose"),
        ("search.share_text", "/nonexistent/prose.txt", "search.share_text: local path '/nonexistent/prose.txt'"),
        ("search.trade_attn_mlp", True, "to trade, set search.attention_kept: null"),
        ("recover.text", "/nonexistent/mine.txt", "recover.text: data source '/nonexistent/mine.txt'"),
        ("methods", ["tyr", "sparsegpt+recover"], "methods: 'sparsegpt+recover' is not a method"),
    ],
)
def test_semantic_checks_name_key_and_value(key, value, message):
    cfg = with_(key, value)
    validate(cfg, str(ROOT / "config" / "config.schema.yaml"))
    with pytest.raises(tyrconf.ConfigError) as e:
        tyrconf.check(cfg)
    assert message in str(e.value)


def test_every_heavy_stage_has_a_device_key_and_an_old_search_device_is_pointed_to_its_new_home():
    assert set(DEFAULT["devices"]) == {
        "calibrate", "supernet", "dense_topk", "attention_share", "search", "select", "evaluate", "baselines",
        "unstructured", "recover",
    }  # fmt: skip
    check(with_("devices.supernet", "cuda:1"))
    check(
        with_("methods", ["tyr", "uniform+recover", "flap+recover"])
    )  # any structural result, recovered  # where, not whether: a GPU is looked for inside the job
    with pytest.raises(tyrconf.ConfigError, match=r"search.device is now devices.search"):
        tyrconf.refuse_moved_keys(with_("search.device", "cuda"))


def test_every_rule_that_passes_a_device_names_a_devices_key():
    """runtime("<stage>") is read when the job starts: a typo would fail only there."""
    import re

    named = {m for f in (ROOT / "rules").glob("*.smk") for m in re.findall(r'runtime\("(\w+)"', f.read_text())}
    assert named == set(DEFAULT["devices"]), named ^ set(DEFAULT["devices"])


def test_target_tags_round_trip():
    for t in (0.5, 0.25, 0.375, 0.125, 0.0625):
        assert tyrconf.tag_target(tyrconf.target_tag(t)) == pytest.approx(t)
    assert tyrconf.target_tag(0.5) == "50"


def test_num_layers_from_hf_folder(tiny_model_dir):
    assert tyrconf.num_layers(str(tiny_model_dir("llama"))) == 3


def test_dry_run_lists_the_whole_dag(tmp_path, tiny_model_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"source": str(tiny_model_dir("llama"))}, "run": "dag-test"}))
    counts = rule_counts((out := dry_run(tmp_path, "--configfile", cfg, "--quiet", "rules", check=True)).stdout)
    # one job per rule, but per layer (3 layers x 3 iterations), per iteration, per method
    per_rule = {
        "prepare_model": 1,
        "calibrate": 1,
        "embed": 1,
        "levels": 3,
        "supernet_layer": 9,
        "supernet": 3,
        "dense_topk": 1,
        "attention_share": 1,
        "search": 3,
        "select_tyr": 1,
        "genome_uniform": 1,
        "export": 2,
        "evaluate_dense": 1,
        "evaluate_pruned": 2,
        "summarize": 2,
        "report": 1,
        "all": 1,
    }
    assert counts == {**per_rule, "total": sum(per_rule.values())}, out.stdout


def test_bad_value_on_command_line_stops_before_any_job(tmp_path):
    out = dry_run(tmp_path, "--config", "target_sparsity=1.5")
    assert out.returncode != 0
    assert "target_sparsity" in out.stderr + out.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {source: /nonexistent/corpus.txt}\n")
    out = dry_run(tmp_path, "--configfile", cfg)
    assert out.returncode != 0
    assert "data.source: local path '/nonexistent/corpus.txt' does not exist" in out.stderr + out.stdout


def test_empty_calibration_file_and_truncated_gguf_stop_at_parse_time(tmp_path):
    from tyr.workflow import config as tyrconf
    from tyr.workflow.config import ConfigError

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ConfigError, match="data.source: .*empty.txt' is an empty file"):
        tyrconf._check_data({"source": str(empty)})
    gguf = tyrconf.embedded_gguf()
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(gguf.read_bytes()[:5_000_000])
    with pytest.raises(ConfigError, match="cut.gguf is not a readable GGUF file .*corrupt download"):
        tyrconf.num_layers(str(truncated))


def test_generations_per_iteration():
    from tyr.workflow.config import generations

    assert [generations({"generations": 10}, i) for i in (1, 2, 5)] == [10, 10, 10]
    assert [generations({"generations": [16, 8]}, i) for i in (1, 2, 3)] == [16, 8, 8]


def test_the_calibration_line_names_every_split():
    data = {
        "source": "self",
        "seq_len": 256,
        "prune_sequences": 64,
        "fitness_sequences": 48,
        "selection_sequences": 32,
        "heldout_sequences": 16,
    }
    line = tyrconf.describe_calibration(data)
    assert "64 pruning + 48 search + 32 selection + 16 held-out sequences × 256 tokens" in line, line
    assert "sampled from the dense model" in line
