"""Federated training with per-client hyper-parameters chosen by a policy.

    python experiments/femnist.py --policy=gumbel
    python experiments/femnist.py --config=experiments/configs/cross_silo.toml
    python experiments/femnist.py --dataset=femnist --data_dir=~/fedjax_cache \
        --model=conv --rounds=500 --policy=static --lrs=0.05 --local_steps=5

Defaults run the project's method on the embedded offline data set
(Fashion-MNIST from Debian's `dataset-fashion-mnist`, partitioned into
FEMNIST-like writers); `--help` lists every setting. Bad input stops with a
one-line error and exit status 2, before anything is written; a run that
stops making progress (its model diverged; `--stall_rounds`) writes its
checkpoint and summary, then prints a one-line error and exits with status 3.
"""
import sys

from pfhpo.errors import ConfigError, RunStopped
from pfhpo.experiment import run
from pfhpo.experiment.flags import config_from_args, flag_message


def main(argv=None) -> int:
  try:
    summary = run(config_from_args(argv))
  except ConfigError as e:
    print(f'error: {flag_message(str(e))}', file=sys.stderr)
    return 2
  except RunStopped as e:
    print(f'error: {flag_message(str(e))}', file=sys.stderr)
    return 3
  final = summary.final
  print(f'round {final.round}: global_acc={final.global_acc:.4f} '
        f'client_acc_mean={final.client_acc_mean:.4f} '
        f'personal_acc={final.personal_acc:.4f} '
        f'({summary.total_seconds:.1f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
