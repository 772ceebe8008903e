"""Reading a scraped Prometheus page in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str, **labels: str) -> list[float]:
    """The values of `name`'s samples that carry `labels`."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def labels_of(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of `name`'s samples."""
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every sample's name and label set: what a scrape stores a series for."""
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
