"""face3d-data: training sets for single-image 3D face reconstruction.

The library is a set of plain functions and small classes over numpy arrays:

- :mod:`face3d_data.coords`      image-frame conventions and their converters
- :mod:`face3d_data.io`          images, ``.mat``, meshes, landmark files, datalists (atomic writes)
- :mod:`face3d_data.morphable`   3D Morphable Models, the embedded model, 300W-LP pose algebra
- :mod:`face3d_data.render`      z-buffer rasteriser, PNCC / depth / normal / UV maps
- :mod:`face3d_data.fitting`     3DMM fitting from 68 landmarks
- :mod:`face3d_data.landmarks`   face detection, 5/68-point landmarks, alignment
- :mod:`face3d_data.posmap`      UV position maps and PRNet assets
"""

__version__ = "0.1.0"
