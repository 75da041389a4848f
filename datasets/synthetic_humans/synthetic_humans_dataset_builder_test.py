"""The synthetic_humans builder under TFDS's standard builder test, on the smoke config."""

import tensorflow_datasets as tfds

from . import synthetic_humans_dataset_builder as synthetic_humans


class SyntheticHumansTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = synthetic_humans.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['smoke']
  SPLITS = {'studio_train': 64, 'wild_train': 64, 'studio_val': 32, 'wild_val': 32,
            'studio_test': 32, 'wild_test': 32}
  # Nothing is downloaded, so there is no dummy data; the harness still wants a folder.
  EXAMPLE_DIR = str(synthetic_humans.Builder.code_path.parent)


if __name__ == '__main__':
  tfds.testing.test_main()
