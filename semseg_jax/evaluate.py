"""--mode=eval and --mode=predict: restore a checkpoint and run evaluators on it.

Both use the workdir's checkpoint of config.eval.checkpoint_step (-1: the latest) or, when the
workdir has none, the weights of config.model.pretrained. Neither reads the training data.
"""

import ml_collections
from absl import logging
from clu import metric_writers

from semseg_jax import evaluators
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax.data import datasets
from semseg_jax.evaluators import predict


def _restore(config: ml_collections.ConfigDict, workdir: str):
  num_classes = len(datasets.class_names_and_palette(config.data)[0])
  mesh = sharding.make_mesh(config.mesh)
  model, tx, _ = train_state.build_model_and_optimizer(config, num_classes)
  state, step = train_state.restore_for_inference(config, workdir, model, tx, mesh)
  return mesh, model, num_classes, state, step


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        writer: metric_writers.MetricWriter) -> dict[str, dict]:
  """Runs every evaluator of config.evals (but those with every_steps -1) once; returns their
  results by name."""
  mesh, model, num_classes, state, step = _restore(config, workdir)
  logging.info('Evaluating the weights of step %d.', step)
  results = {}
  for name, evaluator, _ in evaluators.from_config(config, model, mesh, workdir, writer,
                                                   num_classes):
    results[name] = evaluator.run(state.variables(), step)
  return results


def predict_images(config: ml_collections.ConfigDict, workdir: str,
                   writer: metric_writers.MetricWriter) -> dict:
  """Label maps of the images of config.predict.inputs (with config.eval's inference) into
  config.predict.output_dir ('' = <workdir>/predict)."""
  source = predict.image_file_source(config)  # Fails on bad inputs before any model is built.
  mesh, model, num_classes, state, step = _restore(config, workdir)
  writer_ = predict.PredictionWriter(
      'predict', config, model, mesh, workdir, writer, num_classes, source=source,
      settings=config.eval, output_dir=config.predict.output_dir or f'{workdir}/predict')
  return writer_.run(state.variables(), step)
