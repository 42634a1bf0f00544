"""`cosmoforge check`: what it says of hub dataset sources."""

from __future__ import annotations


def test_check_says_a_hub_source_needs_the_hub_and_whether_a_copy_is_cached(
    default_config, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    from cosmoforge.ops.checks import hub_source_notes

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = default_config
    config["splits"]["web_samples_v1"]["sources"] = [
        {"name": "fw", "kind": "web", "format": "hf", "dataset": "HuggingFaceFW/fineweb"}
    ]
    config["splits"]["web_samples_v2"]["sources"] = [
        {"name": "local", "kind": "web", "format": "hf", "dataset": str(tmp_path)}
    ]
    (note,) = hub_source_notes(config)  # the local folder is no hub source
    assert note.startswith(
        "splits.web_samples_v1.sources[0].dataset: HuggingFaceFW/fineweb is a hub dataset: the "
        "seeds job streams it from the hub; no copy in the local hub cache"
    )
    assert "HF_HUB_OFFLINE is set here, so its seeds job would fail" in note
    snapshot = tmp_path / "datasets--HuggingFaceFW--fineweb" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (note,) = hub_source_notes(config)
    assert note.endswith(
        f"a copy is in the local hub cache: to read it without the hub, set dataset: {snapshot}"
    )
