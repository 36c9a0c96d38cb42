"""File I/O: images, ``.mat``, ``.npy``, meshes, landmark files and datalists.

Every writer is atomic (temporary file + ``os.replace``) and deterministic; every reader raises
:class:`face3d_data.errors.InputError` naming the file when the input is bad.
"""

from face3d_data.io.arrays import encode_npz, load_npy, save_npy, save_npz
from face3d_data.io.atomic import atomic_write, write_bytes, write_text
from face3d_data.io.datalist import read_datalist, relative_path, write_datalist
from face3d_data.io.images import (
                                   IMAGE_EXTENSIONS,
                                   PHOTO_EXTENSIONS,
                                   encode_image,
                                   is_image_file,
                                   list_images,
                                   read_image,
                                   write_image,
                                   write_png16,
)
from face3d_data.io.landmarks import read_landmarks, write_landmarks_txt, write_pts
from face3d_data.io.mat import check_field, encode_mat, read_mat, write_mat
from face3d_data.io.mesh import Mesh, read_mesh, write_mesh

__all__ = [
    "atomic_write", "write_bytes", "write_text",
    "read_image", "write_image", "write_png16", "encode_image", "is_image_file", "list_images",
    "IMAGE_EXTENSIONS", "PHOTO_EXTENSIONS",
    "read_mat", "write_mat", "encode_mat", "check_field",
    "save_npy", "load_npy", "save_npz", "encode_npz",
    "read_landmarks", "write_landmarks_txt", "write_pts",
    "read_datalist", "write_datalist", "relative_path",
    "Mesh", "read_mesh", "write_mesh",
]
