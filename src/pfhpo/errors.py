"""The one exception type a user can fix by changing their input."""


class ConfigError(ValueError):
  """Bad input: the message is one line that says what to change.

  `experiments/femnist.py` prints it and exits with status 2 before anything
  in the output directory is written.
  """
