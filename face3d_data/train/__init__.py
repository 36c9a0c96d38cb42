"""Training and evaluation of reconstruction networks on the datalists the pipelines write.

- :mod:`face3d_data.train.task`      the task protocol and the dataset base class
- :mod:`face3d_data.train.registry`  task name -> class
- :mod:`face3d_data.train.loop`      the training loop (DDP, AMP, resume, logging), ``fit``
- :mod:`face3d_data.train.checkpoint` atomic checkpoints and exact-resume state
- :mod:`face3d_data.train.prnet`     PRNet: ResFCN model, posmap dataset, loss, metrics, predict

Importing this package imports torch. See docs/training.md.
"""
