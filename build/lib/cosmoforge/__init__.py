"""cosmoforge: Cosmopedia-style synthetic pre-training data as a Snakemake workflow.

Each pipeline stage is a module with a plain-Python entry point (used by the CLI in
:mod:`cosmoforge.cli`, which the Snakemake rules call), so every stage runs and is tested
without Snakemake.
"""

__version__ = "0.1.0"

SPLITS = (
    "web_samples_v1",
    "web_samples_v2",
    "stanford",
    "stories",
    "wikihow",
    "openstax",
    "khanacademy",
    "auto_math_text",
)
