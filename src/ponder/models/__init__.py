"""Model catalogue and local model files."""

from ponder.models.catalog import CATALOG, CatalogEntry, Part
from ponder.models.store import ModelInfo, ModelStore, Progress

__all__ = ["CATALOG", "CatalogEntry", "ModelInfo", "ModelStore", "Part", "Progress"]
