"""Staged pipelines of face3d-data: ``python -m pipelines.run STAGE ...``.

``pipelines.core`` is the runner (parallel, resumable, sharded, with manifests); each module in
``pipelines.stages`` is one stage, declared in ``pipelines.registry``.
"""
