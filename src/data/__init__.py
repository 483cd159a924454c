"""LightningDataModules, one file per family of datasets."""
