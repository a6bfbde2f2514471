"""Evaluate a trained checkpoint: recompute every metric and write a fresh report.

python evaluate.py ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt
python evaluate.py ckpt_path=<...>/last.ckpt hydra.run.dir=outputs/evaluations/last

The run's configuration (data, split, model) is read from the checkpoint, which is
loaded as weights only: a crafted file cannot run code. The report goes to its own
directory, outputs/evaluations/<date>_<time>/ by default.
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from ssvae.config import ConfigError
from ssvae.data.base import DataError
from ssvae.reevaluation import evaluate_checkpoint

log = logging.getLogger("ssvae")


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        report = evaluate_checkpoint(cfg)
    except (ConfigError, DataError) as error:
        log.error("cannot evaluate: %s", error)
        sys.exit(2)
    except Exception:
        log.exception("evaluation failed")
        sys.exit(1)
    print(f"Report written to {report}")


if __name__ == "__main__":
    main()
