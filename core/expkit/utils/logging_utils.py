"""Rank-aware logging: in DDP only rank 0 speaks, so N processes do not print N copies of every line."""

import logging

from pytorch_lightning.utilities.rank_zero import rank_zero_only


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(rank_zero_only, "rank", 0) == 0 or record.levelno >= logging.ERROR


def get_logger(name: str) -> logging.Logger:
    """A `logging` logger that drops records below ERROR on non-zero ranks."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RankZeroFilter) for f in logger.filters):
        logger.addFilter(_RankZeroFilter())
    return logger
