"""Series selection by modality rules, saying which series were skipped and why."""

from __future__ import annotations

import json
import logging

from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator

__all__ = ["NoMatchingSeriesError", "SeriesSelectorOperator", "modality_rules"]

logger = logging.getLogger(__name__)


class NoMatchingSeriesError(ValueError):
    """No series of the input matches the app's selection rules (one line listing what was skipped)."""


def modality_rules(modality: str = "CT", name: str | None = None) -> str:
    """Selection rules (the SDK's JSON) that pick series of one modality.

    Args:
        modality: DICOM Modality, matched case-insensitively as a whole word.
        name: the selection name (default: the modality).
    """
    return json.dumps({"selections": [{"name": name or modality, "conditions": {"Modality": f"(?i)^{modality}$"}}]})


class SeriesSelectorOperator(DICOMSeriesSelectorOperator):
    """``DICOMSeriesSelectorOperator`` that logs each skipped series with its modality and description.

    When nothing matches, it stops the app with :class:`NoMatchingSeriesError` naming every skipped series, before
    any output is written. A matched series needs at least ``min_slices`` instances to make a volume.

    Args:
        fragment: the application.
        rules: selection rules in the SDK's JSON (see :func:`modality_rules`).
        min_slices: fewest instances a selected series must have.
    """

    def __init__(self, fragment, *args, rules: str, min_slices: int = 2, **kwargs):
        self._min_slices = int(min_slices)
        super().__init__(fragment, *args, rules=rules, **kwargs)

    def filter(self, selection_rules, dicom_study_list, all_matched=False, sort_by_sop_instance_count=False):  # noqa: D102
        selected = super().filter(selection_rules, dicom_study_list, all_matched, sort_by_sop_instance_count)
        chosen = set()
        kept = []
        for study_selected in selected:
            study_kept = StudySelectedSeries(study_selected.study)
            for s in study_selected.selected_series:
                n = len(s.series.get_sop_instances())
                if n < self._min_slices:
                    logger.warning("series %s: %d instance(s), too few for a volume", s.series.SeriesInstanceUID, n)
                    continue
                study_kept.add_selected_series(s)
                chosen.add(s.series.SeriesInstanceUID)
            if study_kept.selected_series:
                kept.append(study_kept)
        selected = kept
        skipped = []
        for study in dicom_study_list or []:
            for series in study.get_all_series():
                if series.SeriesInstanceUID not in chosen:
                    what = (
                        f"series {series.SeriesInstanceUID} ({getattr(series, 'Modality', '?')}, "
                        f"{getattr(series, 'SeriesDescription', '') or 'no description'}, "
                        f"{len(series.get_sop_instances())} instances)"
                    )
                    skipped.append(what)
                    logger.warning("skipped %s: does not match the selection rules", what)
        if not selected:
            wanted = self._wanted()
            raise NoMatchingSeriesError(f"no {wanted} series to process; skipped: {'; '.join(skipped) or 'nothing'}")
        return selected

    def _wanted(self) -> str:
        try:
            rules = json.loads(self._rules_json_str or "{}")
            return " or ".join(str(s.get("name", "matching")) for s in rules.get("selections", [])) or "matching"
        except json.JSONDecodeError:
            return "matching"
