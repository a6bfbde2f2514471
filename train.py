"""Train one semi-supervised mixture VAE per Hydra job and write its report.

python train.py                                   # one run on the embedded MNIST-5k
python train.py experiment=entropy_reward_100labels
python train.py -m prior=mixture,standard num_labeled=100,1000
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from ssvae.config import ConfigError
from ssvae.pipeline import train

log = logging.getLogger("ssvae")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        report = train(cfg)
    except ConfigError as error:
        log.error("invalid configuration: %s", error)
        sys.exit(2)
    except Exception:
        log.exception("training failed")
        sys.exit(1)
    print(f"Report written to {report}")


if __name__ == "__main__":
    main()
