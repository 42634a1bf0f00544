# cosmoforge: Cosmopedia-style synthetic data. Stage logic lives in the cosmoforge package
# (src/cosmoforge); each rule in workflow/rules/ makes one `cosmoforge <stage>` call.
from snakemake.utils import min_version

min_version("9.0")

# No `configfile:` line: common.smk resolves the config (the embedded default
# config/config.yaml only when no --configfile is given; see config/README.md).


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/seeds.smk"
include: "workflow/rules/topics.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/dedup.smk"
include: "workflow/rules/decont.smk"
include: "workflow/rules/release.smk"


# Small aggregation steps run on the submitting node rather than as cluster jobs: the same list
# as cosmoforge.core.layout.LOCAL_RULES, whose job counts the plan uses (tests/test_layout.py).
localrules:
    all,
    topics_decide,
    topics_report,
    dedup_report,
    contamination_report,
    card,


rule all:
    default_target: True
    input:
        rules.card.output.card,
        L.release_files(),
