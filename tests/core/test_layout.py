"""The workflow contract in cosmoforge.core.layout: shards, dedup ranks, names, job counts."""

import copy
import re

from cosmoforge.core.config import validate_config
from cosmoforge.core.layout import (
    LOCAL_RULES,
    Layout,
    ordered_splits,
    release_file_name,
)


def test_dedup_ranks_number_every_shard_once_in_canonical_order(default_config):
    layout = Layout(default_config)
    ranks = [layout.dedup_rank(split, shard) for split, shard in layout.gen_shards]
    assert ranks == list(range(len(layout.gen_shards)))
    for rank in ranks:
        assert layout.dedup_rank(*layout.shard_of_rank(rank)) == rank
    # web_samples_v2 has 2 shards in the default config: ranks 1 and 2, then stanford at 3.
    assert layout.shard_of_rank(1) == ("web_samples_v2", "00000")
    assert layout.shard_of_rank(3) == ("stanford", "00000")


def test_split_order_does_not_depend_on_key_order(default_config):
    reordered = copy.deepcopy(default_config)
    reordered["splits"] = dict(reversed(list(reordered["splits"].items())))
    extra = copy.deepcopy(default_config)
    extra["splits"] = {"zz_custom": extra["splits"]["wikihow"], **extra["splits"]}
    assert Layout(reordered).gen_shards == Layout(default_config).gen_shards
    assert ordered_splits(extra)[-1] == "zz_custom"
    assert Layout(extra).gen_shards[: len(Layout(default_config).gen_shards)] == (
        Layout(default_config).gen_shards
    )


def test_release_files_follow_the_hub_layout(default_config):
    config = validate_config({**copy.deepcopy(default_config), "run_name": "r"}, source="test")
    config["splits"]["stories"]["shards"] = 310
    layout = Layout(config)
    assert release_file_name(7, 310) == "train-00007-of-00310.parquet"
    assert layout.release_file("stories", "00309").endswith(
        "release/stories/train-00309-of-00310.parquet"
    )
    assert len(set(layout.release_files())) == len(layout.gen_shards)


def test_local_rules_match_the_snakefile(repo):
    snakefile = (repo / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:    \w+,\n)+)", snakefile, re.M).group(1)
    assert tuple(re.findall(r"(\w+),", block)) == LOCAL_RULES


def test_a_new_rule_runs_once_per_run_unless_counted_apart(tmp_path):
    # A post-generation stage's rule needs no entry in the layout: every rule the .smk files
    # name is a per-run rule unless it is per split, per shard, counted apart or on demand.
    from cosmoforge.core.layout import per_run_rules, workflow_rules

    (tmp_path / "a.smk").write_text(
        "rule seeds:\n    shell: 'x'\n\nrule toy_words:\n    shell: 'y'\n"
    )
    (tmp_path / "b.smk").write_text("rule canary:\n    shell: 'z'\n# rule not_a_rule:\n")
    assert workflow_rules(tmp_path) == ["canary", "seeds", "toy_words"]
    assert per_run_rules(tmp_path) == ["toy_words"]  # seeds per split, canary on demand
