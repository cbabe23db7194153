"""Federated training with per-client hyper-parameters chosen by a policy.

    python experiments/femnist.py --policy=gumbel
    python experiments/femnist.py --config=experiments/configs/cross_silo.toml
    python experiments/femnist.py --dataset=femnist --data_dir=~/fedjax_cache \
        --model=conv --rounds=500 --policy=static --lrs=0.05 --local_steps=5
    python experiments/femnist.py --num_processes=2 --process_id=0 \
        --coordinator_address=host0:1234 --out_dir=runs/two   # and id 1

Defaults run the project's method on the embedded offline data set
(Fashion-MNIST from Debian's `dataset-fashion-mnist`, partitioned into
FEMNIST-like writers); `--help` lists every setting. Bad input stops with a
one-line error and exit status 2, before anything is written; a run that
stops making progress (its model diverged; `--stall_rounds`) writes its
checkpoint and summary, then prints a one-line error and exits with status 3.
Over many processes (docs/scale.md: "Many processes"), the client axis of
every round spans all their devices and process 0 alone writes.
"""
import sys

from pfhpo.distributed import initialize, is_writer
from pfhpo.errors import ConfigError, RunStopped
from pfhpo.experiment import run
from pfhpo.experiment.flags import command_from_args, flag_message
from pfhpo.host_memory import keep_freed_memory


def main(argv=None) -> int:
  keep_freed_memory()
  try:
    command = command_from_args(argv)
    initialize(command.processes)
    summary = run(command.config)
  except ConfigError as e:
    print(f'error: {flag_message(str(e))}', file=sys.stderr)
    return 2
  except RunStopped as e:
    print(f'error: {flag_message(str(e))}', file=sys.stderr)
    return 3
  final = summary.final
  if not is_writer():
    return 0
  print(f'round {final.round}: global_acc={final.global_acc:.4f} '
        f'client_acc_mean={final.client_acc_mean:.4f} '
        f'personal_acc={final.personal_acc:.4f} '
        f'({summary.total_seconds:.1f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
