"""Build script: the Python packages plus the Cython rasterisation kernels.

Install with ``pip install -e . -c constraints.txt`` (see README). The kernels in ``cython_ext/``
compile into ``face3d_data._raster``; OpenMP is used when the compiler supports it.
"""

import os
import subprocess
import sys
import tempfile

from setuptools import Extension, find_packages, setup


def _openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or empty lists when the compiler lacks it."""
    if os.environ.get("FACE3D_NO_OPENMP") or sys.platform == "darwin" or sys.platform == "win32":
        return [], []
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        try:
            ok = subprocess.run([cc, "-fopenmp", src, "-o", os.path.join(tmp, "t")],
                                capture_output=True).returncode == 0
        except OSError:
            ok = False
    return (["-fopenmp"], ["-fopenmp"]) if ok else ([], [])


def _extensions():
    import numpy
    from Cython.Build import cythonize

    omp_compile, omp_link = _openmp_flags()
    ext = Extension(
        "face3d_data._raster",
        sources=["cython_ext/raster.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3", "-ffp-contract=off"] + omp_compile,  # exact float64 parity with the numpy reference
        extra_link_args=omp_link,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    return cythonize([ext], language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False})


setup(
    name="face3d-data",
    version="0.1.0",
    description="Training sets for single-image 3D face reconstruction: 3DMMs, 300W-LP, "
                "UV position maps, PNCC/depth, Deep3DFaceRecon data preparation.",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["face3d_data", "face3d_data.*", "pipelines", "pipelines.*"]),
    package_data={"pipelines": ["configs/*.yaml"]},
    py_modules=["data_preparation"],
    ext_modules=_extensions(),
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "opencv-python-headless>=4.6",
        "simplejpeg>=1.6",
        "scikit-image>=0.20",
        "dlib-bin>=19.24",
        "face_recognition_models>=0.3.0",
        "joblib>=1.4",
        "threadpoolctl>=3.1",
        "pandas>=1.5",
        "pyarrow>=10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "torch>=2.0",
    ],
    extras_require={
        "fan": ["face-alignment>=1.3"],
        "dask": ["dask[distributed]>=2023.1"],
        "ray": ["ray>=2.9"],
        "registration": ["cholespy>=2.0", "qdldl>=0.1.7", "libigl>=2.5"],
        "test": ["pytest>=7", "dask[distributed]>=2023.1", "ruff>=0.6"],
        "train": ["tensorboard>=2.10"],
    },
)
