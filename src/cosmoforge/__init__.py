"""cosmoforge: Cosmopedia-style synthetic pre-training data as a Snakemake workflow.

The package is layered, each layer importing only those below it (`make lint` checks this):
`cli` (the command table) > `ops` (plan, status, calibrate, canary, serve, check) > `reports`
(card, ledger) > `stages` (one module or package per pipeline stage, in pipeline order) >
`engines` (vLLM, a server, the fake engine) > `core` (errors, files, config, the contracts and
tables between stages). Every stage runs and is tested without Snakemake; each Snakemake rule
makes one `cosmoforge COMMAND` call.
"""

from cosmoforge.core.contracts import SPLITS

__version__ = "0.1.0"
__all__ = ["SPLITS", "__version__"]
