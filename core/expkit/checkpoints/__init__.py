"""Everything that reads or writes checkpoints: safe load (`load`), checks against the run
(`verify`), the stored run config (`run_config`, writer and reader), the target policy for stored
configs (`target_policy`), rebuilding a run from a checkpoint (`restore`), resuming a fit
(`resume`), and atomic checkpoint writes (`atomic_io`)."""
