"""OmegaConf resolvers the configs use; registered once when `expkit.utils` is imported."""

import functools
import secrets

from omegaconf import OmegaConf

from expkit.project import project_root


@functools.cache
def _run_token() -> str:
    """A short random token, fixed for the life of the process.

    Appended to timestamped run directories so two runs started in the same second (two terminals,
    two SLURM jobs on a shared disk) never share or overwrite a directory. Registered with
    `use_cache=True`, like Hydra's `${now:}`: Hydra copies a sweep's resolved values into each job's
    config, so a job run by a joblib or submitit worker process lands in its sweep's directory, not
    in one named by the worker's own token.
    """
    return secrets.token_hex(3)


def register_resolvers() -> None:
    """Register `${project_root:}`, `${run_token:}` and the image-folder ones (idempotent)."""
    from expkit.utils.image_folders import folder_classes, folder_image_shape

    OmegaConf.register_new_resolver("project_root", lambda: str(project_root()), replace=True)
    # data=image_folder: the class count and image shape read from data.root (image_folders.py)
    OmegaConf.register_new_resolver("folder_classes", folder_classes, replace=True)
    OmegaConf.register_new_resolver("folder_image_shape", folder_image_shape, replace=True)
    # use_cache: the value is stored in the config, so launchers that rebuild the config in another
    # process (submitit on SLURM, and its requeue) copy it instead of drawing a new token
    OmegaConf.register_new_resolver("run_token", _run_token, replace=True, use_cache=True)
