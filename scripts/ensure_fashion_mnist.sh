#!/usr/bin/env bash
# Makes sure Debian's Fashion-MNIST (the offline default data set) is installed.
# Installs `dataset-fashion-mnist` with apt-get when it can; otherwise says
# which command to run. Exit 0 when the files are there, 2 when they are not.
set -u
dir=/usr/share/datasets/fashion-mnist
[ -d "$dir" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=""; 
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n";
  else as_root=none; fi
  if [ "$as_root" != none ]; then
    echo "installing dataset-fashion-mnist (Debian) ..." >&2
    $as_root apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
      { $as_root apt-get update -q >/dev/null 2>&1 &&
        $as_root apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
    [ -d "$dir" ] && exit 0
  fi
fi
echo "Fashion-MNIST not found in $dir: run 'sudo apt-get install dataset-fashion-mnist'," \
     "or pass --data_dir=DIR (a directory holding the four IDX files) to experiments/femnist.py" >&2
exit 2
