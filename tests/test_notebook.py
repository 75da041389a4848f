"""The Colab demo runs top to bottom on CPU, against conftest's smoke checkpoint."""

import json

import nbformat
from nbclient import NotebookClient

import conftest

NOTEBOOK = conftest.REPO / 'launch' / 'colab' / 'demo.ipynb'


def test_demo_notebook_runs(trained_smoke_workdir, tmp_path, monkeypatch):
  monkeypatch.setenv('JAXPOSE_WORKDIR', trained_smoke_workdir)
  monkeypatch.setenv('JAXPOSE_DATA_DIR', conftest.DATA_DIR)
  monkeypatch.setenv('JAXPOSE_OUT', str(tmp_path))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # The kernel inherits this environment (the variables above, and the test's XLA flags).
  NotebookClient(notebook, timeout=120, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  data = json.loads((tmp_path / 'demo.json').read_text())
  assert data['checkpoint']['step'] == 2 and len(data['pose_3d']) == 17
  assert (tmp_path / 'demo.png').is_file()
  pictures = [output for cell in notebook.cells if cell.cell_type == 'code'
              for output in cell.get('outputs', []) if 'image/png' in output.get('data', {})]
  assert len(pictures) == 3  # the photo, the prediction picture, the turntable
