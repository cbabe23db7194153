"""The README's library example runs as written."""
from pathlib import Path

README = Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_python_example_runs():
  text = README.read_text()
  start = text.index('```python\n') + len('```python\n')
  namespace = {}
  exec(compile(text[start:text.index('```', start)], 'README.md', 'exec'),
       namespace)
  metrics = namespace['metrics']
  loss = float(metrics.train_loss)
  assert 0.5 < loss < 2.5  # ten digit classes: about ln(10) ~ 2.3 at first
  assert metrics.credit.shape == (4,) and float(abs(metrics.credit).sum()) > 0
