"""k-fold cross-validation (`cv.folds=k`): the runner that trains each fold as a complete run in
`<run_dir>/fold_<k>/` (`runner.py`), and the mean ± std summary of the folds (`summary.py`). Which
samples form each fold is the datamodules' business: `expkit/data/folds.py`."""
