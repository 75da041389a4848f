"""The path layer (jaxpose.fileio) on the local file system and on TensorFlow's ram://, a
non-local file system reached through tf.io.gfile exactly as gs:// is."""

import json
import os

import numpy as np
import pytest

from jaxpose import fileio
from jaxpose import state as state_lib


@pytest.mark.parametrize('non_local', [False, True])
def test_writes_are_whole_or_not_at_all(tmp_path, non_local):
  directory = f'ram://{tmp_path}' if non_local else str(tmp_path)
  fileio.gfile.makedirs(directory)
  path = os.path.join(directory, 'report.json')
  fileio.write_atomically(path, lambda f: json.dump({'mpjpe': 130.5}, f))
  assert json.loads(fileio.read_text(path)) == {'mpjpe': 130.5}

  def interrupted(f):
    f.write('{"mpjpe": ')
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    fileio.write_atomically(path, interrupted)
  assert json.loads(fileio.read_text(path)) == {'mpjpe': 130.5}
  assert fileio.gfile.listdir(directory) == ['report.json']
  fileio.write_atomically(path, lambda f: f.write(b'\x89PNG'), binary=True)
  with fileio.gfile.GFile(path, 'rb') as f:
    assert f.read() == b'\x89PNG'


def test_local_paths_are_made_absolute_and_urls_kept(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  assert fileio.absolute('run') == str(tmp_path / 'run')
  assert fileio.absolute('gs://bucket/run') == 'gs://bucket/run'
  assert not fileio.is_local('gs://bucket/run') and fileio.is_local('/tmp/run')


def test_checkpoints_need_a_local_folder_or_gs():
  fileio.check_checkpoint_directory('/tmp/run')
  fileio.check_checkpoint_directory('gs://bucket/run')
  for workdir in ('ram://run', 's3://bucket/run'):
    with pytest.raises(ValueError, match=f'--workdir={workdir}: checkpoints need a local '
                                         'folder or a gs:// URL'):
      fileio.check_checkpoint_directory(workdir)


def test_backbone_weights_round_trip_through_a_non_local_file(tmp_path):
  params = {'conv1': {'kernel': np.arange(6, dtype=np.float32).reshape(1, 2, 3)}}
  stats = {'bn_conv1': {'mean': np.ones(3, np.float32), 'var': np.full(3, 2, np.float32)}}
  path = f'ram://{tmp_path}/backbone.npz'
  state_lib.save_backbone(path, params, stats)
  loaded_params, loaded_stats = state_lib.load_backbone(path)
  np.testing.assert_array_equal(loaded_params['conv1']['kernel'], params['conv1']['kernel'])
  np.testing.assert_array_equal(loaded_stats['bn_conv1']['var'], stats['bn_conv1']['var'])
  with pytest.raises(FileNotFoundError, match=f'ram://{tmp_path}/missing.npz does not exist'):
    state_lib.load_backbone(f'ram://{tmp_path}/missing.npz')
