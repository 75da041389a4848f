"""From a trained checkpoint to 3D poses in photos and videos, and to models that run
without jaxpose.

``predictor`` (the restored network on crops, batched), ``crop`` (where the network looks),
``intrinsics`` (the camera's focal length), ``images`` (photos read and checked), ``boxes``
(person boxes from flags and files), ``output`` (JSON and pictures), ``photos`` (what
``python -m jaxpose.predict`` does with photos), ``video`` and ``smoothing`` (tracking along a
video), ``export`` and ``onnx_export`` (jax.export, ONNX and SavedModel artefacts).
"""
