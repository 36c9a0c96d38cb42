"""face3d-data: training sets for single-image 3D face reconstruction.

The library is a set of plain functions and small classes over numpy arrays:

- :mod:`face3d_data.coords`      image-frame conventions and their converters
- :mod:`face3d_data.errors`      ``InputError`` (bad input file) and ``ConfigError`` (bad option)
- :mod:`face3d_data.io`          images, ``.mat``, ``.npy``, meshes, landmarks, datalists, parsing maps
- :mod:`face3d_data.morphable`   3D Morphable Models: loaders for every BFM derivative, the embedded model
- :mod:`face3d_data.w300lp`      the 300W-LP format: pose algebra, labels, samples, synthetic samples
- :mod:`face3d_data.render`      z-buffer rasteriser, PNCC / depth / normal / UV maps, torch renderer
- :mod:`face3d_data.parsing`     face-part label maps rendered from per-vertex classes
- :mod:`face3d_data.fitting`     3DMM fitting from 68 landmarks
- :mod:`face3d_data.landmarks`   face detection, 5/68-point landmarks, alignment
- :mod:`face3d_data.augment`     augmentation with analytic label updates (in-plane rotation)
- :mod:`face3d_data.posmap`      UV position maps and PRNet assets
- :mod:`face3d_data.train`       training and evaluation of reconstruction networks
- :mod:`face3d_data.skin`        Deep3DFaceRecon's skin-colour mask
- :mod:`face3d_data.viz`         overlays, contact sheets and false-colour pictures

File formats and frames: ``docs/formats.md``.
"""

__version__ = "0.1.0"
