"""The calibrations a speaker store keeps: every one it was given, the current one, going back.

:class:`CalibrationHistory` is the half of :class:`speaker.store.SpeakerStore` that keeps the
``calibrations`` table (docs/store.md): a calibration is never replaced, a new one is added and
made current (``meta.calibration_id``); :meth:`~CalibrationHistory.use_calibration` makes an
earlier one current again.  Each row keeps when it was made, what it was fitted on (one line),
its parameters (:class:`speaker.calibration.Calibration` JSON), its report (Cllr, minCllr,
actual DCF, operating points with confidence intervals: JSON) and the calibrated LLRs of its
target and non-target trials, from which a decision at a target false-accept rate takes its
threshold (:func:`speaker.calibration.far_threshold`).

Rows are untrusted like the rest of the store: sizes are checked with ``length()`` before a
BLOB is read, JSON is bounded and parsed without pickles, values must be finite.  Rows never
change once written, so a row read once is kept in the process by its id.
"""
from __future__ import annotations

import json
import math
import time
from typing import NamedTuple

import numpy as np

from .calibration import Calibration
from .limits import MAX_CALIBRATION_TRIALS

__all__ = ["StoredCalibration", "CalibrationHistory"]

#: Largest report (JSON characters) a calibration row may hold.
MAX_REPORT_CHARS = 1 << 20


class StoredCalibration(NamedTuple):
    """One calibration kept by a store.

    ``created_at``: Unix time; ``fitted_on``: one line saying on what; ``report``: the
    metrics and operating points measured when it was fitted (a dict; empty when unknown);
    ``n_target`` / ``n_nontarget``: its trials; ``has_trials``: whether their LLRs are kept
    (needed by decisions at a target false-accept rate); ``current``: the store's current one.
    """

    id: int
    created_at: float
    fitted_on: str
    calibration: Calibration
    report: dict
    n_target: int
    n_nontarget: int
    has_trials: bool
    current: bool


def _blob(a) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


class CalibrationHistory:
    """The calibrations of :class:`speaker.store.SpeakerStore` (a mixin: uses ``_db``,
    ``_get_meta``, ``_lock``)."""

    _calibration_rows: dict

    # ------------------------------------------------------------------ the current one
    @property
    def calibration(self) -> Calibration | None:
        """The store's current calibration (``speaker calibrate --store``), or None.

        Setting it keeps a new calibration (fitted on something the store does not know) and
        makes it current; setting None leaves the store without a current calibration (the
        kept ones stay, :meth:`use_calibration` goes back to one)."""
        cur = self.current_calibration()
        return None if cur is None else cur.calibration

    @calibration.setter
    def calibration(self, cal: Calibration | None) -> None:
        if cal is None:
            self._set_meta("calibration_id", None)
        else:
            self.keep_calibration(cal, fitted_on="given through the library (SpeakerStore.calibration = ...): "
                                                 "its trials are not known")

    def current_calibration(self) -> StoredCalibration | None:
        """The current calibration's row, or None."""
        with self._db.tx():
            text = self._get_meta("calibration_id")
            if text is None:
                return None
            if not text.isdigit():
                self._db.fail(f"bad calibration_id {text[:40]!r}")
            return self._calibration_row(int(text), current=True)

    # ------------------------------------------------------------------ history
    def calibrations(self) -> list[StoredCalibration]:
        """Every calibration the store keeps, newest first (``current`` marks the current one)."""
        with self._db.tx():
            cur = self._get_meta("calibration_id")
            ids = [i for i, in self._db.rows("SELECT id FROM calibrations ORDER BY id DESC")]
            return [self._calibration_row(i, current=str(i) == cur) for i in ids]

    def use_calibration(self, calibration_id: int) -> StoredCalibration:
        """Make a kept calibration the current one again; KeyError for an unknown id."""
        with self._db.write():
            row = self._calibration_row(int(calibration_id), current=True)
            self._set_meta("calibration_id", str(row.id))
        return row

    def keep_calibration(self, calibration: Calibration, *, fitted_on: str, report: dict | None = None,
                         target_llrs=None, nontarget_llrs=None, make_current: bool = True) -> int:
        """Keep a calibration (and make it current): returns its id.

        ``target_llrs`` / ``nontarget_llrs``: the calibrated LLRs of the trials it was fitted on
        (kept so that a decision at a target false-accept rate can take its threshold from
        them); ``report``: JSON-able metrics and operating points."""
        if not isinstance(calibration, Calibration):
            raise TypeError(f"expected a Calibration, got {type(calibration).__name__}")
        with self._db.write():
            cal_id = self._insert_calibration(calibration, fitted_on, report or {}, target_llrs, nontarget_llrs)
            if make_current:
                self._set_meta("calibration_id", str(cal_id))
        return cal_id

    def calibration_trials(self, calibration_id: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """``(target_llrs, nontarget_llrs)`` of a kept calibration (default the current one),
        or None when its trials are not kept (or there is no current calibration)."""
        with self._db.tx():
            row = self.current_calibration() if calibration_id is None else self._calibration_row(int(calibration_id))
            if row is None or not row.has_trials:
                return None
            return self._trial_llrs(row)

    # ------------------------------------------------------------------ rows
    def _insert_calibration(self, cal: Calibration, fitted_on: str, report: dict, tar, non) -> int:
        """Insert one row (inside the caller's write transaction); its id."""
        fitted_on = " ".join(str(fitted_on).split())[:2000]
        text = json.dumps(report, allow_nan=False)
        if len(text) > MAX_REPORT_CHARS:
            raise ValueError("calibration report is too large")
        n_t = n_n = 0
        blobs = (None, None)
        if tar is not None or non is not None:
            tar, non = (np.asarray(x, dtype=np.float64).ravel() for x in (tar, non))
            if not (np.isfinite(tar).all() and np.isfinite(non).all()) or not tar.size or not non.size \
                    or tar.size + non.size > MAX_CALIBRATION_TRIALS:
                raise ValueError("calibration trials: finite target and non-target LLRs, at most "
                                 f"{MAX_CALIBRATION_TRIALS} in all")
            n_t, n_n, blobs = tar.size, non.size, (_blob(tar), _blob(np.sort(non)))
        elif cal.n_target or cal.n_nontarget:
            n_t, n_n = cal.n_target, cal.n_nontarget
        (cal_id,), = self._db.rows("SELECT COALESCE(MAX(id), 0) + 1 FROM calibrations")
        self._db.run("INSERT INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (cal_id, time.time(), fitted_on, cal.to_json(), text, n_t, n_n, *blobs))
        return cal_id

    def _calibration_row(self, cal_id: int, current: bool = False) -> StoredCalibration:
        """One row, validated (kept in the process by id: rows never change)."""
        hit = self._calibration_rows.get(cal_id)
        if hit is not None:
            return hit._replace(current=current)
        rows = self._db.rows("SELECT created_at, length(fitted_on), length(params), length(report), n_target, "
                             "n_nontarget, length(target_llrs), length(nontarget_llrs) FROM calibrations WHERE id=?",
                             (cal_id,))
        if not rows:
            raise KeyError(cal_id)
        created, lf, lp, lr, n_t, n_n, lt, ln = rows[0]
        where = f"calibration {cal_id}"
        if not isinstance(created, (int, float)) or not math.isfinite(created) \
                or not all(isinstance(x, int) and 0 <= x <= MAX_CALIBRATION_TRIALS for x in (n_t, n_n)) \
                or not all(isinstance(x, int) and 0 <= x <= MAX_REPORT_CHARS * 4 for x in (lf, lp, lr)):
            self._db.fail(f"{where}: malformed row")
        if (lt is None) != (ln is None) or (lt is not None and (lt, ln) != (8 * n_t, 8 * n_n)):
            self._db.fail(f"{where}: trial LLRs of {lt, ln} bytes for {n_t} target and {n_n} non-target trials")
        fitted_on, params, report = self._db.rows("SELECT fitted_on, params, report FROM calibrations WHERE id=?",
                                                  (cal_id,))[0]
        try:
            cal = Calibration.from_json(params)
            rep = json.loads(report)
            if not isinstance(rep, dict) or not isinstance(fitted_on, str):
                raise ValueError("the report is not a JSON object")
        except (ValueError, TypeError, RecursionError) as exc:
            self._db.fail(f"{where}: {exc}")
        row = StoredCalibration(cal_id, float(created), fitted_on, cal, rep, n_t, n_n, lt is not None, False)
        self._calibration_rows[cal_id] = row
        return row._replace(current=current)

    def _trial_llrs(self, row: StoredCalibration) -> tuple[np.ndarray, np.ndarray]:
        key = ("trials", row.id)
        hit = self._calibration_rows.get(key)
        if hit is None:
            tar, non = self._db.rows("SELECT target_llrs, nontarget_llrs FROM calibrations WHERE id=?", (row.id,))[0]
            tar, non = np.frombuffer(tar, "<f8").astype(np.float64), np.frombuffer(non, "<f8").astype(np.float64)
            if not (np.isfinite(tar).all() and np.isfinite(non).all()) or (np.diff(non) < 0).any():
                self._db.fail(f"calibration {row.id}: trial LLRs are not finite (or non-targets not sorted)")
            hit = self._calibration_rows[key] = (tar, non)
        return hit
