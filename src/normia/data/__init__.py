"""Data modules built from configs/data/*.yaml: LightningDataModules yielding tuples of tensors."""
