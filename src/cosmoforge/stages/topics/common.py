"""Names the topic stages share: decisions, placeholder topics, the assignment and label schemas."""

from __future__ import annotations

import pyarrow as pa

DECISIONS = ("keep", "drop")
# Answers that name no topic. A label like these is a parse failure, never a topic.
PLACEHOLDER_TOPICS = {
    "none",
    "n/a",
    "na",
    "unknown",
    "null",
    "-",
    "topic",
    "the_topic",
    "the topic",
    "common topic",
    "the common topic",  # the template's own placeholder, echoed
}

ASSIGNMENT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("seed_id", pa.string()),
        ("cluster", pa.int32()),
        ("distance", pa.float32()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("cluster", pa.int32()),
        ("size", pa.int64()),
        ("topic", pa.string()),
        ("score", pa.int32()),
        ("route", pa.string()),
        ("attempts", pa.int32()),
        ("error", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("examples", pa.list_(pa.string())),
        ("example_ids", pa.list_(pa.string())),
    ]
)
# Seeds drawn for the 2-D topic map (fit writes the sample, report plots it).
MAP_POINTS = 5000
