"""3D pose of the people in photos and videos, from a trained checkpoint
(``jaxpose.inference``).

  python -m jaxpose.predict --workdir=DIR [--step=N] --image=PATH [--image=PATH ...]
      [--bbox=x,y,w,h ... | --boxes=FILE] [--focal=F | --fov=DEG] --out=OUT
  python -m jaxpose.predict --workdir=DIR --video=PATH [--boxes=FILE] [--focal=F | --fov=DEG]
      [--smoothing=none|one_euro] --out=OUT

writes, per image, ``OUT/<name>.json`` (``output.to_json``'s layout; with ``--boxes``,
``{"people": [...]}``, one per box) and ``OUT/<name>.png``: the photo with the predicted 2D
skeletons and their crops, and the 3D skeletons from the front and the side; per video,
``OUT/<name>.jsonl`` and ``OUT/<name>.mp4`` (``inference.video``). ``--boxes`` reads
``inference.boxes``'s layouts. The model and its config come from the checkpoint
(``--config`` is optional; when given it must describe the checkpoint's model). Without a
box the person is found the paper's way (``inference.predictor``); the focal length comes
from ``--focal``, ``--fov``, a photo's EXIF or a typical field of view
(``inference.intrinsics``).
"""

from absl import flags
from PIL import Image

from jaxpose import cli
from jaxpose.inference import photos
from jaxpose.inference import predictor
from jaxpose.inference import smoothing
from jaxpose.inference import video


def main(argv):
  del argv
  fl = flags.FLAGS
  if bool(fl.image) == bool(fl.video):
    raise ValueError('give --image (one or more photos) or --video, one of the two')
  if fl.bbox and fl.boxes:
    raise ValueError('give --bbox or --boxes, not both')
  if fl.focal is not None and fl.fov is not None:
    raise ValueError('give --focal or --fov, not both')
  checkpoint = dict(step=fl.step, config=fl.config, backend=fl.backend)
  if fl.video:
    params = None if fl.smoothing == 'none' else smoothing.OneEuroParams(
        fl.one_euro_min_cutoff, fl.one_euro_beta, fl.one_euro_d_cutoff)
    summary = video.predict_video_file(
        fl.workdir, fl.video, fl.out, **checkpoint, boxes_file=fl.boxes,
        min_box_score=fl.min_box_score, focal=fl.focal, fov=fl.fov, smoothing_params=params,
        lost_confidence=fl.lost_confidence)
    print(f'{fl.video}: wrote {summary["jsonl"]} and {summary["video"]}: '
          f'{summary["frames"]} frames at {summary["frames_per_second"]:.1f} frames/s, '
          f'{summary["skipped"]} skipped (undecodable), {summary["lost"]} tracks lost')
    return
  if fl.max_image_pixels is not None:
    Image.MAX_IMAGE_PIXELS = fl.max_image_pixels
  for path, files, people in photos.predict_photos(
      fl.workdir, fl.image, fl.out, **checkpoint, bboxes=fl.bbox, boxes_file=fl.boxes,
      min_box_score=fl.min_box_score, focal=fl.focal, fov=fl.fov):
    count = '' if people is None else f' ({people} people)'
    print(f'{path}: wrote {" and ".join(files)}{count}')


def define_flags():
  flags.DEFINE_enum('backend', 'jax', predictor.BACKENDS, 'What runs the network on the '
                    'crops: XLA, or ONNX Runtime on the network translated to ONNX (CPU; '
                    'jaxpose.inference.onnx_export).')
  flags.DEFINE_multi_string('image', None, 'Image file to predict on, a folder of images or a '
                            'glob pattern such as "photos/*.jpg" (repeat for several).')
  flags.DEFINE_integer('max_image_pixels', None, 'PIL.Image.MAX_IMAGE_PIXELS: PIL refuses '
                       'images of more than twice this many pixels (default 89,478,485), a '
                       'guard against decompression bombs.', lower_bound=1)
  flags.DEFINE_multi_string(
      'bbox', None, 'Person box x,y,w,h in pixels of the image (the extent of its joints); '
      'none (find the person), or one per --image in the same order.')
  flags.DEFINE_float('focal', None, 'Focal length in pixels of the images or the video '
                     '(default: --fov, else the EXIF 35 mm-equivalent focal length of a photo, '
                     'else a horizontal field of view of 55 degrees).')
  flags.DEFINE_float('fov', None, 'Horizontal field of view in degrees, instead of --focal.')
  flags.DEFINE_string('out', None, 'Output folder for <name>.json and <name>.png, or the '
                      'video\'s <name>.jsonl and <name>.mp4.')
  flags.DEFINE_string('video', None, 'Video file to predict on, frame by frame (instead of '
                      '--image).')
  flags.DEFINE_string('boxes', None, 'JSON file of person boxes per image or per video frame '
                      '(jaxpose/inference/boxes.py: its own layout or COCO-style detections); '
                      'every box is one person.')
  flags.DEFINE_float('min_box_score', 0.5, 'Detections of a --boxes file scoring lower are '
                     'left out.')
  flags.DEFINE_enum('smoothing', 'one_euro', ['none', 'one_euro'], 'Temporal smoothing of a '
                    'video\'s 2D and 3D poses (jaxpose/inference/smoothing.py).')
  flags.DEFINE_float('one_euro_min_cutoff', 1.0, 'One-Euro cut-off frequency at rest, Hz '
                     '(lower: smoother).')
  flags.DEFINE_float('one_euro_beta', 1.0, 'One-Euro cut-off increase per m/s of joint speed, '
                     'Hz (higher: less lag on fast motion).')
  flags.DEFINE_float('one_euro_d_cutoff', 1.0, 'One-Euro cut-off frequency of the speed, Hz.')
  flags.DEFINE_float('lost_confidence', 0.3, 'A video\'s track is lost when its mean joint '
                     'confidence falls below this (jaxpose/inference/video.py).')


if __name__ == '__main__':
  cli.run(main, required=('workdir', 'out'), define_flags=define_flags)
