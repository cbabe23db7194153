"""Experiments: config groups, the command line, the run state and its
checkpoints, the run directory and its files, and the run loop."""
from pfhpo.experiment.config import (Config, DataConfig, ModelConfig,
                                     PolicyConfig, RunConfig, ServerConfig,
                                     SpaceConfig, override)
from pfhpo.experiment.loop import run
from pfhpo.experiment.records import MetricsRow, Summary

__all__ = ['Config', 'DataConfig', 'MetricsRow', 'ModelConfig',
           'PolicyConfig', 'RunConfig', 'ServerConfig', 'SpaceConfig',
           'Summary', 'override', 'run']
