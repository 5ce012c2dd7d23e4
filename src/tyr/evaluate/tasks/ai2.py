"""Adapters from the AI2 jsonl release (ARC, OpenBookQA) to the Hugging Face row layout.

lm-eval's standard `arc_*` and `openbookqa` prompts are written against the hub datasets
(`allenai/ai2_arc`, `allenai/openbookqa`). The AI2 files nest the question instead
(`question.stem`, `question.choices[{text, label}]`); converting each row to the hub layout
lets the task YAMLs here keep the standard prompts verbatim, so local and hub runs score
the same way.
"""

from __future__ import annotations


def _choices(doc) -> dict:
    choices = doc["question"]["choices"]
    return {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]}


def _check(doc, choices) -> None:
    # A key missing from the labels would make lm-eval's `label.index` fail far from the cause.
    if doc["answerKey"].strip() not in choices["label"]:
        raise ValueError(f"question {doc.get('id')}: answerKey {doc['answerKey']!r} not among {choices['label']}")


def arc_row(doc) -> dict:
    """One AI2 ARC record as an `allenai/ai2_arc` row."""
    choices = _choices(doc)
    _check(doc, choices)
    return {"id": doc["id"], "question": doc["question"]["stem"], "choices": choices, "answerKey": doc["answerKey"]}


def openbookqa_row(doc) -> dict:
    """One AI2 OpenBookQA record as an `allenai/openbookqa` (main) row."""
    choices = _choices(doc)
    _check(doc, choices)
    return {
        "id": doc["id"],
        "question_stem": doc["question"]["stem"],
        "choices": choices,
        "answerKey": doc["answerKey"],
    }


def process_arc(dataset):
    return dataset.map(arc_row, remove_columns=dataset.column_names)


def process_openbookqa(dataset):
    return dataset.map(openbookqa_row, remove_columns=dataset.column_names)
