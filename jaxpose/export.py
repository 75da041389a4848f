"""A checkpoint as models that run without jaxpose (``jaxpose.inference.export``).

  python -m jaxpose.export --workdir=DIR [--step=N] --out=OUT

writes ``OUT/crops.jax_export``, ``OUT/crops.onnx``, ``OUT/saved_model/`` and
``OUT/export.json``.
"""

from absl import flags

from jaxpose import cli
from jaxpose.inference import export
from jaxpose.inference import predictor


def main(argv):
  del argv
  fl = flags.FLAGS
  restored = predictor.Predictor(fl.workdir, fl.step, fl.config)
  paths = export.export(restored, fl.out)
  print(f'step {restored.step}: wrote {paths["jax_export"]}, {paths["onnx"]} and '
        f'{paths["saved_model"]}')


def define_flags():
  flags.DEFINE_string('out', None, 'Output folder for the exported models.')


if __name__ == '__main__':
  cli.run(main, required=('workdir', 'out'), define_flags=define_flags)
