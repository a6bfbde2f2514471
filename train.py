"""Train one semi-supervised mixture VAE per Hydra job and write its report.

python train.py                                   # one run on the embedded MNIST-5k
python train.py experiment=entropy_reward_100labels
python train.py -m prior=mixture,standard num_labeled=100,1000
python train.py trainer=ddp                       # every visible GPU, one process each
python train.py ckpt_path=<run dir>/checkpoints/last.ckpt   # resume, in that run directory
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from ssvae.checkpoints import register_resolvers
from ssvae.config import ConfigError
from ssvae.data.base import DataError
from ssvae.distributed import relaunched_config, run_relaunched
from ssvae.guards import NonFiniteLossError
from ssvae.pipeline import train
from ssvae.sweep import continue_sweep_on_failure

log = logging.getLogger("ssvae")

register_resolvers()  # before Hydra resolves hydra.run.dir


def run(cfg: DictConfig) -> None:
    """One run: train, report, and exit non-zero with a one-line error on failure."""
    try:
        report = train(cfg)
    except ConfigError as error:
        log.error("invalid configuration: %s", error)
        sys.exit(2)
    except DataError as error:
        log.error("data error: %s", error)
        sys.exit(2)
    except NonFiniteLossError as error:
        log.error("training stopped: %s (the last good checkpoint is kept)", error)
        sys.exit(1)
    except Exception:
        log.exception("training failed")
        sys.exit(1)
    print(f"Report written to {report}")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # In a sweep (-m), a failed job is recorded and the next one runs; the sweep report
    # lists the failure and the sweep exits non-zero at the end (ssvae.sweep).
    with continue_sweep_on_failure():
        run(cfg)


if __name__ == "__main__":
    # A DDP rank started by Lightning trains its parent's run config, without Hydra.
    relaunched = relaunched_config()
    if relaunched is not None:
        sys.exit(run_relaunched(relaunched, train))
    main()
