"""Hydra callbacks that run before Hydra creates a run's or a sweep's directory."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssvae.io import OutputLocationError, check_output_location


class OutputLocationCheck(Callback):
    """Refuse to start when the run or sweep directory cannot be written or is nearly full.

    Without it, a read-only location fails inside Hydra with a traceback, and a nearly
    full one fails at the first checkpoint, possibly hours later. The free space asked
    for is ``paths.min_free_mb`` of the composed config. Hydra turns exceptions raised
    by callbacks into warnings, so a refusal prints one line and exits with status 2.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        directory = OmegaConf.select(config, key)
        min_free_mb = OmegaConf.select(config, "paths.min_free_mb", default=0)
        if isinstance(min_free_mb, bool) or not isinstance(min_free_mb, (int, float)):
            _refuse(f"paths.min_free_mb={min_free_mb!r}: must be a number")
        try:
            check_output_location(directory, min_free_mb)
        except OutputLocationError as error:
            _refuse(f"{key}={directory}: {error}")


def _refuse(message: str) -> None:
    # Logging is not configured yet: Hydra sets it up once the directory exists.
    sys.stderr.write(f"invalid output location: {message}\n")
    raise SystemExit(2)
