"""Federated training with per-client hyper-parameters.

    python experiments/femnist.py --dataset=femnist --data_dir=~/fedjax_cache \
        --model=conv --rounds=500 --clients_per_round=10 \
        --lrs=0.05 --local_steps=5 --batch_sizes=16 --out_dir=runs/femnist

Defaults run the embedded offline data set (Fashion-MNIST from Debian's
`dataset-fashion-mnist`, partitioned into FEMNIST-like writers). Bad input
stops with a one-line error and exit status 2, before anything is written.
"""
import sys

from pfhpo.errors import ConfigError
from pfhpo.experiment import config_from_args, run


def main(argv=None) -> int:
  try:
    summary = run(config_from_args(argv))
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f"round {summary['round']}: global_acc={summary['global_acc']:.4f} "
        f"client_acc_mean={summary['client_acc_mean']:.4f} "
        f"({summary['total_seconds']:.1f} s)")
  return 0


if __name__ == '__main__':
  sys.exit(main())
